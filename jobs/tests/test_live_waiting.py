"""Against a real gunicorn server (2 gevent workers) on a database file or PostgreSQL: miners waiting in a long-poll
get jobs submitted mid-wait at once, each job exactly once; waits end on time; waiters left by their clients free
what they held; a killed worker loses no job."""

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aitbc_site.testing import LiveServer, live_server
from conftest import live_env

pytestmark = pytest.mark.live

API_KEY = "live-waiting-key"


@pytest.fixture
def server(live_database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    env = live_env(live_database_url, API_KEYS=API_KEY, JOB_TYPES="llm_inference,embedding")
    with live_server(env=env, log_path=tmp_path / "gunicorn.log", workers=2) as live:
        yield live


def client(server: LiveServer, timeout: float = 40) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-Api-Key": API_KEY}, timeout=timeout)


def register(http: httpx.Client, index: int, job_types: list[str] | None = None) -> str:
    response = http.post(
        "/v1/miner/register",
        json={"address": "ait1" + f"{index:02x}" * 20, "capabilities": job_types or ["llm_inference"],
              "max_concurrent_jobs": 1},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def submit(http: httpx.Client, job_type: str = "llm_inference") -> str:
    response = http.post("/v1/client/jobs", json={"job_type": job_type, "parameters": {}})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_a_waiting_miner_gets_a_job_submitted_mid_wait_within_the_wait(server: LiveServer) -> None:
    with client(server) as http:
        miner_id = register(http, 1)
        answer: dict[str, object] = {}

        def wait_for_work() -> None:
            with client(server) as own:
                started = time.monotonic()
                response = own.get("/v1/miner/jobs", params={"miner_id": miner_id, "wait": 20})
                answer.update(status=response.status_code, body=response.json(), took=time.monotonic() - started)

        waiting = threading.Thread(target=wait_for_work)
        waiting.start()
        time.sleep(1.0)
        job_id = submit(http)
        waiting.join(timeout=30)

    assert answer["status"] == 200
    assert [job["id"] for job in answer["body"]["results"]] == [job_id]  # type: ignore[index]
    # Woken by the submit, not by the wait running out.
    assert answer["took"] < 10  # type: ignore[operator]


def test_fifty_waiting_miners_get_ten_jobs_each_exactly_once(server: LiveServer) -> None:
    with client(server) as http:
        miners = [register(http, index) for index in range(50)]
    handed: list[str] = []
    lock = threading.Lock()

    def wait_once(miner_id: str) -> None:
        with client(server) as own:
            response = own.get("/v1/miner/jobs", params={"miner_id": miner_id, "wait": 8})
            assert response.status_code == 200, response.text
            with lock:
                handed.extend(job["id"] for job in response.json()["results"])

    waiters = [threading.Thread(target=wait_once, args=(miner_id,)) for miner_id in miners]
    for thread in waiters:
        thread.start()
    time.sleep(1.5)
    with client(server) as http:
        submitted = [submit(http) for _ in range(10)]
    for thread in waiters:
        thread.join(timeout=30)

    assert not any(thread.is_alive() for thread in waiters)
    assert Counter(handed) == Counter(submitted)


def test_a_wait_with_nothing_to_take_ends_empty_on_time(server: LiveServer) -> None:
    with client(server) as http:
        miner_id = register(http, 2)
        # A job of a type this miner does not run wakes nobody it concerns.
        submit(http, job_type="embedding")
        started = time.monotonic()
        response = http.get("/v1/miner/jobs", params={"miner_id": miner_id, "wait": 2})
        took = time.monotonic() - started

    assert response.status_code == 200
    assert response.json()["results"] == []
    assert response.json()["reason"] == "no_matching_jobs"
    assert 2 <= took < 5


def test_a_client_waits_for_its_job_to_end(server: LiveServer) -> None:
    with client(server) as http:
        miner_id = register(http, 3)
        job_id = submit(http)
        answer: dict[str, object] = {}

        def wait_for_end() -> None:
            with client(server) as own:
                response = own.get(f"/v1/client/jobs/{job_id}", params={"wait": 20})
                answer.update(status=response.status_code, job=response.json())

        waiting = threading.Thread(target=wait_for_end)
        waiting.start()
        time.sleep(0.5)
        assert http.get("/v1/miner/jobs", params={"miner_id": miner_id}).json()["results"]
        posted = http.post("/v1/miner/result", json={"miner_id": miner_id, "job_id": job_id, "status": "completed",
                                                     "result": {"text": "done"}})
        assert posted.status_code == 200, posted.text
        waiting.join(timeout=30)

    assert answer["status"] == 200
    assert answer["job"]["status"] == "completed"  # type: ignore[index]


def test_miners_that_leave_mid_wait_free_their_waits(server: LiveServer) -> None:
    with client(server) as http:
        miners = [register(http, 10 + index) for index in range(20)]
    # Each opens a long-poll and drops the connection at once.
    for miner_id in miners:
        try:
            httpx.get(f"{server.url}/v1/miner/jobs", params={"miner_id": miner_id, "wait": 3},
                      headers={"X-Api-Key": API_KEY}, timeout=0.3)
        except httpx.ReadTimeout:
            pass
    # Their waits end within the wait (the server notices the closed connection when it answers), and the jobs
    # submitted after are still there for a miner that stays.
    time.sleep(4)
    with client(server) as http:
        job_id = submit(http)
        response = http.get("/v1/miner/jobs", params={"miner_id": miners[0]})
        assert [job["id"] for job in response.json()["results"]] == [job_id]
        metrics = http.get("/metrics").text
    assert waiting_requests(metrics) == 0


def waiting_requests(metrics: str) -> float:
    lines = [line for line in metrics.splitlines() if line.startswith("waiting_requests")]
    assert lines, "the waiting-requests gauge is missing"
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_killing_a_worker_mid_wait_loses_no_job(server: LiveServer) -> None:
    with client(server) as http:
        miner_id = register(http, 40)
        workers = worker_pids(server)
        outcome: dict[str, object] = {}

        def wait_for_work() -> None:
            with client(server) as own:
                try:
                    response = own.get("/v1/miner/jobs", params={"miner_id": miner_id, "wait": 20})
                    outcome["status"] = response.status_code
                except httpx.HTTPError as error:
                    outcome["error"] = error

        waiting = threading.Thread(target=wait_for_work)
        waiting.start()
        time.sleep(1.0)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        waiting.join(timeout=30)
        # The arbiter starts new workers; the job submitted now is there for the miner's next poll.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                job_id = submit(http)
                break
            except (httpx.HTTPError, AssertionError):
                time.sleep(0.2)
        response = http.get("/v1/miner/jobs", params={"miner_id": miner_id, "wait": 5})

    assert "error" in outcome or outcome.get("status") == 200
    assert [job["id"] for job in response.json()["results"]] == [job_id]


def worker_pids(server: LiveServer) -> list[int]:
    assert server.process is not None
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return [int(pid) for pid in children]
