"""X-Api-Key authentication and roles on every endpoint, keys from API_KEYS, and how keys are kept."""

import hashlib
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, ApiKeyRole, User
from accounts.services import api_key_revoke
from aitbc_site.testing import assert_api_error
from conftest import api_key_of, api_with_key, issue_api, poll, post_result, register_miner, submit_job
from jobs.models import Job
from miners.models import Miner

SOME_ID = str(uuid.uuid4())
CLIENT_ENDPOINTS = [
    ("post", "/v1/client/jobs"),
    ("get", "/v1/client/jobs"),
    ("get", f"/v1/client/jobs/{SOME_ID}"),
    ("get", f"/v1/client/jobs/{SOME_ID}/status"),
    ("post", f"/v1/client/jobs/{SOME_ID}/cancel"),
    ("get", f"/v1/client/jobs/{SOME_ID}/events"),
]
MINER_ENDPOINTS = [
    ("post", "/v1/miner/register"),
    ("post", "/v1/miner/heartbeat"),
    ("get", "/v1/miner/jobs"),
    ("post", "/v1/miner/result"),
]
ALL_ENDPOINTS = CLIENT_ENDPOINTS + MINER_ENDPOINTS
ENV_KEY = "env-key-alpha-0123456789"
OTHER_ENV_KEY = "env-key-beta-9876543210"


def call(api: APIClient, method: str, path: str) -> Any:
    if method == "post":
        return api.post(path, {}, format="json")
    return api.get(path)


def endpoint_id(endpoint: tuple[str, str]) -> str:
    method, path = endpoint
    return f"{method.upper()} {path.replace(SOME_ID, '{id}')}"


# --- 401 and 403 on every endpoint ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ALL_ENDPOINTS, ids=map(endpoint_id, ALL_ENDPOINTS))
def test_a_request_without_a_key_is_authentication_required(anonymous_api: APIClient, method: str, path: str) -> None:
    response = call(anonymous_api, method, path)

    assert_api_error(response, status=401, code="AUTHENTICATION_REQUIRED")
    assert response.headers["WWW-Authenticate"] == "X-Api-Key"


@pytest.mark.parametrize(("method", "path"), ALL_ENDPOINTS, ids=map(endpoint_id, ALL_ENDPOINTS))
def test_an_unknown_key_is_invalid_api_key(db: None, method: str, path: str) -> None:
    for made_up in ("not-a-key", "aitbc_deadbeef_" + "x" * 43):
        assert_api_error(call(api_with_key(made_up), method, path), status=401, code="INVALID_API_KEY")


@pytest.mark.parametrize(("method", "path"), ALL_ENDPOINTS, ids=map(endpoint_id, ALL_ENDPOINTS))
def test_a_revoked_key_is_invalid_api_key(
    client_api: APIClient, miner_api: APIClient, method: str, path: str
) -> None:
    api = client_api if path.startswith("/v1/client") else miner_api
    api_key_revoke(api_key=api_key_of(api))

    assert_api_error(call(api, method, path), status=401, code="INVALID_API_KEY")


def test_a_key_of_a_deactivated_user_is_invalid_api_key(client_api: APIClient) -> None:
    User.objects.filter(pk=api_key_of(client_api).user_id).update(is_active=False)

    assert_api_error(client_api.get("/v1/client/jobs"), status=401, code="INVALID_API_KEY")


@pytest.mark.parametrize(("method", "path"), MINER_ENDPOINTS, ids=map(endpoint_id, MINER_ENDPOINTS))
def test_a_client_key_on_a_miner_endpoint_is_permission_denied(client_api: APIClient, method: str, path: str) -> None:
    assert_api_error(call(client_api, method, path), status=403, code="PERMISSION_DENIED")


@pytest.mark.parametrize(("method", "path"), CLIENT_ENDPOINTS, ids=map(endpoint_id, CLIENT_ENDPOINTS))
def test_a_miner_key_on_a_client_endpoint_is_permission_denied(miner_api: APIClient, method: str, path: str) -> None:
    assert_api_error(call(miner_api, method, path), status=403, code="PERMISSION_DENIED")


@pytest.mark.parametrize(("method", "path"), ALL_ENDPOINTS, ids=map(endpoint_id, ALL_ENDPOINTS))
def test_an_admin_key_on_a_client_or_miner_endpoint_is_permission_denied(
    admin_api: APIClient, method: str, path: str
) -> None:
    assert_api_error(call(admin_api, method, path), status=403, code="PERMISSION_DENIED")


def test_a_wrong_role_is_refused_before_the_body_is_acted_on(miner_api: APIClient, client_api: APIClient) -> None:
    denied_job = miner_api.post("/v1/client/jobs", {"job_type": "llm_inference", "parameters": {}}, format="json")
    denied_miner = client_api.post(
        "/v1/miner/register", {"address": "ait1" + "ab" * 20, "capabilities": ["embedding"]}, format="json"
    )

    assert_api_error(denied_job, status=403, code="PERMISSION_DENIED")
    assert_api_error(denied_miner, status=403, code="PERMISSION_DENIED")
    assert not Job.objects.exists() and not Miner.objects.exists()


# --- API_KEYS ------------------------------------------------------------------------------------------------------


