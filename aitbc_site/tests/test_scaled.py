"""The scaled mode on one machine: two gunicorn instances on different ports sharing one PostgreSQL database and one
Redis, with load through both at once. Every job is handed out exactly once, rate limits are counted globally, and
each instance's /metrics counts exactly the requests it served.

Needs the suite to run on PostgreSQL (DATABASE_URL) and Redis on 127.0.0.1:6379; skips with the reason otherwise.
.ci/ops.sh provides both and fails if this was skipped.
"""

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from django.db import connection

from aitbc_site.testing import LiveServer
from aitbc_site.tests.test_operations import (
    BURST,
    CLIENT_LIMIT,
    assert_exact_rate_limit,
    fire,
    issue_keys,
    redis_url_or_skip,
    report,
    requests_by_label,
    requests_total,
    scrape,
    server_env,
    wait_for_a_fresh_window,
)

pytestmark = pytest.mark.live

SCALED_REDIS_DB = 12
JOBS = 200
MINERS_PER_INSTANCE = 6


@pytest.fixture
def scaled_database_url(request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL database for both instances; skips on a SQLite run or when PostgreSQL does not answer."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL, as several app nodes share it: run with "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/aitbc_test (.ci/ops.sh does)"
        )
    import psycopg

    settings = connection.settings_dict
    try:
        psycopg.connect(
            host=settings["HOST"], port=settings["PORT"] or 5432, user=settings["USER"],
            password=settings["PASSWORD"] or None, dbname="postgres", connect_timeout=3,
        ).close()
    except psycopg.OperationalError as error:
        pytest.skip(f"needs the PostgreSQL server of DATABASE_URL, which does not answer: {error}")
    return request.getfixturevalue("live_database_url")


@contextmanager
def two_instances(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two gunicorn instances (2 workers each) of one deployment: same database, same Redis, own metrics."""
    with ExitStack() as stack:
        instances = []
        for name in ("a", "b"):
            instance = LiveServer(env={**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"prometheus-{name}")},
                                  log_path=tmp_path / f"instance-{name}.log", workers=2)
            instance.start()
            stack.callback(instance.stop)
            instances.append(instance)
        yield instances[0], instances[1]


def test_two_instances_share_jobs_rate_limits_and_count_their_own_metrics(
    scaled_database_url: str, tmp_path: Path
) -> None:
    env = server_env(
        scaled_database_url, tmp_path, "scaled", REDIS_URL=redis_url_or_skip(SCALED_REDIS_DB),
        RATE_LIMIT_CLIENT=f"{CLIENT_LIMIT}/m",
    )
    # Jobs are submitted with several keys so that submitting stays under the client limit; the burst key is apart.
    submitters = issue_keys(env, role="client", count=4)
    burst_keys = issue_keys(env, role="client", count=30)
    miner_key = issue_keys(env, role="miner", count=1)[0]
    # Requests sent to each instance, by endpoint, to compare with what its /metrics says.
    sent: dict[str, Counter[str]] = {"a": Counter(), "b": Counter()}
    sent_lock = threading.Lock()

    def count(instance: str, endpoint: str, times: int = 1) -> None:
        with sent_lock:
            sent[instance][endpoint] += times

    with two_instances(env, tmp_path) as (a, b):
        urls = {"a": a.url, "b": b.url}
        baseline = {name: scrape(url) for name, url in urls.items()}

        # Submit through both instances at once.
        submitted: list[str] = []
        for index, key in enumerate(submitters):
            name = "ab"[index % 2]
            responses = fire(
                urls[name],
                [("POST", "/v1/client/jobs", {"headers": {"X-Api-Key": key.raw},
                                              "json": {"job_type": "llm_inference", "parameters": {}}})]
                * (JOBS // len(submitters)),
                threads=4,
            )
            assert {response.status_code for response in responses} == {201}
            submitted += [response.json()["id"] for response in responses]
            count(name, "/v1/client/jobs", len(responses))

        # Miners polling through both instances at once: each job must reach exactly one of them.
        handed_out: list[str] = []
        errors: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + 120

        def mine(index: int) -> None:
            name = "ab"[index % 2]
            with httpx.Client(base_url=urls[name], headers={"X-Api-Key": miner_key.raw}, timeout=30) as http:
                registered = http.post(
                    "/v1/miner/register",
                    json={"address": "ait1" + f"{index:02x}" * 20, "capabilities": ["llm_inference"],
                          "max_concurrent_jobs": 3},
                )
                count(name, "/v1/miner/register")
                if registered.status_code != 201:
                    errors.append(f"register {registered.status_code} {registered.text}")
                    return
                miner_id = registered.json()["id"]
                while time.monotonic() < deadline:
                    with lock:
                        if len(handed_out) >= JOBS or errors:
                            return
                    poll = http.get("/v1/miner/jobs", params={"miner_id": miner_id, "limit": 3})
                    count(name, "/v1/miner/jobs")
                    if poll.status_code != 200:
                        errors.append(f"poll {poll.status_code} {poll.text}")
                        return
                    jobs = poll.json()["results"]
                    with lock:
                        handed_out.extend(job["id"] for job in jobs)
                    for job in jobs:
                        result = http.post("/v1/miner/result", json={"miner_id": miner_id, "job_id": job["id"],
                                                                     "status": "completed", "result": {}})
                        count(name, "/v1/miner/result")
                        if result.status_code != 200:
                            errors.append(f"result {result.status_code} {result.text}")

        miners = [threading.Thread(target=mine, args=(index,)) for index in range(2 * MINERS_PER_INSTANCE)]
        for thread in miners:
            thread.start()
        for thread in miners:
            thread.join(timeout=150)

        assert errors == []
        assert [job_id for job_id, times in Counter(handed_out).items() if times > 1] == []
        assert sorted(handed_out) == sorted(submitted)

        # One key's burst through both instances at once: the limit holds for the deployment, not per instance.
        key, last_second = wait_for_a_fresh_window(burst_keys)
        results: dict[str, list[httpx.Response]] = {}

        def burst(name: str) -> None:
            results[name] = fire(urls[name], [("GET", "/v1/client/jobs", {"headers": {"X-Api-Key": key.raw}})]
                                 * (BURST // 2), threads=4)

        bursts = [threading.Thread(target=burst, args=(name,)) for name in urls]
        for thread in bursts:
            thread.start()
        for thread in bursts:
            thread.join(timeout=120)
        assert int(time.time()) <= last_second, "the burst outlasted its rate-limit window; the count is meaningless"
        assert_exact_rate_limit(results["a"] + results["b"], limit=CLIENT_LIMIT)
        for name in urls:
            count(name, "/v1/client/jobs", len(results[name]))
        successes = {name: sum(r.status_code == 200 for r in results[name]) for name in urls}

        final = {name: scrape(url) for name, url in urls.items()}

    for name in urls:
        # Each instance counts exactly what it served: no request of the other, none lost between its workers.
        assert requests_total(final[name]) - requests_total(baseline[name]) == sum(sent[name].values()), name
        by_endpoint: Counter[str] = Counter()
        for (_, endpoint, _), times in (requests_by_label(final[name]) - requests_by_label(baseline[name])).items():
            by_endpoint[endpoint] += times
        assert {endpoint: by_endpoint[endpoint] for endpoint in sent[name]} == dict(sent[name]), name
    report(
        f"scaled: {JOBS} jobs handed out once each by {2 * MINERS_PER_INSTANCE} miners over 2 instances; burst of "
        f"{BURST} with one key → {sum(successes.values())} successes in total ({successes}); requests per instance "
        f"{ {name: sum(sent[name].values()) for name in urls} } match their /metrics"
    )
