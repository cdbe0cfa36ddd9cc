#!/usr/bin/env python3
"""Job cycles run in-process through the WSGI application, for `instructions.sh` to count under callgrind.

Each batch submits 4 jobs, takes them with one poll (`limit=4`), posts their results and reads each back, every
request through the whole middleware and DRF stack but without gunicorn, sockets or other threads. Warm-up batches
first (imports, caches, the first receipt key); then, under callgrind, instrumentation is switched on only for the
measured batches. Runs on a fresh SQLite database in a temporary directory. With `--billed` the client is a funded
wallet user, so every job's price is held and paid out through the ledger. With `--dialect original` the same cycle
speaks the original AITBC routes (/v1/jobs, /v1/miners/…), whose poll hands out one job at a time: 4 polls a batch.
"""

import argparse
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

BATCH = 4
WARM_UP_BATCHES = 20
API_KEY = "bench-instructions-key"


def configure(work: Path) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="aitbc_site.settings",
        DATABASE_URL=f"sqlite:///{work}/coordinator.db",
        SECRET_KEY="bench-instructions-" + "x" * 40,
        API_KEYS=API_KEY,
        CACHE_DIR=str(work / "cache"),
        RECEIPT_SIGNING_KEY_FILE=str(work / "receipt-signing.key"),
        RATE_LIMIT_CLIENT="100000000/m",
        RATE_LIMIT_MINER="100000000/m",
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class Caller:
    """Calls the WSGI application the way gunicorn would, and decodes the JSON answer."""

    def __init__(self, application: Any) -> None:
        self.application = application

    def __call__(self, method: str, path: str, key: str, body: Any = None, query: str = "") -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_ACCEPT": "*/*",
            "HTTP_X_API_KEY": key,
            "CONTENT_LENGTH": str(len(data)),
            "wsgi.input": io.BytesIO(data),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        if data:
            environ["CONTENT_TYPE"] = "application/json"
        answer: dict[str, int] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer["status"] = int(status.split()[0])

        response = self.application(environ, start_response)
        try:
            payload = b"".join(response)
        finally:
            response.close()
        return answer["status"], json.loads(payload)


def funded_wallet_key() -> str:
    """A client key of a wallet user holding enough AITBC for any run."""
    from accounts import ledger
    from accounts.models import ApiKeyRole
    from accounts.services import api_key_issue, wallet_user_for

    user = wallet_user_for(address="ait1" + "ab" * 20)
    ledger.deposit(user_id=user.pk, amount=Decimal("1000000"), reference="bench:instructions", memo="benchmark funds")
    return api_key_issue(user=user, role=ApiKeyRole.CLIENT, name="benchmark")[1]


def run_batch(call: Caller, client_key: str, miner_id: str) -> None:
    job_ids = []
    for number in range(BATCH):
        body = {"job_type": "llm_inference", "parameters": {"prompt": f"benchmark job {number}", "max_tokens": 16}}
        status, job = call("POST", "/v1/client/jobs", client_key, body)
        assert status == 201, job
        job_ids.append(job["id"])
    status, page = call("GET", "/v1/miner/jobs", API_KEY, query=f"miner_id={miner_id}&limit={BATCH}")
    assert status == 200 and len(page["results"]) == BATCH, page
    for assignment in page["results"]:
        result = {"miner_id": miner_id, "job_id": assignment["id"], "status": "completed", "result": {"output": "ok"}}
        status, answer = call("POST", "/v1/miner/result", API_KEY, result)
        assert status == 200, answer
    for job_id in job_ids:
        status, job = call("GET", f"/v1/client/jobs/{job_id}", client_key)
        assert status == 200 and job["status"] == "completed", job


def run_original_batch(call: Caller, client_key: str) -> None:
    job_ids = []
    for number in range(BATCH):
        body = {"payload": {"type": "inference", "prompt": f"benchmark job {number}", "max_tokens": 16}}
        status, job = call("POST", "/v1/jobs", client_key, body)
        assert status == 201, job
        job_ids.append(job["job_id"])
    for _ in range(BATCH):
        status, assignment = call("POST", "/v1/miners/poll", API_KEY, {"max_wait_seconds": 5})
        assert status == 200, assignment
        result = {"result": {"output": "ok"}, "metrics": {"compute_time": 0.1}}
        status, answer = call("POST", f"/v1/miners/{assignment['job_id']}/result", API_KEY, result)
        assert status == 200, answer
    for job_id in job_ids:
        status, job = call("GET", f"/v1/jobs/{job_id}", client_key)
        assert status == 200 and job["state"] == "COMPLETED", job


def callgrind_instrumentation(on: bool) -> None:
    """Switch callgrind's counting for this process (a no-op when not run under callgrind)."""
    if os.environ.get("BENCH_UNDER_CALLGRIND"):
        switch = "on" if on else "off"
        subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40, help="jobs measured (a multiple of 4)")
    parser.add_argument("--billed", action="store_true", help="the client is a funded wallet user")
    parser.add_argument("--dialect", choices=["ours", "original"], default="ours", help="which routes to speak")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aitbc-instructions.") as work:
        configure(Path(work))
        import django

        django.setup()
        from django.core.management import call_command

        from aitbc_site.wsgi import application

        call_command("migrate", verbosity=0)
        call = Caller(application)
        client_key = funded_wallet_key() if options.billed else API_KEY
        registration = {"address": "ait1" + "cd" * 20, "capabilities": ["llm_inference"], "max_concurrent_jobs": BATCH}
        status, miner = call("POST", "/v1/miner/register", API_KEY, registration)
        assert status == 201, miner

        def batch() -> None:
            if options.dialect == "original":
                run_original_batch(call, client_key)
            else:
                run_batch(call, client_key, miner["id"])

        for _ in range(WARM_UP_BATCHES):
            batch()
        # A full collection walks every object of the process, Django's included: one falling inside the measured
        # batches (when it does depends on how many objects everything before allocated) cost about 1.9 M
        # instructions a job, more than most changes measured here. Collected and frozen first, as a long-running
        # worker's startup heap effectively is, the figure is the cycle's own.
        gc.collect()
        gc.freeze()
        callgrind_instrumentation(on=True)
        for _ in range(options.jobs // BATCH):
            batch()
        callgrind_instrumentation(on=False)


if __name__ == "__main__":
    main()
