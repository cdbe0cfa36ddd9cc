"""Operations against real gunicorn servers on 127.0.0.1 (and a real nginx when one is installed).

Rate limits are exact across workers, in Redis and in the embedded diskcache; with Redis down requests are served
without limits (fail open) and /ready says why; /metrics sums every worker exactly and wants its token; request ids
are accepted or made, returned and logged in JSON lines that carry no secret; three HUP reloads under load fail no
request; and deploy/nginx/aitbc.conf, served for real, keeps URLs right under /api and never retries a job hand-out.

Tests that need Redis skip when nothing answers on 127.0.0.1:6379, the nginx ones when nginx is not installed;
.ci/ops.sh provides both and fails if any test here was skipped.
"""

import json
import math
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aitbc_site.settings import BASE_DIR
from aitbc_site.testing import LiveServer, free_port, live_server, run_manage
from conftest import live_env

pytestmark = pytest.mark.live

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
# Each test module flushes a Redis database of its own, never the ones other tests or a developer may use.
OPERATIONS_REDIS_DB = 11
RATE_WINDOW_SECONDS = 60
CLIENT_LIMIT = 100
BURST = 150
PROBE_ENDPOINTS = {"/health", "/metrics"}
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def report(message: str) -> None:
    """Measured figures: shown with `pytest -s`, and collected by .ci/ops.sh through AITBC_OPS_REPORT."""
    print(f"\n[ops] {message}")
    if os.environ.get("AITBC_OPS_REPORT"):
        with open(os.environ["AITBC_OPS_REPORT"], "a") as collected:
            collected.write(f"{message}\n")


# --- shared helpers (test_scaled.py uses them too) -----------------------------------------------------------------


def redis_url_or_skip(db: int) -> str:
    """The URL of an emptied Redis database on 127.0.0.1:6379; skips the test when no Redis answers there."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as error:
        pytest.skip(
            f"needs Redis on {REDIS_HOST}:{REDIS_PORT} (redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
            f"--save '' --appendonly no): {error}"
        )
    finally:
        client.close()
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


@dataclass(frozen=True)
class IssuedKey:
    raw: str
    owner_id: str

    @property
    def rate_limit_value(self) -> str:
        # The string aitbc_site.ratelimits counts a key's requests under: its owner.
        return f"user:{self.owner_id}"


def issue_keys(env: dict[str, str], *, role: str, count: int) -> list[IssuedKey]:
    """Issue `count` keys of `role` in the live server's database, each with a service user of its own."""
    code = (
        "from accounts.services import api_key_issue\n"
        f"for index in range({count}):\n"
        f"    key, raw = api_key_issue(role={role!r}, name=f'ops {{index}}')\n"
        "    print('issued', raw, key.user_id)\n"
    )
    # Not in the server's metrics directory: prometheus_client would write this process's files there (and fail
    # before gunicorn has made the directory).
    command_env = {name: value for name, value in env.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    output = run_manage("shell", "-c", code, env=command_env)
    # `shell` prints a line of its own first, hence the marker.
    issued = [line.split()[1:] for line in output.splitlines() if line.startswith("issued ")]
    assert len(issued) == count, output
    return [IssuedKey(raw=raw, owner_id=owner) for raw, owner in issued]


def window_opening_second(key: IssuedKey, period: int = RATE_WINDOW_SECONDS) -> int:
    """The second of the period at which django-ratelimit opens a new window for this key.

    Its window for a value ends at `ts - ts % period + crc32(value) % period` (the next one once that is past), so a
    window covers the seconds (end - period, end] and the next opens at end + 1.
    """
    return (zlib.crc32(key.rate_limit_value.encode()) % period + 1) % period


def wait_until_inside_window(value: str, *, seconds_needed: float, period: int = RATE_WINDOW_SECONDS) -> None:
    """Sleep past the next window boundary of `value` if it falls within `seconds_needed` from now."""
    opening = (zlib.crc32(value.encode()) % period + 1) % period
    until_opening = (opening - time.time()) % period
    if until_opening < seconds_needed:
        time.sleep(until_opening + 0.05)


def wait_for_a_fresh_window(keys: list[IssuedKey], *, lead: float = 1.0) -> tuple[IssuedKey, int]:
    """Pick the key whose rate-limit window opens soonest (at least `lead` s from now), sleep until just after it
    opens, and return the key with the last whole second still inside that window.

    With a few dozen keys the wait is a few seconds instead of up to a minute.
    """
    now = time.time()
    earliest = math.ceil(now + lead)

    def opening(key: IssuedKey) -> int:
        return earliest + (window_opening_second(key) - earliest) % RATE_WINDOW_SECONDS

    key = min(keys, key=opening)
    opens = opening(key)
    time.sleep(max(0.0, opens + 0.05 - time.time()))
    return key, opens + RATE_WINDOW_SECONDS - 1


def fire(url: str, requests: list[tuple[str, str, dict[str, Any]]], *, threads: int,
         fresh_connections: bool = True) -> list[httpx.Response]:
    """Send (method, path, options) requests from several threads; a new connection per request spreads them over
    gunicorn's workers, which accept connections, not requests."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def send(request: tuple[str, str, dict[str, Any]]) -> httpx.Response:
        method, path, options = request
        if not hasattr(local, "http"):
            # "Connection: close" makes httpx open a new connection for every request of this client.
            local.http = httpx.Client(base_url=url, timeout=30,
                                      headers={"Connection": "close"} if fresh_connections else {})
            clients.append(local.http)
        return local.http.request(method, path, **options)

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(send, requests))
    finally:
        for client in clients:
            client.close()


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def scrape(url: str, token: str | None = None) -> list[Sample]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return [
        Sample(sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def requests_total(samples: list[Sample], *, include_probes: bool = False) -> float:
    """The sum of api_requests_total, without /health and /metrics unless asked."""
    return sum(
        sample.value for sample in samples
        if sample.name == "api_requests_total" and (include_probes or sample.labels["endpoint"] not in PROBE_ENDPOINTS)
    )


def requests_by_label(samples: list[Sample]) -> Counter[tuple[str, str, str]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for sample in samples:
        if sample.name == "api_requests_total":
            counts[(sample.labels["method"], sample.labels["endpoint"], sample.labels["status"])] += int(sample.value)
    return counts


def requests_by_worker(multiproc_dir: Path) -> dict[int, int]:
    """api_requests_total per worker process, read from prometheus_client's per-process files."""
    from prometheus_client.multiprocess import MultiProcessCollector

    served: dict[int, int] = {}
    for path in multiproc_dir.glob("counter_*.db"):
        total = sum(
            sample.value
            for metric in MultiProcessCollector.merge([str(path)], accumulate=False)
            for sample in metric.samples
            if sample.name == "api_requests_total" and sample.labels["endpoint"] not in PROBE_ENDPOINTS
        )
        if total:
            served[int(path.stem.removeprefix("counter_"))] = int(total)
    return served


def gunicorn_workers(master_pid: int) -> set[int]:
    workers = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[1]) == master_pid:
            workers.add(int(stat.parent.name))
    return workers


