"""A miner as a separate OS process, for fault tests: registers, then polls and posts results until told to stop.

Usage: python miner_process.py URL API_KEY WORK_SECONDS DEADLINE_SECONDS
Prints one line per event ("took <job id>", "done <job id>") so the test can tell what it held when it was killed.
"""

import sys
import time

import httpx


def main() -> None:
    url, api_key, work_seconds, deadline_seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    deadline = time.monotonic() + deadline_seconds
    with httpx.Client(base_url=url, headers={"X-Api-Key": api_key}, timeout=10) as http:
        miner = http.post(
            "/v1/miner/register",
            json={"address": "ait1" + "11" * 20, "capabilities": ["llm_inference"], "max_concurrent_jobs": 2},
        ).json()
        print(f"miner {miner['id']}", flush=True)
        while time.monotonic() < deadline:
            assignments = http.get("/v1/miner/jobs", params={"miner_id": miner["id"], "limit": 2}).json()["results"]
            if not assignments:
                time.sleep(0.2)
                continue
            for assignment in assignments:
                print(f"took {assignment['id']}", flush=True)
            time.sleep(work_seconds)
            for assignment in assignments:
                http.post(
                    "/v1/miner/result",
                    json={"miner_id": miner["id"], "job_id": assignment["id"], "status": "completed",
                          "result": {"by": miner["id"]}},
                )
                print(f"done {assignment['id']}", flush=True)


if __name__ == "__main__":
    main()
