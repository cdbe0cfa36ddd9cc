#!/usr/bin/env python3
"""Load benchmark: C clients submit jobs while M miners take them and post results at once, with zero compute time.

Needs nothing but a running server and an API key valid on both client and miner endpoints (an `API_KEYS` entry):

    python bench/load.py --url http://127.0.0.1:8000 --api-key KEY [--clients 8 --miners 8 --jobs 3000] [--json]

`API_KEYS` clients are service users, whose jobs are not billed. With `--billed` each client is a wallet user
instead (a fresh key, logged in with a signed challenge) holding AITBC, so every job's price is held at submission
and paid out on its result: the ledger's work is in the cycle. The funds are deposited straight into the server's
database, so `--billed` also needs the server's DATABASE_URL (and SECRET_KEY) in the environment.

When the load is over every job is read back. The script prints completed cycles per second, the server's CPU
milliseconds per cycle (from /proc, so the server must run on this machine), per-endpoint latency percentiles, the
jobs handed out twice and the jobs lost, and exits 1 if any job was handed out twice or lost, or any request failed.
"""

import argparse
import json
import logging
import math
import os
import resource
import secrets
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

JOB_TYPE = "llm_inference"
SUBMIT = "POST /v1/client/jobs"
REGISTER = "POST /v1/miner/register"
POLL = "GET /v1/miner/jobs"
RESULT = "POST /v1/miner/result"
READ = "GET /v1/client/jobs/{id}"
ENDPOINTS = (SUBMIT, POLL, RESULT, READ, REGISTER)
PERCENTILES = (50, 95, 99)
READ_ATTEMPTS = 3
LISTEN_STATE = "0A"


# --- wallet clients (--billed) -----------------------------------------------------------------------------------


def wallet_client_key(url: str) -> tuple[str, str]:
    """A new wallet, logged in with a signed challenge, and a client API key it issued itself: (address, key)."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    account = Account.create()
    with httpx.Client(base_url=url, timeout=30.0) as http:
        challenge = http.post("/v1/users/challenge", json={"address": account.address})
        challenge.raise_for_status()
        signed = Account.sign_message(encode_defunct(text=challenge.json()["message"]), account.key)
        signature = "0x" + bytes(signed.signature).hex()
        body = {"address": account.address, "nonce": challenge.json()["nonce"], "signature": signature}
        login = http.post("/v1/users/login", json=body)
        login.raise_for_status()
        issued = http.post(
            "/v1/users/me/api-keys",
            json={"role": "client", "name": "benchmark"},
            headers={"X-Session-Token": login.json()["token"]},
        )
        issued.raise_for_status()
    return account.address, issued.json()["key"]


def fund_wallets(addresses: list[str], amount: str) -> None:
    """Deposit `amount` AITBC to each wallet through the ledger, in the server's database."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aitbc_site.settings")
    import django

    django.setup()
    # The server's logging configuration logs every httpx request at INFO: here that would be one line per request
    # of the load, on the load generator's CPU.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from accounts import ledger
    from accounts.addresses import canonical_address
    from accounts.services import wallet_user_for

    for address in addresses:
        ledger.deposit(
            user_id=wallet_user_for(address=canonical_address(address)).pk,
            amount=Decimal(amount),
            reference=f"bench:{address}",
            memo="benchmark funds",
        )


def job_price(url: str) -> str:
    with httpx.Client(base_url=url, timeout=30.0) as http:
        prices = http.get("/v1/job-types").raise_for_status().json()["results"]
    return next(price["price"] for price in prices if price["job_type"] == JOB_TYPE)


# --- measurements -----------------------------------------------------------------------------------------------