def json_log_lines(path: Path) -> list[dict[str, Any]]:
    """Every line gunicorn and Django wrote, each of which must be a JSON object."""
    entries = []
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)  # a line that is not JSON fails the test here
            assert isinstance(entry, dict), line
            entries.append(entry)
    return entries


def server_env(database_url: str, tmp_path: Path, name: str, **overrides: str) -> dict[str, str]:
    """live_env with a multiprocess directory of this server's own, so a test can read its per-worker files."""
    return live_env(database_url, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / f"prometheus-{name}"), **overrides)


def assert_exact_rate_limit(responses: list[httpx.Response], *, limit: int) -> None:
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: limit, 429: len(responses) - limit}, statuses
    for response in responses:
        if response.status_code == 429:
            error = response.json()["error"]
            assert error["code"] == "RATE_LIMITED", error
            retry_after = int(response.headers["Retry-After"])
            assert 1 <= retry_after <= RATE_WINDOW_SECONDS
            assert error["details"]["retry_after"] == retry_after


# --- rate limits ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["redis", "diskcache"])
def test_150_requests_in_one_window_give_exactly_100_successes_over_four_workers(
    backend: str, live_database_url: str, tmp_path: Path
) -> None:
    cache = {"REDIS_URL": redis_url_or_skip(OPERATIONS_REDIS_DB)} if backend == "redis" else {"REDIS_URL": ""}
    env = server_env(live_database_url, tmp_path, "limits", RATE_LIMIT_CLIENT=f"{CLIENT_LIMIT}/m", **cache)
    keys = issue_keys(env, role="client", count=30)
    with live_server(env=env, log_path=tmp_path / "gunicorn.log", workers=4) as server:
        key, last_second = wait_for_a_fresh_window(keys)
        started = time.monotonic()
        responses = fire(
            server.url, [("GET", "/v1/client/jobs", {"headers": {"X-Api-Key": key.raw}})] * BURST, threads=8
        )
        elapsed = time.monotonic() - started
        assert int(time.time()) <= last_second, "the burst outlasted its rate-limit window; the count is meaningless"

        assert_exact_rate_limit(responses, limit=CLIENT_LIMIT)
        by_worker = requests_by_worker(tmp_path / "prometheus-limits")
        assert sum(by_worker.values()) == BURST
        assert len(by_worker) >= 2, f"the burst should have reached several workers: {by_worker}"
        report(
            f"rate limit ({backend}, 4 workers): {BURST} requests in {elapsed:.2f} s → "
            f"{Counter(r.status_code for r in responses)}; per worker {sorted(by_worker.values())}"
        )


