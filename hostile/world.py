"""The gate's live server and the world its requests need: keys of each role, a funded wallet user with a session,
a registered miner, jobs in each state, a receipt, a payment, and a record of every job the server told the gate
about, to check afterwards that the queue lost or leased none behind the gate's back."""

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct

from aitbc_site.testing import LiveServer, run_manage
from aitbc_site.tests.test_operations import issue_keys
from conftest import ADDRESS, live_env
from hostile.wire import Answer, Probe, send

WORKERS = 2
# The exchange configured as .ci/schemathesis.sh has it: BIP 84's published testnet account key (no one's
# funds), payments checked by hand, so the fuzzer reaches the exchange's code rather than its 503.
EXCHANGE_ENV = {
    "BITCOIN_XPUB": "vpub5Y6cjg78GGuNLsaPhmYsiw4gYX3HoQiRBiSwDaBXKUafCt9bNwWQiitDk5VZ5BVxYnQdwoTyXSs2JHRPAgjAvtbBrf8ZhD"
    "Ye2jWAqvZVnsc",
    "BITCOIN_BACKEND": "manual",
}
WALLET_FUNDS = "1000000"
_BOOTING = re.compile(r"Booting worker with pid: (\d+)")
# What gunicorn's arbiter writes when a worker dies or is killed (SIGSEGV, SIGKILL, a timeout, an exit).
_OURS = re.compile(r'File "(?!.*site-packages)')
_WORKER_DEATH = re.compile(r"Worker \(pid:\d+\) (was sent|exited)|WORKER TIMEOUT|Worker failed to boot")


def _manage_env(env: dict[str, str]) -> dict[str, str]:
    # Not the server's metrics directory: prometheus_client would write this process's files there.
    return {name: value for name, value in env.items() if name != "PROMETHEUS_MULTIPROC_DIR"}


@dataclass
class World:
    server: LiveServer
    env: dict[str, str]
    log_path: Path
    worker_pids: set[int] = field(default_factory=set)
    # Credentials by role: "client" (a funded wallet user's key, so jobs are billed), "miner", "session"
    # (the same wallet user's session), "logout" (a session of its own: logging out revokes it).
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    told_jobs: set[str] = field(default_factory=set)
    handed_out_jobs: set[str] = field(default_factory=set)
    sent: int = 0
    slowest: tuple[float, str] = (0.0, "")
    _request_number: int = 0

    @property
    def port(self) -> int:
        return self.server.port

    def send(self, probe: Probe) -> Answer:
        """Send a probe with a request id of its own (unless the probe sets one), so a failure can be found in the
        server's log, and note every job the answer tells of."""
        self._request_number += 1
        if not any(name.lower() == "x-request-id" for name, _ in probe.headers):
            probe = Probe(**{**probe.__dict__, "headers": [*probe.headers, ("X-Request-ID", self.request_id())]})
        answer = send(self.port, probe)
        self.note(probe, answer)
        return answer

    def request_id(self) -> bytes:
        return f"hostile-{self._request_number}".encode()

    def note(self, probe: Probe, answer: Answer) -> None:
        self.sent += 1
        if answer.seconds > self.slowest[0]:
            self.slowest = (answer.seconds, f"{probe.method} {probe.target[:80]} {probe.label}")
        path = probe.target.split("?")[0]
        if probe.method == "HEAD" or answer.status not in (200, 201):
            return
        try:
            body = answer.json()
        except ValueError:
            return
        if probe.method == "POST" and path == "/v1/client/jobs" and isinstance(body, dict) and "id" in body:
            self.told_jobs.add(body["id"])
        if probe.method == "GET" and path == "/v1/miner/jobs" and isinstance(body, dict):
            self.handed_out_jobs.update(job["id"] for job in body.get("results", []))
        # The original dialect: a job is `job_id`, and a poll hands out one job at a time.
        if probe.method == "POST" and path == "/v1/jobs" and isinstance(body, dict) and "job_id" in body:
            self.told_jobs.add(body["job_id"])
        if probe.method == "POST" and path == "/v1/miners/poll" and isinstance(body, dict) and "job_id" in body:
            self.handed_out_jobs.add(body["job_id"])

    def call(self, method: str, path: str, role: str | None, body: Any = None, expect: int = 200) -> Any:
        """A well-formed request of the world's setup; fails unless it gets the expected status."""
        headers = [("Content-Type", b"application/json")] if body is not None else []
        if role:
            name, value = self.credentials[role]
            headers.append((name, value.encode()))
        payload = json.dumps(body).encode() if body is not None else None
        answer = self.send(Probe(method, path, "setup", headers=headers, body=payload))
        assert answer.status == expect, (method, path, answer.status, answer.body[:500])
        return answer.json() if answer.body else None

    # --- after the run -------------------------------------------------------------------------------------------

    def current_worker_pids(self) -> set[int]:
        assert self.server.process is not None
        children = Path(f"/proc/{self.server.process.pid}/task/{self.server.process.pid}/children")
        return {int(pid) for pid in children.read_text().split()}

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def booted_workers(self) -> list[int]:
        return [int(pid) for pid in _BOOTING.findall(self.log_text())]

    def worker_deaths(self) -> list[str]:
        return [line[:300] for line in self.log_text().splitlines() if _WORKER_DEATH.search(line)]

    def log_errors(self, request_id: str) -> list[str]:
        """The errors the server logged for one request: message and the traceback's last line."""
        found = []
        for line in self.log_text().splitlines():
            if f'"request_id": "{request_id}"' not in line or '"level": "ERROR"' not in line:
                continue
            entry = json.loads(line)
            traceback = (entry.get("exception") or "").strip().splitlines()
            # The deepest frame in the project's own code says where to look; the last line says what happened.
            ours = [frame.strip() for frame in traceback if frame.strip().startswith('File "') and _OURS.search(frame)]
            found.append(" | ".join([entry.get("message", "")[:200], *ours[-1:], *traceback[-1:]])[:600])
        return found

    def manage(self, *args: str) -> str:
        return run_manage(*args, env=_manage_env(self.env))

    def jobs_in_database(self) -> list[dict[str, Any]]:
        code = (
            "import json\nfrom jobs.models import Job\n"
            "print('JOBS', json.dumps([{'id': str(j.id), 'status': j.status, 'miner': str(j.miner_id or '')}"
            " for j in Job.objects.all()]))\n"
        )
        output = self.manage("shell", "-c", code)
        line = next(line for line in output.splitlines() if line.startswith("JOBS "))
        jobs: list[dict[str, Any]] = json.loads(line.removeprefix("JOBS "))
        return jobs