@dataclass
class Recorder:
    """One thread's measurements. Each thread has its own, merged when the threads are done: no lock on the hot path."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)

    def call(
        self, http: httpx.Client, endpoint: str, method: str, url: str, expected: int, **kwargs: Any
    ) -> dict[str, Any] | None:
        """Send one request and time it; the decoded body if the status is the expected one, else None (recorded)."""
        started = time.perf_counter()
        try:
            response = http.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            self._fail(endpoint, f"{type(error).__name__}: {error}")
            return None
        self.latencies.setdefault(endpoint, []).append(time.perf_counter() - started)
        if response.status_code != expected:
            self._fail(endpoint, f"{response.status_code} {response.text[:300]}")
            return None
        body: dict[str, Any] = response.json()
        return body

    def _fail(self, endpoint: str, message: str) -> None:
        self.errors[endpoint] += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{endpoint}: {message}")


def merge(recorders: list[Recorder]) -> Recorder:
    merged = Recorder()
    for recorder in recorders:
        for endpoint, values in recorder.latencies.items():
            merged.latencies.setdefault(endpoint, []).extend(values)
        merged.errors.update(recorder.errors)
        merged.error_samples.extend(recorder.error_samples[: 5 - len(merged.error_samples)])
    return merged


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def latency_summary(latencies: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Count and p50/p95/p99 in milliseconds per endpoint."""
    summary: dict[str, dict[str, float]] = {}
    for endpoint in ENDPOINTS:
        if not latencies.get(endpoint):
            continue
        ordered = sorted(latencies[endpoint])
        summary[endpoint] = {
            "n": len(ordered),
            **{f"p{p}": round(percentile(ordered, p) * 1000, 2) for p in PERCENTILES},
        }
    return summary