def test_with_redis_down_requests_are_served_unlimited_and_ready_names_redis(
    live_database_url: str, tmp_path: Path
) -> None:
    # A port nothing listens on: every connection to "Redis" is refused at once.
    env = server_env(
        live_database_url, tmp_path, "redis-down", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        RATE_LIMIT_CLIENT="5/m", API_KEYS="ops-redis-down-key",
    )
    log_path = tmp_path / "gunicorn.log"
    with live_server(env=env, log_path=log_path, workers=2) as server:
        request_ids = [f"redis-down-{index}" for index in range(20)]
        headers = {"X-Api-Key": "ops-redis-down-key"}
        responses = fire(
            server.url,
            [("GET", "/v1/client/jobs", {"headers": {**headers, "X-Request-ID": rid}}) for rid in request_ids[:-1]]
            + [("POST", "/v1/client/jobs", {"headers": {**headers, "X-Request-ID": request_ids[-1]},
                                            "json": {"job_type": "llm_inference", "parameters": {}}})],
            threads=4,
        )
        # Four times the 5/m limit, and every one served: the limits are open while their counters are unreachable.
        assert Counter(response.status_code for response in responses) == {200: 19, 201: 1}

        ready = httpx.get(f"{server.url}/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "NOT_READY"
        assert set(ready.json()["error"]["details"]) == {"redis"}
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200

        skipped = [s for s in scrape(server.url) if s.name == "rate_limit_backend_errors_total"]
        assert sum(sample.value for sample in skipped) == len(request_ids)

    warnings = [
        entry for entry in json_log_lines(log_path)
        if entry["logger"] == "aitbc_site.ratelimits" and entry["level"] == "WARNING"
    ]
    assert {entry["request_id"] for entry in warnings} == set(request_ids)
    assert all("cache is unreachable" in entry["message"] for entry in warnings)


# --- metrics -------------------------------------------------------------------------------------------------------


def _plant_stale_counter(directory: Path) -> None:
    """A previous run's file with a big count: gunicorn must empty the directory at start or the sum is wrong."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    directory.mkdir(parents=True, exist_ok=True)
    stale = MmapedDict(str(directory / "counter_999999.db"))
    key = mmap_key("api_requests", "api_requests_total", ["method", "endpoint", "status"],
                   ["GET", "/v1/client/jobs", "200"], "API requests served")
    stale.write_value(key, 1000.0, time.time())
    stale.close()


def test_metrics_sum_every_worker_exactly_by_route_and_need_the_token(live_database_url: str, tmp_path: Path) -> None:
    token = "ops-metrics-token"
    env = server_env(live_database_url, tmp_path, "metrics", METRICS_TOKEN=token, API_KEYS="ops-metrics-key")
    multiproc_dir = tmp_path / "prometheus-metrics"
    _plant_stale_counter(multiproc_dir)
    headers = {"X-Api-Key": "ops-metrics-key"}
    with live_server(env=env, log_path=tmp_path / "gunicorn.log", workers=4) as server:
        for offered in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
            refused = httpx.get(f"{server.url}/metrics", headers=offered, timeout=10)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "AUTHENTICATION_REQUIRED"

        created = fire(
            server.url,
            [("POST", "/v1/client/jobs", {"headers": headers, "json": {"job_type": "embedding", "parameters": {}}})]
            * 40,
            threads=8,
        )
        assert {response.status_code for response in created} == {201}
        job_ids = [response.json()["id"] for response in created]
        missing_ids = [str(uuid.uuid4()) for _ in range(20)]
        reads = fire(
            server.url,
            [("GET", f"/v1/client/jobs/{job_id}", {"headers": headers}) for job_id in job_ids]
            + [("GET", f"/v1/client/jobs/{job_id}", {"headers": headers}) for job_id in missing_ids]
            + [("GET", f"/v1/no-such-endpoint/{job_id}", {}) for job_id in job_ids[:10]],
            threads=8,
        )
        assert Counter(response.status_code for response in reads) == {200: 40, 404: 30}
        sent = len(created) + len(reads)

        samples = scrape(server.url, token)
        by_worker = requests_by_worker(multiproc_dir)

    # Exactly what was sent: the stale file's 1000 were cleared at start, no worker's requests are lost or doubled.
    assert requests_total(samples) == sent
    by_label = requests_by_label(samples)
    assert by_label[("GET", "/metrics", "401")] == 3  # the refused scrapes; this scrape counts in the next one
    assert by_label[("POST", "/v1/client/jobs", "201")] == 40
    assert by_label[("GET", "/v1/client/jobs/{pk}", "200")] == 40
    assert by_label[("GET", "/v1/client/jobs/{pk}", "404")] == 20
    assert by_label[("GET", "<unmatched>", "404")] == 10
    # Route patterns, never raw paths: no id appears in any label.
    label_values = {value for sample in samples for value in sample.labels.values()}
    assert not label_values & {*job_ids, *missing_ids}
    assert not any(re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", value) for value in label_values)
    durations = sum(
        s.value for s in samples
        if s.name == "api_request_duration_seconds_count" and s.labels["endpoint"] not in PROBE_ENDPOINTS
    )
    assert durations == sent
    gauges = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}
    assert gauges[("active_jobs", (("status", "pending"),))] == 40
    assert gauges[("jobs", (("job_type", "embedding"), ("status", "pending")))] == 40
    assert sum(by_worker.values()) == sent and len(by_worker) >= 2, by_worker
    report(f"metrics: {sent} requests over 4 workers {sorted(by_worker.values())}, api_requests_total sums to {sent}")


# --- request ids and logs ------------------------------------------------------------------------------------------


def test_request_ids_are_kept_or_made_and_json_logs_hold_no_secret(live_database_url: str, tmp_path: Path) -> None:
    env = server_env(live_database_url, tmp_path, "logs", GUNICORN_ACCESS_LOG="-")
    key = issue_keys(env, role="client", count=1)[0]
    session_token = "ops-session-" + uuid.uuid4().hex
    signature = "0x" + "ab" * 65
    log_path = tmp_path / "gunicorn.log"
    with live_server(env=env, log_path=log_path, workers=2) as server, httpx.Client(
        base_url=server.url, timeout=30
    ) as http:
        kept = http.get("/v1/client/jobs", headers={"X-Api-Key": key.raw, "X-Request-ID": "ops-trace-1"})
        assert kept.status_code == 200
        assert kept.headers["X-Request-ID"] == "ops-trace-1"

        made = [http.get("/health").headers["X-Request-ID"] for _ in range(2)]
        assert all(HEX_ID.match(request_id) for request_id in made) and made[0] != made[1]

        # Not a sane token (spaces, markup): replaced, so a caller cannot write into the logs through it.
        forged = http.get("/health", headers={"X-Request-ID": "forged id <script>"}).headers["X-Request-ID"]
        assert HEX_ID.match(forged)

        # Secrets where a careless client puts them: the key in the query string too, a session token, a signature.
        leaky = [
            http.get("/v1/client/jobs", params={"api_key": key.raw}, headers={"X-Api-Key": key.raw}),
            http.get("/v1/users/me", headers={"X-Session-Token": session_token}),
            http.post("/v1/users/login", json={"address": "0x" + "12" * 20, "signature": signature,
                                               "message": "x"}),
            http.post("/v1/receipts/verify", json={"signature": signature}),
        ]
        assert leaky[0].status_code == 200 and leaky[1].status_code == 401
        sent_ids = {"ops-trace-1", *made, forged, *(response.headers["X-Request-ID"] for response in leaky)}

    text = log_path.read_text()
    for secret in (key.raw, session_token, signature, signature[2:]):
        assert secret not in text
    access = [entry for entry in json_log_lines(log_path) if entry["logger"] == "gunicorn.access"]
    logged_ids = {entry["request_id"] for entry in access}
    # The server's start-up probe is logged too, with an id of its own.
    assert sent_ids <= logged_ids and all(request_id for request_id in logged_ids)
    assert {entry["http"]["path"] for entry in access} >= {"/v1/client/jobs", "/health", "/v1/users/me"}
    assert all(isinstance(entry["http"]["status"], int) for entry in access)


# --- graceful reload -----------------------------------------------------------------------------------------------


def test_three_hup_reloads_under_load_fail_no_request(live_database_url: str, tmp_path: Path) -> None:
    env = server_env(live_database_url, tmp_path, "reload", API_KEYS="ops-reload-key")
    with live_server(env=env, log_path=tmp_path / "gunicorn.log", workers=2) as server:
        assert server.process is not None
        master = server.process.pid
        stop = threading.Event()
        # (seconds since start when sent, latency, outcome) of every request.
        sent: list[tuple[float, float, str]] = []
        lock = threading.Lock()
        started = time.monotonic()

        def load() -> None:
            # Kept-alive connections, as real clients use: the case where a stopping worker could drop a request.
            with httpx.Client(base_url=server.url, headers={"X-Api-Key": "ops-reload-key"}, timeout=30) as http:
                deadline = time.monotonic() + 90  # bounded even if the main thread never sets `stop`
                count = 0
                while not stop.is_set() and time.monotonic() < deadline:
                    count += 1
                    began = time.monotonic()
                    try:
                        if count % 2:
                            response = http.get("/v1/client/jobs", params={"limit": 5})
                            expected = 200
                        else:
                            response = http.post("/v1/client/jobs", json={"job_type": "embedding", "parameters": {}})
                            expected = 201
                        outcome = "ok" if response.status_code == expected else f"status {response.status_code}"
                    except httpx.HTTPError as error:
                        outcome = f"{type(error).__name__}: {error}"
                    with lock:
                        sent.append((began - started, time.monotonic() - began, outcome))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        ready_at: list[float] = []
        try:
            time.sleep(1.5)
            for _ in range(3):
                before = gunicorn_workers(master)
                signalled = time.monotonic()
                os.kill(master, signal.SIGHUP)
                deadline = signalled + 30
                while (now := gunicorn_workers(master)) & before or len(now) != 2:
                    if time.monotonic() > deadline:
                        pytest.fail(f"the workers were not replaced after HUP: before {before}, now {now}")
                    time.sleep(0.05)
                # Answered only once a new worker has loaded the application.
                assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
                ready_at.append(time.monotonic() - signalled)
                time.sleep(1)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        elapsed = time.monotonic() - started

        failures = [outcome for _, _, outcome in sent if outcome != "ok"]
        assert failures == []
        assert len(sent) >= 50
        # The load went on after the last reload: the last generation of workers served it.
        assert any(began > elapsed - 1 for began, _, _ in sent)
        # Counters of the replaced workers stay in the sum: nothing served before a reload is lost.
        assert requests_total(scrape(server.url)) == len(sent)
    slowest = max(latency for _, latency, _ in sent)
    report(
        f"graceful reload: {len(sent)} requests from 4 threads in {elapsed:.1f} s across 3 HUPs, {len(failures)} "
        f"failed; new workers answering {', '.join(f'{s:.1f}' for s in ready_at)} s after each HUP; slowest "
        f"request {slowest:.1f} s (it waited for the new workers to load the application)"
    )


# --- nginx ---------------------------------------------------------------------------------------------------------

NGINX_CONF = BASE_DIR / "deploy" / "nginx" / "aitbc.conf"


def nginx_binary_or_skip() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        pytest.skip("needs nginx (apt-get install nginx-light); .ci/ops.sh installs it")
    return binary


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1)).sign(key, hashes.SHA256())
    )
    certificate_path, key_path = directory / "cert.pem", directory / "key.pem"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return certificate_path, key_path


def render_nginx_config(directory: Path, *, upstreams: list[str], http_port: int, https_port: int) -> Path:
    """deploy/nginx/aitbc.conf as written, with only what a test must change: the app nodes, 127.0.0.1 ports, a
    self-signed certificate and file paths under `directory`; wrapped in a main nginx.conf for a foreground nginx."""
    certificate, key = _self_signed_certificate(directory)
    site = NGINX_CONF.read_text()
    server_line = re.search(r"(?m)^(\s*)server\s+\S+:\d+(\s[^;]*)?;\n", site)
    assert server_line is not None, "no upstream server line in deploy/nginx/aitbc.conf"
    indent, parameters = server_line.group(1), server_line.group(2) or ""
    site = re.sub(r"(?m)^\s*server\s+\S+:\d+(\s[^;]*)?;\n", "", site)
    site = site.replace(
        "keepalive", "".join(f"{indent}server {address}{parameters};\n" for address in upstreams).lstrip() + indent
        + "keepalive", 1,
    )
    site = re.sub(r"(?m)^\s*listen\s+\[::\].*\n", "", site)
    site = re.sub(r"listen\s+80;", f"listen 127.0.0.1:{http_port};", site)
    site = re.sub(r"listen\s+443 ", f"listen 127.0.0.1:{https_port} ", site)
    site = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {certificate};", site)
    site = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", site)
    site = re.sub(r"access_log\s+\S+", f"access_log {directory / 'access.log'}", site)
    (directory / "aitbc.conf").write_text(site)
    # As root, nginx's workers would switch to `nobody`, who may not enter pytest's temporary directories.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = directory / "nginx.conf"
    main.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} info;\nevents {{ worker_connections 256; }}\n"
        "http {\n"
        + "".join(f"    {kind}_temp_path {directory / kind};\n" for kind in ("client_body", "proxy", "fastcgi",
                                                                             "uwsgi", "scgi"))
        + f"    include {directory / 'aitbc.conf'};\n}}\n"
    )
    return main


@contextmanager
def running_nginx(directory: Path, *, upstreams: list[str]) -> Iterator[tuple[str, str]]:
    """A foreground nginx on 127.0.0.1 with the project's config; yields (https base URL, http base URL)."""
    binary = nginx_binary_or_skip()
    http_port, https_port = free_port(), free_port()
    config = render_nginx_config(directory, upstreams=upstreams, http_port=http_port, https_port=https_port)
    command = [binary, "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")]
    # The arguments are the test's own paths, not outside input.
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", https_port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (directory / "error.log").read_text()[-2000:]
                    raise RuntimeError(f"nginx did not start: {log}") from None
                time.sleep(0.05)
        yield f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}"
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    return context