def server_env(database_url: str, work: Path) -> dict[str, str]:
    env = live_env(
        database_url,
        RECEIPT_SIGNING_KEY_FILE=str(work / "receipt-signing.key"),
        PROMETHEUS_MULTIPROC_DIR=str(work / "prometheus"),
        # The gate counts worker deaths by their PIDs: gunicorn's planned recycling (max_requests) must not happen
        # during the run, or a replaced worker would look like a dead one.
        GUNICORN_MAX_REQUESTS="100000000",
        # Long-polls, client waits and event streams end within seconds (as in .ci/schemathesis.sh).
        LONG_POLL_MAX_SECONDS="1",
        STREAM_MAX_SECONDS="2",
        STREAM_KEEPALIVE_SECONDS="1",
        API_KEYS="",
        **EXCHANGE_ENV,
    )
    # The scaled configuration's cache and rate-limit counters in Redis with PostgreSQL; the embedded diskcache with
    # SQLite.
    env["REDIS_URL"] = "" if database_url.startswith("sqlite") else os.environ.get("AITBC_HOSTILE_REDIS_URL", "")
    return env


def _wallet_session(world: World, account: Any) -> str:
    challenge = world.call("POST", "/v1/users/challenge", None, {"address": account.address}, expect=201)
    signed = Account.sign_message(encode_defunct(text=challenge["message"]), private_key=account.key)
    login = world.call(
        "POST", "/v1/users/login", None,
        {"address": account.address, "nonce": challenge["nonce"], "signature": "0x" + bytes(signed.signature).hex()},
    )
    token: str = login["token"]
    return token


def _deposit(world: World, address: str) -> None:
    code = (
        "from decimal import Decimal\nfrom accounts import ledger\n"
        "from accounts.addresses import canonical_address\nfrom accounts.services import wallet_user_for\n"
        f"ledger.deposit(user_id=wallet_user_for(address=canonical_address({address!r})).pk, "
        f"amount=Decimal({WALLET_FUNDS!r}), reference='hostile-gate', memo='hostile gate funds')\n"
    )
    world.manage("shell", "-c", code)


