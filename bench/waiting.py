#!/usr/bin/env python3
"""Waiting benchmarks against a running server on this machine (bench/waiting.sh starts one), in one asyncio process
whose own CPU is not counted: the server's is read from /proc for its whole process tree.

    python bench/waiting.py idle [--waiters 2000 --seconds 60] [--hold]
    python bench/waiting.py dispatch [--miners 20 --jobs 200]
    python bench/waiting.py streams [--jobs 20 --chunks 50 --interval 0.1]

- idle: miners long-poll (`wait=30`) a job type nobody submits, each polling again when its wait ends (the first
  waits are spread over 30 s so the re-polls are too). Reports the server's CPU over a window, as % of one core,
  and its workers' threads and resident memory with 10 waiters and with all: memory per waiting connection, and
  whether threads grew. `--hold` keeps them waiting until the process is stopped (bench/run.sh BENCH_IDLE_WAITERS).
- dispatch: miners long-poll while jobs are submitted one at a time; the latency from a submit's 201 to a waiting
  miner having the job. With 2 workers the winning miner is on the other worker about half the time.
- streams: jobs each get a chunk posted every `interval` seconds, each read by one SSE client; the relay latency
  from a post's answer to its reader having the chunk, the server's CPU per relayed chunk (posting it included),
  and chunks lost, repeated or out of order (all must be 0).

Reads BENCH_URL and BENCH_API_KEY (a key valid for clients and miners) from the environment; BENCH_SERVER_PID, if
set, is the server's top process (otherwise whoever listens on the URL's port).
"""

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import find_server_roots, percentile, server_cpu_ticks

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
IDLE_JOB_TYPE = "embedding"
WORK_JOB_TYPE = "llm_inference"
LONG_POLL_SECONDS = 30


def server_roots(url: str) -> list[int]:
    if os.environ.get("BENCH_SERVER_PID"):
        return [int(os.environ["BENCH_SERVER_PID"])]
    return find_server_roots(urlsplit(url).port or 80)


def worker_pids(roots: list[int]) -> list[int]:
    pids: list[int] = []
    for root in roots:
        for task in Path(f"/proc/{root}/task").iterdir():
            pids.extend(int(pid) for pid in (task / "children").read_text().split())
    return pids


def workers_state(roots: list[int]) -> dict[str, int]:
    """Threads and resident kB summed over the server's workers."""
    threads = rss = 0
    for pid in worker_pids(roots):
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        threads += int(status["Threads"])
        rss += int(status["VmRSS"].split()[0])
    return {"threads": threads, "rss_kb": rss}


def client(url: str, key: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, headers={"X-Api-Key": key}, limits=limits,
                             timeout=LONG_POLL_SECONDS + 30)


async def register(http: httpx.AsyncClient, count: int, job_type: str, *, offset: int, capacity: int = 1) -> list[str]:
    async def one(index: int) -> str:
        body = {"address": f"ait1{offset + index:040x}", "capabilities": [job_type], "max_concurrent_jobs": capacity}
        for _ in range(3):
            try:
                response = await http.post("/v1/miner/register", json=body)
                break
            except httpx.TransportError:
                # A keep-alive connection the server closed as it was reused: registering again is idempotent.
                await asyncio.sleep(0.1)
        assert response.status_code in (200, 201), response.text
        return str(response.json()["id"])

    ids: list[str] = []
    for start in range(0, count, 100):
        ids.extend(await asyncio.gather(*(one(index) for index in range(start, min(count, start + 100)))))
    return ids


class Tally:
    def __init__(self) -> None:
        self.answers = 0
        self.failures = 0
        self.waiting = 0


class Connection:
    """One miner's own keep-alive HTTP/1.1 connection, as a real miner holds one (a shared client pool would not
    keep 2,000 connections open at once); just enough HTTP for the poll's answer."""

    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.key = parts.hostname or "127.0.0.1", parts.port or 80, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nX-Api-Key: {self.key}\r\n"
                          "\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.writer.close()
            self.writer = None
        return int(status_line.split()[1]), body


async def wait_forever(url: str, key: str, miner_id: str, tally: Tally, first_wait: int) -> None:
    connection = Connection(url, key)
    wait = first_wait
    while True:
        tally.waiting += 1
        try:
            status, body = await connection.get(f"/v1/miner/jobs?miner_id={miner_id}&wait={wait}")
            tally.answers += 1
            if status != 200 or json.loads(body)["results"]:
                tally.failures += 1
        except (OSError, asyncio.IncompleteReadError):
            tally.failures += 1
            connection = Connection(url, key)
            await asyncio.sleep(1)
        finally:
            tally.waiting -= 1
        wait = LONG_POLL_SECONDS