def _tls_client(**options: Any) -> httpx.Client:
    return httpx.Client(verify=_tls_context(), timeout=30, **options)


@contextmanager
def _app_nodes(env: dict[str, str], tmp_path: Path, count: int) -> Iterator[list[LiveServer]]:
    servers = [LiveServer(env={**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"prometheus-node{index}")},
                          log_path=tmp_path / f"node{index}.log", workers=2) for index in range(count)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def _proxied_env(database_url: str, **overrides: str) -> dict[str, str]:
    """The production settings of deploy/systemd/coordinator.env.example, on 127.0.0.1."""
    return live_env(
        database_url, URL_PREFIX="/api", HTTPS_ONLY="true", BEHIND_TLS_PROXY="true",
        CLIENT_IP_META_KEY="HTTP_X_REAL_IP", ALLOWED_HOSTS="127.0.0.1,localhost", API_KEYS="ops-nginx-key",
        **overrides,
    )


def test_nginx_serves_the_api_under_api_with_the_prefix_in_every_url(live_database_url: str, tmp_path: Path) -> None:
    nginx_binary_or_skip()
    env = _proxied_env(live_database_url, RATE_LIMIT_LOGIN="3/m")
    # Whitenoise serves the admin's static files from STATIC_ROOT, as in the Docker image.
    run_manage("collectstatic", "--no-input", "--verbosity", "0", env=env)
    headers = {"X-Api-Key": "ops-nginx-key"}
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    with _app_nodes(env, tmp_path, 2) as nodes, running_nginx(
        nginx_dir, upstreams=[f"127.0.0.1:{node.port}" for node in nodes]
    ) as (https, http), _tls_client(base_url=https) as client:
        # Plain HTTP only redirects to HTTPS.
        redirect = httpx.get(f"{http}/api/v1/job-types", timeout=10)
        assert redirect.status_code == 301
        assert redirect.headers["Location"] == "https://127.0.0.1/api/v1/job-types"

        health = client.get("/api/health", headers={"X-Request-ID": "through-nginx-1"})
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert health.headers["X-Request-ID"] == "through-nginx-1"
        # HSTS comes from Django, which sees HTTPS through X-Forwarded-Proto; nginx adds none of its own.
        assert health.headers.get_list("Strict-Transport-Security") == ["max-age=31536000; includeSubDomains; preload"]
        assert HEX_ID.match(client.get("/api/health").headers["X-Request-ID"])  # nginx's $request_id

        for _ in range(3):
            assert client.post("/api/v1/client/jobs", headers=headers,
                               json={"job_type": "llm_inference", "parameters": {}}).status_code == 201
        first = client.get("/api/v1/client/jobs", params={"limit": 2}, headers=headers).json()
        next_link = httpx.URL(first["next"])
        assert (next_link.scheme, next_link.path) == ("https", "/api/v1/client/jobs")
        second = client.get(next_link.raw_path.decode(), headers=headers)
        assert second.status_code == 200 and len(second.json()["results"]) == 1

        docs = client.get("/api/docs")
        assert docs.status_code == 200 and "/api/openapi.json" in docs.text
        assert client.get("/api/openapi.json").json()["info"]["title"] == "AITBC Coordinator API"

        login_page = client.get("/api/admin/login/")
        assert login_page.status_code == 200
        stylesheets = re.findall(r'href="([^"]+\.css)"', login_page.text)
        assert stylesheets and all(path.startswith("/api/static/") for path in stylesheets), stylesheets
        for path in stylesheets:
            css = client.get(path)
            assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css"), path

        # /metrics: this machine may scrape it, any other address is refused by nginx itself.
        assert client.get("/api/metrics").status_code == 200
        outsider_transport = httpx.HTTPTransport(local_address="127.0.0.2", verify=_tls_context())
        with httpx.Client(base_url=https, transport=outsider_transport, timeout=30) as outsider:
            assert outsider.get("/api/metrics").status_code == 403
            assert outsider.get("/api/health").status_code == 200

            # Per-IP limits count the address nginx saw, whatever X-Real-IP a client forges (RATE_LIMIT_LOGIN=3/m).
            wait_until_inside_window("ip:127.0.0.1", seconds_needed=5)
            challenge = {"address": "0x" + "12" * 20}
            forged = [
                client.post("/api/v1/users/challenge", json=challenge, headers={"X-Real-IP": f"10.9.9.{index}"})
                for index in range(4)
            ]
            assert [response.status_code for response in forged] == [201, 201, 201, 429]
            wait_until_inside_window("ip:127.0.0.2", seconds_needed=2)
            assert outsider.post("/api/v1/users/challenge", json=challenge).status_code == 201

        # Both nodes served traffic: the upstream balances over them.
        served = [requests_total(scrape(node.url)) for node in nodes]
        assert all(served), served
        report(f"nginx → 2 nodes: API requests served per node {served}")

    access = [json.loads(line) for line in (nginx_dir / "access.log").read_text().splitlines()]
    assert "through-nginx-1" in {entry["request_id"] for entry in access}