def start_world(database_url: str, work: Path) -> World:
    """Migrate the database, start gunicorn (2 workers x 4 threads, deploy/gunicorn.conf.py) and build the world."""
    env = server_env(database_url, work)
    run_manage("migrate", "--no-input", env=_manage_env(env))
    log_path = work / "gunicorn.log"
    server = LiveServer(env=env, workers=WORKERS, log_path=log_path)
    world = World(server=server, env=env, log_path=log_path)
    try:
        server.start()
        _populate(world)
    except BaseException:
        server.stop()
        raise
    return world


def _populate(world: World) -> None:
    (miner_key,) = issue_keys(world.env, role="miner", count=1)
    (service_client_key,) = issue_keys(world.env, role="client", count=1)
    world.credentials["miner"] = ("X-Api-Key", miner_key.raw)
    world.credentials["service-client"] = ("X-Api-Key", service_client_key.raw)
    account = Account.create()
    world.credentials["session"] = ("X-Session-Token", _wallet_session(world, account))
    world.credentials["logout"] = ("X-Session-Token", _wallet_session(world, account))
    _deposit(world, account.address)
    issued = world.call("POST", "/v1/users/me/api-keys", "session", {"role": "client", "name": "gate"}, expect=201)
    world.credentials["client"] = ("X-Api-Key", issued["key"])
    victim = world.call("POST", "/v1/users/me/api-keys", "session", {"role": "client", "name": "victim"}, expect=201)
    world.ids["key_id"] = victim["id"]
    world.ids["user_id"] = world.call("GET", "/v1/users/me", "session")["id"]

    miner = world.call("POST", "/v1/miner/register", "miner",
                       {"address": ADDRESS, "capabilities": ["llm_inference"], "max_concurrent_jobs": 64}, expect=201)
    world.ids["miner_id"] = miner["id"]
    job = {"job_type": "llm_inference", "parameters": {"prompt": "hostile gate"}}
    # A completed job (with a receipt), one left running on the miner, one pending (the cancel route's).
    done = world.call("POST", "/v1/client/jobs", "client", job, expect=201)
    handed = world.call("GET", f"/v1/miner/jobs?miner_id={miner['id']}&limit=1", "miner")["results"]
    assert [item["id"] for item in handed] == [done["id"]], handed
    world.call("POST", "/v1/miner/result", "miner",
               {"miner_id": miner["id"], "job_id": done["id"], "status": "completed", "result": {"text": "ok"}})
    world.ids["done_job_id"] = done["id"]
    running = world.call("POST", "/v1/client/jobs", "client", job, expect=201)
    handed = world.call("GET", f"/v1/miner/jobs?miner_id={miner['id']}&limit=1", "miner")["results"]
    assert [item["id"] for item in handed] == [running["id"]], handed
    world.ids["job_id"] = running["id"]
    world.ids["pending_job_id"] = world.call("POST", "/v1/client/jobs", "client", job, expect=201)["id"]
    receipts = world.call("GET", f"/v1/client/jobs/{done['id']}/receipts", "client")["results"]
    world.ids["receipt_id"] = receipts[0]["receipt_id"] if "receipt_id" in receipts[0] else receipts[0]["id"]
    world.ids["receipt"] = json.dumps(receipts[0])
    payment = world.call("POST", "/v1/exchange/create-payment", "session", {"aitbc_amount": "1"}, expect=201)
    world.ids["payment_id"] = payment["payment_id"] if "payment_id" in payment else payment["id"]
    world.worker_pids = world.current_worker_pids()
    assert len(world.worker_pids) == WORKERS, world.worker_pids


def new_uuid() -> str:
    return str(uuid.uuid4())


def database_url_for(kind: str, work: Path) -> str:
    """The gate's database: a SQLite file of its own, or the PostgreSQL database AITBC_HOSTILE_DATABASE_URL names,
    dropped and made anew (a killed earlier run may have left it behind)."""
    if kind == "sqlite":
        return f"sqlite:///{work / 'coordinator.db'}"
    import psycopg

    url = os.environ["AITBC_HOSTILE_DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return url
