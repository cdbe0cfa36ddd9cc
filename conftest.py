"""One shared world for the suite: two clients, two miners' keys, an admin key, and helpers to call the API."""

import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import ApiKeyRole, User
from accounts.services import api_key_issue
from aitbc_site import committed
from aitbc_site.testing import run_manage

ADDRESS = "ait1" + "ab" * 20
OTHER_ADDRESS = "ait1" + "cd" * 20


def pytest_configure(config: pytest.Config) -> None:
    # Each run its own cache directory (rate-limit counters): two runs at once on one machine (a developer's and
    # CI's, say) would otherwise count each other's requests and answer each other's tests 429. The environment
    # carries it to the commands and servers tests start, which would otherwise use the project's data/cache.
    directory = tempfile.mkdtemp(prefix="aitbc-test-cache-")
    os.environ["CACHE_DIR"] = directory
    if settings.CACHES["default"]["BACKEND"] == "aitbc_site.cache.PersistentDiskCache":
        settings.CACHES["default"]["LOCATION"] = directory
    config.add_cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Run the SQLite suite on a WAL file, as the server does. pytest-django's default, a shared-cache memory
    database, fails a concurrent writer at once with 'database table is locked' where a file makes it wait for
    the busy timeout, so concurrency tests would measure the test setup rather than the code."""
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.getbasetemp() / "test-coordinator.db")


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    # Rate-limit counters live in the cache and would leak from one test into the next.
    cache.clear()
    yield
    cache.clear()


def _api(role: str, name: str) -> APIClient:
    _, raw_key = api_key_issue(role=role, name=name)
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=raw_key)
    api.raw_key = raw_key  # type: ignore[attr-defined]
    return api


@pytest.fixture
def client_api(db: None) -> APIClient:
    return _api(ApiKeyRole.CLIENT, "client one")


@pytest.fixture
def other_client_api(db: None) -> APIClient:
    return _api(ApiKeyRole.CLIENT, "client two")


@pytest.fixture
def miner_api(db: None) -> APIClient:
    return _api(ApiKeyRole.MINER, "miner one")


@pytest.fixture
def other_miner_api(db: None) -> APIClient:
    return _api(ApiKeyRole.MINER, "miner two")


@pytest.fixture
def admin_api(db: None) -> APIClient:
    return _api(ApiKeyRole.ADMIN, "operator key")


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()


@pytest.fixture
def operator(db: None) -> User:
    return User.objects.create_superuser(username="operator", password=secrets.token_urlsafe(16))


def submit_job(api: APIClient, **overrides: Any) -> dict[str, Any]:
    body = {"job_type": "llm_inference", "parameters": {"prompt": "hello"}, **overrides}
    response = api.post("/v1/client/jobs", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def register_miner(api: APIClient, **overrides: Any) -> dict[str, Any]:
    body = {"address": ADDRESS, "capabilities": ["llm_inference", "embedding"], **overrides}
    response = api.post("/v1/miner/register", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def poll(api: APIClient, miner_id: str, limit: int = 1) -> dict[str, Any]:
    response = api.get("/v1/miner/jobs", {"miner_id": miner_id, "limit": limit})
    assert response.status_code == 200, response.content
    return response.json()


def post_result(api: APIClient, miner_id: str, job_id: str, **overrides: Any) -> Any:
    body = {"miner_id": miner_id, "job_id": job_id, "status": "completed", "result": {"text": "hi"}, **overrides}
    return api.post("/v1/miner/result", body, format="json")


@pytest.fixture
def committed_batches() -> Iterator[list[tuple[object, ...]]]:
    """Every batch of events `aitbc_site.committed` hands its subscribers while the test runs, in order."""
    batches: list[tuple[object, ...]] = []

    def listener(events: Sequence[object]) -> None:
        batches.append(tuple(events))

    committed.subscribe(listener)
    yield batches
    committed.unsubscribe(listener)


@pytest.fixture
def live_database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for a live server: a SQLite file in WAL mode, or a new PostgreSQL database
    on the server the suite's DATABASE_URL names."""
    if connection.vendor == "sqlite":
        url = f"sqlite:///{tmp_path / 'live.db'}"
        run_manage("migrate", "--no-input", env=live_env(url))
        yield url
        return
    import psycopg

    source = settings.DATABASES["default"]
    name = f"aitbc_live_{uuid.uuid4().hex[:12]}"
    admin_dsn = f"host={source['HOST']} port={source['PORT'] or 5432} user={source['USER']} dbname=postgres"
    if source.get("PASSWORD"):
        admin_dsn += f" password={source['PASSWORD']}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    password = f":{source['PASSWORD']}" if source.get("PASSWORD") else ""
    url = f"postgres://{source['USER']}{password}@{source['HOST']}:{source['PORT'] or 5432}/{name}"
    run_manage("migrate", "--no-input", env=live_env(url))
    try:
        yield url
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def live_env(database_url: str, **overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "live-tests-only",
        "DEBUG": "false",
        "MAINTENANCE_INTERVAL_SECONDS": "0",
        "CACHE_DIR": str(Path(database_url.removeprefix("sqlite:///")).parent / "cache")
        if database_url.startswith("sqlite")
        else str(Path(tempfile.gettempdir()) / f"aitbc-live-cache-{uuid.uuid4().hex[:8]}"),
        # Live tests measure behaviour, not the limits; the rate-limit tests set their own.
        "RATE_LIMIT_CLIENT": "1000000/m",
        "RATE_LIMIT_MINER": "1000000/m",
        "RATE_LIMIT_USER": "1000000/m",
        "RATE_LIMIT_LOGIN": "1000000/m",
        "RATE_LIMIT_EXPLORER": "1000000/m",
        **overrides,
    }


def api_with_key(raw_key: str) -> APIClient:
    """A client that sends this X-Api-Key (an API_KEYS entry, a revoked key, a made-up one …)."""
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=raw_key)
    api.raw_key = raw_key  # type: ignore[attr-defined]
    return api


def issue_api(role: str, *, user: User | None = None, name: str = "extra key") -> APIClient:
    """A client with a freshly issued key of this role, owned by `user` (or by a service user of its own)."""
    _, raw_key = api_key_issue(role=role, name=name, user=user)
    return api_with_key(raw_key)


def start_job(client: APIClient, miner: APIClient, **job_overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit a job and have a newly registered miner take it: (job as submitted, miner)."""
    job = submit_job(client, **job_overrides)
    registered = register_miner(miner)
    assignments = poll(miner, registered["id"])["results"]
    assert [assignment["id"] for assignment in assignments] == [job["id"]], assignments
    return job, registered


def api_key_of(api: APIClient) -> Any:
    """The issued ApiKey row behind a test client's key."""
    import hashlib

    from accounts.models import ApiKey

    return ApiKey.objects.get(key_hash=hashlib.sha256(api.raw_key.encode()).hexdigest())  # type: ignore[attr-defined]