async def until(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def idle(url: str, key: str, options: argparse.Namespace) -> dict[str, Any]:
    roots = server_roots(url)
    tally = Tally()
    async with client(url, key, 100) as http:
        miners = await register(http, options.waiters, IDLE_JOB_TYPE, offset=0)
        tasks = [asyncio.create_task(wait_forever(url, key, miner, tally, random.randint(1, LONG_POLL_SECONDS)))
                 for miner in miners[:10]]
        await until(lambda: tally.waiting == 10, 30)
        await asyncio.sleep(3)
        with_ten = workers_state(roots)
        for start in range(10, len(miners), 200):
            tasks.extend(asyncio.create_task(wait_forever(url, key, miner, tally, random.randint(1, LONG_POLL_SECONDS)))
                         for miner in miners[start : start + 200])
            await asyncio.sleep(0.2)
        await until(lambda: tally.waiting >= options.waiters, 60)
        await asyncio.sleep(3)
        with_all = workers_state(roots)
        print(f"waiting {tally.waiting} miners", flush=True)
        if options.hold:
            await asyncio.Event().wait()
        answers_before, ticks_before, started = tally.answers, server_cpu_ticks(roots), time.monotonic()
        await asyncio.sleep(options.seconds)
        ticks, elapsed = server_cpu_ticks(roots) - ticks_before, time.monotonic() - started
        answers = tally.answers - answers_before
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "scenario": "idle",
        "waiters": options.waiters,
        "window_seconds": round(elapsed, 1),
        "server_cpu_percent_of_one_core": round(100 * ticks / TICKS_PER_SECOND / elapsed, 1),
        "polls_answered_per_second": round(answers / elapsed, 1),
        "failures": tally.failures,
        "worker_threads": {"with_10_waiters": with_ten["threads"], f"with_{options.waiters}": with_all["threads"]},
        "worker_rss_mb": {"with_10_waiters": round(with_ten["rss_kb"] / 1024, 1),
                          f"with_{options.waiters}": round(with_all["rss_kb"] / 1024, 1)},
        "rss_kb_per_waiting_connection": round((with_all["rss_kb"] - with_ten["rss_kb"]) / (options.waiters - 10), 1),
    }


async def dispatch(url: str, key: str, options: argparse.Namespace) -> dict[str, Any]:
    received: dict[str, float] = {}
    stop = asyncio.Event()
    tally = Tally()

    async def mine(http: httpx.AsyncClient, miner_id: str) -> None:
        while not stop.is_set():
            tally.waiting += 1
            response = await http.get("/v1/miner/jobs", params={"miner_id": miner_id, "wait": 5})
            tally.waiting -= 1
            now = time.perf_counter()
            for job in response.json()["results"]:
                received[job["id"]] = now

    async with client(url, key, options.miners + 10) as http:
        miners = await register(http, options.miners, WORK_JOB_TYPE, offset=100_000, capacity=64)
        tasks = [asyncio.create_task(mine(http, miner)) for miner in miners]
        latencies: list[float] = []
        for _ in range(options.jobs):
            await until(lambda: tally.waiting == options.miners, 10)
            response = await http.post("/v1/client/jobs", json={"job_type": WORK_JOB_TYPE, "parameters": {}})
            answered = time.perf_counter()
            job_id = response.json()["id"]
            await until(lambda job_id=job_id: job_id in received, 10)
            latencies.append(1000 * (received[job_id] - answered) if job_id in received else float("inf"))
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    ordered = sorted(latencies)
    return {
        "scenario": "dispatch",
        "miners": options.miners,
        "jobs": options.jobs,
        "never_handed_out": sum(1 for value in ordered if value == float("inf")),
        "latency_ms": {"p50": round(percentile(ordered, 50), 2), "p99": round(percentile(ordered, 99), 2),
                       "max": round(ordered[-1], 2)},
    }