@pytest.fixture
def env_keys(settings: Any, db: None) -> tuple[APIClient, APIClient]:
    settings.API_KEYS = [ENV_KEY, OTHER_ENV_KEY]
    return api_with_key(ENV_KEY), api_with_key(OTHER_ENV_KEY)


def test_a_key_from_api_keys_works_on_client_and_miner_endpoints_as_one_service_user(
    env_keys: tuple[APIClient, APIClient],
) -> None:
    api, _ = env_keys

    job = submit_job(api)
    miner = register_miner(api)
    assert [assignment["id"] for assignment in poll(api, miner["id"])["results"]] == [job["id"]]
    assert post_result(api, miner["id"], job["id"]).status_code == 200
    assert api.get(f"/v1/client/jobs/{job['id']}").json()["status"] == "completed"

    owner = User.objects.get(pk=job["client_id"])
    assert owner.is_service
    assert Miner.objects.get(pk=miner["id"]).owner_id == owner.pk
    assert not owner.has_usable_password()


def test_the_service_user_of_an_api_keys_entry_is_created_once(env_keys: tuple[APIClient, APIClient]) -> None:
    api, _ = env_keys

    first = submit_job(api)
    users_after_first_use = User.objects.count()
    second = submit_job(api)

    assert first["client_id"] == second["client_id"]
    assert User.objects.count() == users_after_first_use


def test_the_service_user_of_an_api_keys_entry_is_read_once_per_process(
    env_keys: tuple[APIClient, APIClient], django_assert_num_queries: Any
) -> None:
    api, _ = env_keys
    api.get("/v1/client/jobs")

    # The list itself is one query; finding the key's user again would be a second.
    with django_assert_num_queries(1):
        assert api.get("/v1/client/jobs").status_code == 200


def test_each_api_keys_entry_is_a_principal_of_its_own(env_keys: tuple[APIClient, APIClient]) -> None:
    alpha, beta = env_keys

    job = submit_job(alpha)
    miner = register_miner(alpha)

    assert submit_job(beta)["client_id"] != job["client_id"]
    assert_api_error(beta.get(f"/v1/client/jobs/{job['id']}"), status=404, code="JOB_NOT_FOUND")
    assert_api_error(beta.get("/v1/miner/jobs", {"miner_id": miner["id"]}), status=404, code="MINER_NOT_FOUND")


def test_a_key_removed_from_api_keys_stops_working(env_keys: tuple[APIClient, APIClient], settings: Any) -> None:
    api, _ = env_keys
    submit_job(api)

    settings.API_KEYS = [OTHER_ENV_KEY]

    assert_api_error(api.get("/v1/client/jobs"), status=401, code="INVALID_API_KEY")


# --- issued keys ---------------------------------------------------------------------------------------------------


def test_keys_issued_without_an_owner_each_get_a_service_user_of_their_own(
    client_api: APIClient, other_client_api: APIClient
) -> None:
    mine, theirs = api_key_of(client_api).user, api_key_of(other_client_api).user

    assert mine != theirs
    assert mine.is_service and theirs.is_service
    assert submit_job(client_api)["client_id"] == str(mine.pk)


def test_every_key_of_a_user_speaks_for_that_user(client_api: APIClient) -> None:
    owner = api_key_of(client_api).user
    job = submit_job(client_api)
    miner_key_of_the_same_user = issue_api(ApiKeyRole.MINER, user=owner)

    miner = register_miner(miner_key_of_the_same_user)

    assert Miner.objects.get(pk=miner["id"]).owner_id == owner.pk == uuid.UUID(job["client_id"])


def test_keys_are_stored_only_as_their_sha256(client_api: APIClient) -> None:
    raw_key = client_api.raw_key  # type: ignore[attr-defined]
    secret_part = raw_key.split("_", 2)[2]  # KEY_PREFIX, the lookup prefix, then the secret (which may hold "_")
    stored = api_key_of(client_api)

    assert stored.key_hash == hashlib.sha256(raw_key.encode()).hexdigest()
    for row in ApiKey.objects.values():
        for value in row.values():
            assert secret_part not in str(value)
    for row in User.objects.values():
        for value in row.values():
            assert secret_part not in str(value)


def test_a_key_records_when_it_was_last_used(client_api: APIClient) -> None:
    assert api_key_of(client_api).last_used_at is None

    client_api.get("/v1/client/jobs")

    last_used_at = api_key_of(client_api).last_used_at
    assert last_used_at is not None
    assert timezone.now() - last_used_at < timedelta(seconds=5)


def test_last_used_at_is_written_at_most_once_a_minute(client_api: APIClient) -> None:
    key = api_key_of(client_api)
    half_a_minute_ago = timezone.now() - timedelta(seconds=30)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=half_a_minute_ago)

    client_api.get("/v1/client/jobs")
    client_api.get("/v1/client/jobs")
    assert api_key_of(client_api).last_used_at == half_a_minute_ago

    a_minute_ago = timezone.now() - timedelta(seconds=61)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=a_minute_ago)
    client_api.get("/v1/client/jobs")
    assert timezone.now() - api_key_of(client_api).last_used_at < timedelta(seconds=5)


def test_a_revoked_key_is_not_marked_as_used(client_api: APIClient) -> None:
    api_key_revoke(api_key=api_key_of(client_api))

    client_api.get("/v1/client/jobs")

    assert api_key_of(client_api).last_used_at is None