class _BlackHole:
    """An "app node" that reads a request and hangs up without answering: a node that dies after doing the work."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.request_lines: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # closed
            with connection:
                connection.settimeout(5)
                received = b""
                try:
                    while b"\r\n\r\n" not in received:
                        chunk = connection.recv(65536)
                        if not chunk:
                            break
                        received += chunk
                except OSError:
                    continue
                if received:
                    self.request_lines.append(received.split(b"\r\n", 1)[0].decode())

    def close(self) -> None:
        self.listener.close()


def test_nginx_never_retries_a_job_hand_out_or_a_post_on_another_node(live_database_url: str, tmp_path: Path) -> None:
    nginx_binary_or_skip()
    env = _proxied_env(live_database_url)
    headers = {"X-Api-Key": "ops-nginx-key"}
    hole = _BlackHole()
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    try:
        with _app_nodes(env, tmp_path, 1) as (node,), running_nginx(
            nginx_dir, upstreams=[f"127.0.0.1:{hole.port}", f"127.0.0.1:{node.port}"]
        ) as (https, _), _tls_client(base_url=https, headers=headers) as client:
            miner = httpx.post(f"{node.url}/v1/miner/register", headers={**headers, "X-Forwarded-Proto": "https"},
                               json={"address": "ait1" + "ab" * 20, "capabilities": ["llm_inference"],
                                     "max_concurrent_jobs": 64}, timeout=10).json()
            before = requests_by_label(scrape(node.url))
            answers: dict[str, list[int]] = {"poll": [], "post": [], "read": []}
            for _ in range(8):
                answers["poll"].append(client.get("/api/v1/miner/jobs",
                                                  params={"miner_id": miner["id"], "limit": 1}).status_code)
                answers["post"].append(client.post("/api/v1/client/jobs",
                                                   json={"job_type": "llm_inference", "parameters": {}}).status_code)
                answers["read"].append(client.get("/api/v1/client/jobs").status_code)
            after = requests_by_label(scrape(node.url))
    finally:
        hole.close()

    def served(method: str, endpoint: str, status: str) -> int:
        return after[(method, endpoint, status)] - before[(method, endpoint, status)]

    # "GET /v1/miner/jobs?miner_id=… HTTP/1.1" → "GET /v1/miner/jobs"
    reached_hole = Counter(
        f"{line.split()[0]} {line.split()[1].split('?')[0]}" for line in hole.request_lines
    )
    # Reads that met the dead node were passed on to the live one: every read answered.
    assert answers["read"] == [200] * 8
    assert reached_hole["GET /v1/client/jobs"] >= 1
    # Polls and submissions that met it were answered 502 and never sent on: the live node saw only the others.
    assert set(answers["poll"]) == {200, 502} and set(answers["post"]) == {201, 502}, answers
    assert answers["poll"].count(502) == reached_hole["GET /v1/miner/jobs"]
    assert answers["post"].count(502) == reached_hole["POST /v1/client/jobs"]
    assert served("GET", "/v1/miner/jobs", "200") == answers["poll"].count(200)
    assert served("POST", "/v1/client/jobs", "201") == answers["post"].count(201)
    report(f"nginx with a node that hangs up: polls {Counter(answers['poll'])}, posts {Counter(answers['post'])}, "
           f"reads {Counter(answers['read'])}; the dead node received {dict(reached_hole)}")


def test_nginx_passes_event_streams_on_as_they_come_and_long_polls_through(
    live_database_url: str, tmp_path: Path
) -> None:
    nginx_binary_or_skip()
    env = _proxied_env(live_database_url)
    headers = {"X-Api-Key": "ops-nginx-key"}
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    with _app_nodes(env, tmp_path, 1) as (node,), running_nginx(
        nginx_dir, upstreams=[f"127.0.0.1:{node.port}"]
    ) as (https, _), _tls_client(base_url=https, headers=headers) as client:
        miner = client.post("/api/v1/miner/register", json={"address": "ait1" + "cd" * 20,
                                                            "capabilities": ["llm_inference"]}).json()
        # A long-poll with nothing to take is answered by the app when its wait ends, not cut off by nginx.
        empty = client.get("/api/v1/miner/jobs", params={"miner_id": miner["id"], "wait": 2})
        assert empty.status_code == 200 and empty.json()["reason"] == "no_matching_jobs"
        job = client.post("/api/v1/client/jobs", json={"job_type": "llm_inference", "parameters": {}}).json()
        seen: list[str] = []
        with client.stream("GET", f"/api/v1/client/jobs/{job['id']}/events",
                           headers={"Accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            # The job is handed out only now: its first event must come through while the stream is open, not
            # held back by a buffer until the response ends.
            assert client.get("/api/v1/miner/jobs", params={"miner_id": miner["id"]}).json()["results"]
            deadline = time.monotonic() + 10
            while not seen and time.monotonic() < deadline:
                line = next(lines)
                if line.startswith("data: "):
                    seen.append(json.loads(line.removeprefix("data: "))["to"])
            client.post("/api/v1/miner/result", json={"miner_id": miner["id"], "job_id": job["id"],
                                                      "status": "completed", "result": {}})
            seen.extend(json.loads(line.removeprefix("data: "))["to"] for line in lines if line.startswith("data: "))
    assert seen == ["running", "completed"]


def test_nginx_answers_its_own_errors_in_the_api_envelope(tmp_path: Path) -> None:
    # Nothing listens on the only app node, so every proxied request meets a refused connection.
    with running_nginx(tmp_path, upstreams=[f"127.0.0.1:{free_port()}"]) as (https_url, _), _tls_client() as http:
        answers = {
            "outside /api/": http.get(f"{https_url}/elsewhere"),
            "an error page itself": http.get(f"{https_url}/__aitbc_errors/502"),
            "no node reachable": http.get(f"{https_url}/api/v1/client/jobs"),
            "body over 2m": http.post(f"{https_url}/api/v1/client/jobs", content=b"x" * (3 * 1024 * 1024)),
            "request line over 8k": http.get(f"{https_url}/api/v1/client/jobs?limit={'1' * 9000}"),
            "header over 8k": http.get(f"{https_url}/api/v1/client/jobs", headers={"X-Filler": "x" * 9000}),
        }
        malformed = raw_tls_exchange(https_url, b"GET /api/v1/client/jobs HTTP/1.1\r\n\r\n")

    expected = {
        "outside /api/": (404, "NOT_FOUND"),
        "an error page itself": (404, "NOT_FOUND"),
        "no node reachable": (502, "UPSTREAM_UNAVAILABLE"),
        "body over 2m": (413, "PAYLOAD_TOO_LARGE"),
        "request line over 8k": (414, "URI_TOO_LONG"),
        "header over 8k": (431, "HEADERS_TOO_LARGE"),
    }
    for case, (status, code) in expected.items():
        response = answers[case]
        assert response.status_code == status, (case, response.text)
        assert response.headers["Content-Type"] == "application/json", case
        assert response.json()["error"]["code"] == code, case
    status_line, _, body = malformed.partition(b"\r\n")
    assert status_line.split()[1] == b"400", malformed
    assert b'"code":"MALFORMED_REQUEST"' in body


def raw_tls_exchange(https_url: str, request: bytes) -> bytes:
    """Sends bytes no HTTP client library would send over TLS, and reads the answer until nginx closes."""
    port = int(https_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain, _tls_context().wrap_socket(
        plain, server_hostname="127.0.0.1"
    ) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received