async def streams(url: str, key: str, options: argparse.Namespace) -> dict[str, Any]:
    latencies: list[float] = []
    problems: list[str] = []

    async def read(http: httpx.AsyncClient, job_id: str, arrived: dict[int, float], order: list[int]) -> None:
        async with http.stream("GET", f"/v1/client/jobs/{job_id}/stream",
                               headers={"Accept": "text/event-stream"}) as response:
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "output":
                    seq = json.loads(line.removeprefix("data: "))["seq"]
                    arrived.setdefault(seq, time.perf_counter())
                    order.append(seq)
                elif line.startswith("data: ") and event == "end":
                    return

    async def post(http: httpx.AsyncClient, miner_id: str, job_id: str, answered: dict[int, float]) -> None:
        for seq in range(options.chunks):
            started = time.perf_counter()
            response = await http.post(f"/v1/miner/jobs/{job_id}/output",
                                       json={"miner_id": miner_id, "chunks": [{"seq": seq, "data": f"token {seq} "}]})
            answered[seq] = time.perf_counter()
            if response.status_code != 200:
                problems.append(f"{job_id} seq {seq}: {response.status_code}")
            await asyncio.sleep(max(0.0, options.interval - (answered[seq] - started)))
        await http.post("/v1/miner/result", json={"miner_id": miner_id, "job_id": job_id, "status": "completed",
                                                  "result": {}})

    roots = server_roots(url)
    async with client(url, key, 4 * options.jobs + 10) as http:
        (miner_id,) = await register(http, 1, WORK_JOB_TYPE, offset=200_000, capacity=min(64, options.jobs))
        jobs = [(await http.post("/v1/client/jobs", json={"job_type": WORK_JOB_TYPE, "parameters": {}})).json()["id"]
                for _ in range(options.jobs)]
        taken: list[str] = []
        while len(taken) < len(jobs):
            answer = await http.get("/v1/miner/jobs", params={"miner_id": miner_id, "limit": 10, "wait": 5})
            taken.extend(job["id"] for job in answer.json()["results"])
        arrived = {job: {} for job in jobs}
        orders: dict[str, list[int]] = {job: [] for job in jobs}
        answered = {job: {} for job in jobs}
        readers = [asyncio.create_task(read(http, job, arrived[job], orders[job])) for job in jobs]
        await asyncio.sleep(1)
        ticks_before, started = server_cpu_ticks(roots), time.monotonic()
        await asyncio.gather(*(post(http, miner_id, job, answered[job]) for job in jobs))
        await asyncio.wait_for(asyncio.gather(*readers), 30)
        ticks, elapsed = server_cpu_ticks(roots) - ticks_before, time.monotonic() - started
    for job in jobs:
        if orders[job] != list(range(options.chunks)):
            problems.append(f"{job}: received seqs {orders[job][:10]}… ({len(orders[job])} of {options.chunks})")
        latencies.extend(1000 * (arrived[job][seq] - answered[job][seq]) for seq in arrived[job])
    ordered = sorted(latencies)
    relayed = len(ordered)
    return {
        "scenario": "streams",
        "jobs": options.jobs,
        "chunks_relayed": relayed,
        "chunks_lost_repeated_or_reordered": len(problems),
        "problems": problems[:5],
        "relay_latency_ms": {"p50": round(percentile(ordered, 50), 2), "p99": round(percentile(ordered, 99), 2),
                             "max": round(ordered[-1], 2)},
        "server_cpu_ms_per_relayed_chunk": round(1000 * ticks / TICKS_PER_SECOND / max(relayed, 1), 2),
        "window_seconds": round(elapsed, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    idle_options = scenarios.add_parser("idle")
    idle_options.add_argument("--waiters", type=int, default=2000)
    idle_options.add_argument("--seconds", type=float, default=60)
    idle_options.add_argument("--hold", action="store_true")
    dispatch_options = scenarios.add_parser("dispatch")
    dispatch_options.add_argument("--miners", type=int, default=20)
    dispatch_options.add_argument("--jobs", type=int, default=200)
    stream_options = scenarios.add_parser("streams")
    stream_options.add_argument("--jobs", type=int, default=20)
    stream_options.add_argument("--chunks", type=int, default=50)
    stream_options.add_argument("--interval", type=float, default=0.1)
    options = parser.parse_args(argv)
    url, key = os.environ["BENCH_URL"], os.environ["BENCH_API_KEY"]
    run = {"idle": idle, "dispatch": dispatch, "streams": streams}[options.scenario]
    report = asyncio.run(run(url, key, options))
    print(json.dumps(report, indent=2))
    failed = report.get("failures") or report.get("never_handed_out") or report.get("chunks_lost_repeated_or_reordered")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