# --- server CPU from /proc --------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, CPU ticks) of a process: user + system time, its own and that of its reaped children."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis.
    fields = raw[raw.rindex(")") + 2 :].split()
    parent, utime, stime, cutime, cstime = int(fields[1]), *(int(value) for value in fields[11:15])
    # cutime/cstime matter when gunicorn recycles a worker during the window (max_requests): the dead worker's time
    # moves into the master's children times when the master reaps it, so the tree's total stays continuous.
    return parent, utime + stime + cutime + cstime


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def server_cpu_ticks(roots: list[int]) -> int:
    """CPU ticks used so far by the processes `roots` and all their descendants."""
    stats = {pid: stat for pid in _all_pids() if (stat := _proc_stat(pid)) is not None}
    tree = set(roots) & stats.keys()
    grown = True
    while grown:
        children = {pid for pid, (parent, _) in stats.items() if parent in tree} - tree
        tree |= children
        grown = bool(children)
    return sum(stats[pid][1] for pid in tree)


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            columns = line.split()
            if columns[3] == LISTEN_STATE and int(columns[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(columns[9])
    return inodes


def find_server_roots(port: int) -> list[int]:
    """The topmost processes holding the socket that listens on `port` (gunicorn's master; its workers share it).

    Found through the socket rather than the command line, since gunicorn may take its bind address from a config
    file or the environment and then the port appears nowhere in its command line.
    """
    targets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    holders: dict[int, int] = {}
    for pid in _all_pids():
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if links & targets and (stat := _proc_stat(pid)) is not None:
            holders[pid] = stat[0]
    return sorted(pid for pid, parent in holders.items() if parent not in holders)


# --- the run ----------------------------------------------------------------------------------------------------


class Run:
    """State the threads share: how many jobs may still be submitted, how many are done, and when to stop."""

    def __init__(self, *, jobs: int, submit_until: float) -> None:
        self._submit_until = submit_until
        self._lock = threading.Lock()
        self._slots = jobs
        self.submitted = 0
        self.completed = 0
        # Results posted, accepted or not: a refused result leaves its job unfinished for good, and the run must not
        # wait for it until the timeout (the read-back reports it as lost).
        self._answered = 0
        self.clients_done = False
        self.stop = threading.Event()

    def take_submit_slot(self) -> bool:
        if self.stop.is_set() or time.monotonic() >= self._submit_until:
            return False
        with self._lock:
            if self._slots <= 0:
                return False
            self._slots -= 1
            return True

    def job_submitted(self) -> None:
        with self._lock:
            self.submitted += 1

    def result_posted(self, *, accepted: bool) -> None:
        with self._lock:
            self._answered += 1
            self.completed += accepted
            self._stop_if_drained()

    def all_clients_done(self) -> None:
        with self._lock:
            self.clients_done = True
            self._stop_if_drained()

    def _stop_if_drained(self) -> None:
        if self.clients_done and self._answered >= self.submitted:
            self.stop.set()


@dataclass
class Options:
    url: str
    api_key: str
    clients: int
    miners: int
    jobs: int
    duration: float | None
    timeout: float
    poll_limit: int
    idle_sleep: float
    server_pids: list[int]
    billed: bool


def http_client(options: Options, headers: dict[str, str] | None = None) -> httpx.Client:
    # One client per thread: each keeps its own keep-alive connection, as a real client or miner would.
    return httpx.Client(base_url=options.url, headers=headers or {"X-Api-Key": options.api_key}, timeout=30.0)


def client_credentials(options: Options) -> list[dict[str, str]]:
    """The headers each client thread sends: the shared API key, or with --billed a key of a funded wallet's own."""
    if not options.billed:
        return [{"X-Api-Key": options.api_key}] * options.clients
    wallets = [wallet_client_key(options.url) for _ in range(options.clients)]
    # Enough for any one client to pay for every job.
    fund_wallets([address for address, _ in wallets], str(Decimal(job_price(options.url)) * options.jobs))
    return [{"X-Api-Key": key} for _, key in wallets]


def client_thread(
    options: Options, credentials: dict[str, str], run: Run, recorder: Recorder, job_ids: list[str]
) -> None:
    with http_client(options, credentials) as http:
        while run.take_submit_slot():
            body = {"job_type": JOB_TYPE, "parameters": {"prompt": f"benchmark job {len(job_ids)}", "max_tokens": 16}}
            job = recorder.call(http, SUBMIT, "POST", "/v1/client/jobs", 201, json=body)
            if job is not None:
                job_ids.append(job["id"])
                run.job_submitted()


@dataclass
class MinerTally:
    received: list[str] = field(default_factory=list)
    empty_polls: int = 0


def miner_thread(options: Options, run: Run, ready: threading.Barrier, recorder: Recorder, tally: MinerTally) -> None:
    with http_client(options) as http:
        registration = {
            "address": "ait1" + secrets.token_hex(20),
            "capabilities": [JOB_TYPE],
            "max_concurrent_jobs": options.poll_limit,
        }
        miner = recorder.call(http, REGISTER, "POST", "/v1/miner/register", 201, json=registration)
        ready.wait()
        if miner is None:
            return
        poll_params = {"miner_id": miner["id"], "limit": options.poll_limit}
        while not run.stop.is_set():
            page = recorder.call(http, POLL, "GET", "/v1/miner/jobs", 200, params=poll_params)
            assignments = page["results"] if page is not None else []
            if not assignments:
                tally.empty_polls += 1
                run.stop.wait(options.idle_sleep)
                continue
            for assignment in assignments:
                tally.received.append(assignment["id"])
                result = {
                    "miner_id": miner["id"],
                    "job_id": assignment["id"],
                    "status": "completed",
                    "result": {"output": "ok", "tokens": 16},
                }
                answer = recorder.call(http, RESULT, "POST", "/v1/miner/result", 200, json=result)
                run.result_posted(accepted=answer is not None)


def read_back_thread(
    options: Options, credentials: dict[str, str], job_ids: list[str], recorder: Recorder, statuses: dict[str, str]
) -> None:
    """Read every job back as its client: `statuses` gets each job's final status."""
    with http_client(options, credentials) as http:
        for job_id in job_ids:
            # A failed read counts as a request error; retrying it keeps it from also counting as a lost job.
            for _ in range(READ_ATTEMPTS):
                job = recorder.call(http, READ, "GET", f"/v1/client/jobs/{job_id}", 200)
                if job is not None:
                    break
            statuses[job_id] = job["status"] if job is not None else "unreadable"


def run_benchmark(options: Options) -> dict[str, Any]:
    # Wallet logins and funding (--billed) come before the clock starts: they are set-up, not load.
    credentials = client_credentials(options)
    started = time.monotonic()
    deadline = started + options.timeout
    submit_until = started + options.duration if options.duration is not None else deadline
    run = Run(jobs=options.jobs, submit_until=submit_until)
    ready = threading.Barrier(options.miners + 1)
    miner_recorders = [Recorder() for _ in range(options.miners)]
    tallies = [MinerTally() for _ in range(options.miners)]
    miners = [
        threading.Thread(target=miner_thread, args=(options, run, ready, recorder, tally), name=f"miner-{n}")
        for n, (recorder, tally) in enumerate(zip(miner_recorders, tallies, strict=True))
    ]
    for thread in miners:
        thread.start()
    ready.wait()
    if any(recorder.errors for recorder in miner_recorders):
        run.stop.set()
        for thread in miners:
            thread.join()
        raise SystemExit(f"miner registration failed: {merge(miner_recorders).error_samples}")

    # The window: from the first submission to the last result, with the server's CPU read at both ends.
    cpu_before = server_cpu_ticks(options.server_pids)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    window_start = time.perf_counter()
    client_recorders = [Recorder() for _ in range(options.clients)]
    submitted_ids: list[list[str]] = [[] for _ in range(options.clients)]
    clients = [
        threading.Thread(target=client_thread, args=(options, headers, run, recorder, ids), name=f"client-{n}")
        for n, (headers, recorder, ids) in enumerate(zip(credentials, client_recorders, submitted_ids, strict=True))
    ]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(max(0.0, deadline - time.monotonic()))
    run.all_clients_done()
    timed_out = not run.stop.wait(max(0.0, deadline - time.monotonic()))
    window = time.perf_counter() - window_start
    cpu_after = server_cpu_ticks(options.server_pids)
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    run.stop.set()
    for thread in miners + clients:
        thread.join()

    job_ids = [job_id for ids in submitted_ids for job_id in ids]
    read_recorders = [Recorder() for _ in range(options.clients)]
    read_statuses: list[dict[str, str]] = [{} for _ in range(options.clients)]
    # Each client's jobs are read back by that client: with --billed nobody else may see them.
    readers = [
        threading.Thread(target=read_back_thread, args=(options, headers, ids, recorder, statuses))
        for headers, ids, recorder, statuses in zip(
            credentials, submitted_ids, read_recorders, read_statuses, strict=True
        )
    ]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join()

    load = merge(client_recorders + miner_recorders)
    reads = merge(read_recorders)
    statuses = {job_id: status for part in read_statuses for job_id, status in part.items()}
    received = Counter(job_id for tally in tallies for job_id in tally.received)
    lost = [job_id for job_id in job_ids if statuses.get(job_id) != "completed"]
    ticks_per_ms = os.sysconf("SC_CLK_TCK") / 1000
    completed = run.completed
    server_cpu_ms = (cpu_after - cpu_before) / ticks_per_ms if options.server_pids else None
    own_cpu_s = (self_after.ru_utime + self_after.ru_stime) - (self_before.ru_utime + self_before.ru_stime)
    return {
        "billed": options.billed,
        "clients": options.clients,
        "miners": options.miners,
        "jobs_submitted": len(job_ids),
        "cycles_completed": completed,
        "window_seconds": round(window, 3),
        "timed_out": timed_out,
        "cycles_per_second": round(completed / window, 1) if window > 0 else 0.0,
        "server_pids": options.server_pids,
        "server_cpu_ms_per_cycle": round(server_cpu_ms / completed, 2)
        if server_cpu_ms is not None and completed
        else None,
        "load_generator_cpu_ms_per_cycle": round(own_cpu_s * 1000 / completed, 2) if completed else None,
        "polls": len(load.latencies.get(POLL, [])),
        "empty_polls": sum(tally.empty_polls for tally in tallies),
        "handed_out_twice": sum(1 for count in received.values() if count > 1),
        "lost": len(lost),
        "final_statuses": dict(Counter(statuses.values())),
        "request_errors": dict(load.errors + reads.errors),
        "error_samples": (load.error_samples + reads.error_samples)[:5],
        "latency_ms": latency_summary(load.latencies | reads.latencies),
    }


def print_report(report: dict[str, Any]) -> None:
    cpu = report["server_cpu_ms_per_cycle"]
    print(
        f"{report['clients']} {'billed wallet clients' if report['billed'] else 'clients'}, {report['miners']} miners: "
        f"{report['jobs_submitted']} jobs submitted, "
        f"{report['cycles_completed']} cycles completed in {report['window_seconds']} s"
        + (" (TIMED OUT)" if report["timed_out"] else "")
    )
    print(f"  cycles/s:                 {report['cycles_per_second']}")
    print(
        f"  server CPU ms/cycle:      {cpu if cpu is not None else 'n/a (server process not found)'}"
        f"  (pids {report['server_pids']})"
    )
    print(f"  load generator CPU ms/cycle: {report['load_generator_cpu_ms_per_cycle']}")
    print(f"  polls: {report['polls']} ({report['empty_polls']} empty)")
    print(
        f"  handed out twice: {report['handed_out_twice']}   lost: {report['lost']}   "
        f"final statuses: {report['final_statuses']}"
    )
    print(f"  request errors: {report['request_errors'] or 0}")
    for sample in report["error_samples"]:
        print(f"    {sample}")
    print(f"  {'latency ms':<26}{'n':>7}{'p50':>9}{'p95':>9}{'p99':>9}")
    for endpoint, figures in report["latency_ms"].items():
        print(f"  {endpoint:<26}{figures['n']:>7}{figures['p50']:>9}{figures['p95']:>9}{figures['p99']:>9}")


def parse_options(argv: list[str]) -> tuple[Options, bool]:
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
    parser.add_argument("--clients", type=int, default=8, help="client threads submitting jobs (default %(default)s)")
    parser.add_argument("--miners", type=int, default=8, help="miner threads (default %(default)s)")
    parser.add_argument("--jobs", type=int, default=3000, help="jobs to submit (default %(default)s)")
    parser.add_argument("--duration", type=float, help="stop submitting after this many seconds, even short of --jobs")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="hard bound on the load in seconds; unfinished jobs then count as lost (default %(default)s)",
    )
    parser.add_argument(
        "--poll-limit",
        type=int,
        default=10,
        choices=range(1, 11),
        metavar="1..10",
        help="jobs per poll, also each miner's max_concurrent_jobs (default %(default)s)",
    )
    parser.add_argument(
        "--idle-sleep", type=float, default=0.05, help="seconds a miner waits after an empty poll (default %(default)s)"
    )
    parser.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        help="the server's top process (gunicorn master); default: whoever listens on the URL's port",
    )
    parser.add_argument(
        "--billed",
        action="store_true",
        help="clients are funded wallet users whose jobs are paid through the ledger (needs DATABASE_URL)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("--api-key (or BENCH_API_KEY) is required")
    if min(args.clients, args.miners, args.jobs) < 1:
        parser.error("--clients, --miners and --jobs must be at least 1")
    port = urlsplit(args.url).port or (443 if args.url.startswith("https") else 80)
    server_pids = args.server_pid or find_server_roots(port)
    if not server_pids:
        print(f"warning: no local process listens on port {port}; server CPU will not be measured", file=sys.stderr)
    options = Options(
        url=args.url.rstrip("/"),
        api_key=args.api_key,
        clients=args.clients,
        miners=args.miners,
        jobs=args.jobs,
        duration=args.duration,
        timeout=args.timeout,
        poll_limit=args.poll_limit,
        idle_sleep=args.idle_sleep,
        server_pids=server_pids,
        billed=args.billed,
    )
    return options, args.json


def main(argv: list[str]) -> int:
    options, as_json = parse_options(argv)
    report = run_benchmark(options)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    failed = report["handed_out_twice"] or report["lost"] or report["request_errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
