#!/usr/bin/env python3
"""Does the claim slow down as the queue grows? Poll latency with a short queue and with a long one.

One miner polls with limit=1, posts the result and submits a replacement job, over and over, first with `--small`
jobs pending and then with `--large`; only the polls are timed. Target: p99(large) within 2x of p99(small).

The long queue is seeded straight into the server's database through the ORM (the API would take minutes), so
this script runs with the server's own settings environment (DATABASE_URL, SECRET_KEY) from the project's
virtualenv, and it leaves its jobs behind: point it at a throwaway server, as bench/run.sh does.

    DATABASE_URL=... SECRET_KEY=... python bench/queue_depth.py --url http://127.0.0.1:8000 --api-key KEY
"""

import argparse
import json
import logging
import math
import os
import secrets
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aitbc_site.settings")

import django

django.setup()
# The project's logging configuration sends every INFO record to the console; httpx logs each request at INFO.
logging.getLogger("httpx").setLevel(logging.WARNING)

from django.conf import settings  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from jobs.models import Job, JobStatus  # noqa: E402

JOB_TYPE = "llm_inference"
SEED_TRANSACTION_ROWS = 10_000
PERCENTILES = (50, 95, 99)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def seed_pending_jobs(*, client_id: UUID, count: int) -> None:
    """Insert `count` pending jobs as job_submit would create them (no requirements, default limits)."""
    for offset in range(0, count, SEED_TRANSACTION_ROWS):
        now = timezone.now()
        jobs = [
            Job(
                client_id=client_id,
                job_type=JOB_TYPE,
                parameters={"prompt": f"queued job {offset + n}"},
                requirements={},
                priority=0,
                status=JobStatus.PENDING,
                max_attempts=settings.JOB_MAX_ATTEMPTS,
                max_runtime_seconds=settings.JOB_MAX_RUNTIME_SECONDS,
                created_at=now,
                updated_at=now,
                not_before=now,
                expires_at=now + timedelta(seconds=settings.JOB_TTL_SECONDS),
            )
            for n in range(min(SEED_TRANSACTION_ROWS, count - offset))
        ]
        # One transaction per slice, so the server's writers never wait long for SQLite's single write lock.
        with transaction.atomic():
            Job.objects.bulk_create(jobs, batch_size=1000)


def top_up_queue(*, client_id: UUID, depth: int) -> int:
    """Bring the number of pending jobs up to `depth`; returns how many were added."""
    missing: int = depth - Job.objects.filter(status=JobStatus.PENDING).count()
    if missing > 0:
        seed_pending_jobs(client_id=client_id, count=missing)
    return max(missing, 0)


def submit_job(http: httpx.Client) -> dict[str, Any]:
    response = http.post("/v1/client/jobs", json={"job_type": JOB_TYPE, "parameters": {"prompt": "replacement"}})
    response.raise_for_status()
    job: dict[str, Any] = response.json()
    return job


def time_polls(*, http: httpx.Client, miner_id: str, polls: int, warmup: int) -> tuple[list[float], int]:
    """Poll, complete and replace one job at a time; the sorted latencies of the timed polls and the empty polls."""
    latencies: list[float] = []
    empty = 0
    for n in range(warmup + polls):
        started = time.perf_counter()
        response = http.get("/v1/miner/jobs", params={"miner_id": miner_id, "limit": 1})
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        assignments = response.json()["results"]
        if n >= warmup:
            latencies.append(elapsed)
        if not assignments:
            empty += 1
            continue
        # Complete it at once so the miner stays under max_concurrent_jobs, and put a new job at the back of the
        # queue so every poll sees the same depth.
        result = {"miner_id": miner_id, "job_id": assignments[0]["id"], "status": "completed", "result": {"ok": True}}
        http.post("/v1/miner/result", json=result).raise_for_status()
        submit_job(http)
    return sorted(latencies), empty


def measure(*, url: str, api_key: str, depths: tuple[int, int], polls: int, warmup: int) -> dict[str, Any]:
    with httpx.Client(base_url=url, headers={"X-Api-Key": api_key}, timeout=30.0) as http:
        registration = {"address": "ait1" + secrets.token_hex(20), "capabilities": [JOB_TYPE], "max_concurrent_jobs": 1}
        response = http.post("/v1/miner/register", json=registration)
        response.raise_for_status()
        miner_id = response.json()["id"]
        # The API key's principal owns the seeded jobs, as if it had submitted them.
        client_id = UUID(submit_job(http)["client_id"])
        phases: dict[str, Any] = {}
        for depth in depths:
            seed_started = time.perf_counter()
            added = top_up_queue(client_id=client_id, depth=depth)
            seed_seconds = time.perf_counter() - seed_started
            latencies, empty = time_polls(http=http, miner_id=miner_id, polls=polls, warmup=warmup)
            phases[str(depth)] = {
                "pending": depth,
                "seeded": added,
                "seed_seconds": round(seed_seconds, 2),
                "polls": len(latencies),
                "empty_polls": empty,
                **{f"p{p}_ms": round(percentile(latencies, p) * 1000, 2) for p in PERCENTILES},
            }
    small, large = (phases[str(depth)] for depth in depths)
    return {"phases": phases, "p99_ratio": round(large["p99_ms"] / small["p99_ms"], 2)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--url",
        default=os.environ.get("BENCH_URL", "http://127.0.0.1:8000"),
        help="the server (env BENCH_URL; default %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("BENCH_API_KEY"),
        help="a key valid on client and miner endpoints (env BENCH_API_KEY)",
    )
    parser.add_argument("--small", type=int, default=100, help="pending jobs in the short queue (default %(default)s)")
    parser.add_argument(
        "--large", type=int, default=100_000, help="pending jobs in the long queue (default %(default)s)"
    )
    parser.add_argument("--polls", type=int, default=1000, help="timed polls per queue (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed polls first (default %(default)s)")
    parser.add_argument("--max-ratio", type=float, default=2.0, help="fail above this p99 ratio (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("--api-key (or BENCH_API_KEY) is required")
    if not 0 < args.small < args.large or args.polls < 1 or args.warmup < 0:
        parser.error("need 0 < --small < --large, --polls >= 1 and --warmup >= 0")

    report = measure(
        url=args.url.rstrip("/"),
        api_key=args.api_key,
        depths=(args.small, args.large),
        polls=args.polls,
        warmup=args.warmup,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for phase in report["phases"].values():
            print(
                f"  {phase['pending']:>7} pending (seeded {phase['seeded']} in {phase['seed_seconds']} s): "
                f"poll p50 {phase['p50_ms']} ms, p95 {phase['p95_ms']} ms, p99 {phase['p99_ms']} ms "
                f"over {phase['polls']} polls ({phase['empty_polls']} empty)"
            )
        print(f"  p99 ratio: {report['p99_ratio']} (target <= {args.max_ratio})")
    empty_polls = sum(phase["empty_polls"] for phase in report["phases"].values())
    return 1 if report["p99_ratio"] > args.max_ratio or empty_polls else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
