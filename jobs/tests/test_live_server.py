"""Against a real gunicorn server (2 workers, threads) on a real database file or PostgreSQL: the claim hands every
job to exactly one miner, and jobs of miners killed mid-job are finished by others exactly once."""

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from aitbc_site.testing import live_server
from conftest import live_env

pytestmark = pytest.mark.live

API_KEY = "live-test-key"
JOBS = 300
MINER_THREADS = 16


def _submit_jobs(url: str, count: int) -> list[str]:
    ids: list[str] = []
    lock = threading.Lock()

    def submit(share: int) -> None:
        with httpx.Client(base_url=url, headers={"X-Api-Key": API_KEY}, timeout=30) as http:
            for _ in range(share):
                response = http.post("/v1/client/jobs", json={"job_type": "llm_inference", "parameters": {}})
                assert response.status_code == 201, response.text
                with lock:
                    ids.append(response.json()["id"])

    threads = [threading.Thread(target=submit, args=(count // 4,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return ids


def test_sixteen_polling_miners_get_every_job_exactly_once(live_database_url: str, tmp_path: Path) -> None:
    env = live_env(live_database_url, API_KEYS=API_KEY)
    with live_server(env=env, log_path=tmp_path / "gunicorn.log", workers=2) as server:
        submitted = _submit_jobs(server.url, JOBS)
        handed_out: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + 90

        def mine(index: int) -> None:
            with httpx.Client(base_url=server.url, headers={"X-Api-Key": API_KEY}, timeout=30) as http:
                miner = http.post(
                    "/v1/miner/register",
                    json={"address": "ait1" + f"{index:02x}" * 20, "capabilities": ["llm_inference"],
                          "max_concurrent_jobs": 3},
                ).json()
                while time.monotonic() < deadline:
                    with lock:
                        if len(handed_out) >= JOBS:
                            return
                    poll = http.get("/v1/miner/jobs", params={"miner_id": miner["id"], "limit": 3})
                    assert poll.status_code == 200, poll.text
                    jobs = poll.json()["results"]
                    with lock:
                        handed_out.extend(job["id"] for job in jobs)
                    for job in jobs:
                        result = http.post(
                            "/v1/miner/result",
                            json={"miner_id": miner["id"], "job_id": job["id"], "status": "completed", "result": {}},
                        )
                        assert result.status_code == 200, result.text

        miners = [threading.Thread(target=mine, args=(index,)) for index in range(MINER_THREADS)]
        for thread in miners:
            thread.start()
        for thread in miners:
            thread.join(timeout=120)

        twice = [job_id for job_id, times in Counter(handed_out).items() if times > 1]
        assert twice == []
        assert sorted(handed_out) == sorted(submitted)
        with httpx.Client(base_url=server.url, headers={"X-Api-Key": API_KEY}, timeout=30) as http:
            statuses = Counter(http.get(f"/v1/client/jobs/{job_id}").json()["status"] for job_id in submitted)
        assert statuses == {"completed": JOBS}


def test_jobs_of_miners_killed_mid_job_are_completed_exactly_once_by_the_others(
    live_database_url: str, tmp_path: Path
) -> None:
    env = live_env(
        live_database_url, API_KEYS=API_KEY, JOB_LEASE_SECONDS="2", JOB_RETRY_BACKOFF_SECONDS="1",
        MINER_HEARTBEAT_TIMEOUT="5", JOB_MAX_ATTEMPTS="5",
    )
    with live_server(env=env, log_path=tmp_path / "gunicorn.log", workers=2) as server:
        submitted = _submit_jobs(server.url, 40)
        script = Path(__file__).with_name("miner_process.py")

        def start_miner(work_seconds: float) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [sys.executable, str(script), server.url, API_KEY, str(work_seconds), "60"],
                stdout=subprocess.PIPE, text=True,
            )

        # Slow miners are killed while they hold jobs; the quick ones must pick those jobs up once the leases lapse.
        doomed = [start_miner(work_seconds=30) for _ in range(2)]
        time.sleep(1.5)
        for process in doomed:
            process.send_signal(signal.SIGKILL)
        held_by_the_dead = set()
        for process in doomed:
            output, _ = process.communicate(timeout=10)
            held_by_the_dead |= {line.split()[1] for line in output.splitlines() if line.startswith("took ")}
        assert held_by_the_dead, "the killed miners should have died holding jobs"

        survivors = [start_miner(work_seconds=0.05) for _ in range(3)]
        with httpx.Client(base_url=server.url, headers={"X-Api-Key": API_KEY}, timeout=30) as http:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                statuses = Counter(http.get(f"/v1/client/jobs/{job_id}").json()["status"] for job_id in submitted)
                if statuses == {"completed": len(submitted)}:
                    break
                time.sleep(0.5)
            for process in survivors:
                process.kill()
                process.wait(timeout=10)
            assert statuses == {"completed": len(submitted)}
            for job_id in submitted:
                events = http.get(f"/v1/client/jobs/{job_id}/events", params={"limit": 100}).json()["results"]
                assert [event["to"] for event in events].count("completed") == 1
            for job_id in held_by_the_dead:
                events = http.get(f"/v1/client/jobs/{job_id}/events", params={"limit": 100}).json()["results"]
                assert any(event["reason"] == "the miner's lease expired" for event in events)
