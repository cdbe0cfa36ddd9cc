"""Against a real gunicorn server (2 workers, threads) on a real SQLite file or PostgreSQL database: many parallel
submissions against a balance that covers only K of them accept exactly K, refuse the rest with 402, and leave the
balance exact to the last unit."""

import threading
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from aitbc_site.testing import live_server, run_manage
from conftest import live_env

pytestmark = pytest.mark.live

COVERED = 7  # K: the jobs the balance pays for
SUBMISSIONS = 30  # N
THREADS = 10
# 0.3 is no binary fraction: in floating point (how SQLite stores decimals) 2.1 less six times 0.3 is a little
# under 0.3, and the seventh job would be refused. Decimal arithmetic accepts exactly seven.
PRICE = Decimal("0.3")
DEPOSIT = PRICE * COVERED
WALLET = "ait1" + "f0" * 20

SEED = f"""
from decimal import Decimal
from accounts import ledger
from accounts.services import api_key_issue, wallet_user_for

user = wallet_user_for(address="{WALLET}")
ledger.deposit(user_id=user.pk, amount=Decimal("{DEPOSIT}"), reference="deposit:live-funds", memo="live test")
_, client_key = api_key_issue(role="client", name="live client", user=user)
_, admin_key = api_key_issue(role="admin", name="live operator")
print("SEEDED", user.pk, client_key, admin_key)
"""


def seed(env: dict[str, str]) -> tuple[str, str, str]:
    """Create the wallet user with its deposit, a client key of theirs and an admin key: (user id, client, admin)."""
    output = run_manage("shell", "-c", SEED, env=env)
    line = next(line for line in output.splitlines() if line.startswith("SEEDED "))
    _, user_id, client_key, admin_key = line.split()
    return user_id, client_key, admin_key


def test_parallel_submissions_against_a_balance_for_k_jobs_accept_exactly_k(
    live_database_url: str, tmp_path: Path
) -> None:
    env = live_env(live_database_url, JOB_PRICES=f'{{"llm_inference": "{PRICE}"}}')
    user_id, client_key, admin_key = seed(env)
    statuses: list[int] = []
    refusals: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    with live_server(env=env, log_path=tmp_path / "gunicorn.log", workers=2) as server:

        def submit(share: int) -> None:
            with httpx.Client(base_url=server.url, headers={"X-Api-Key": client_key}, timeout=60) as http:
                start.wait(timeout=30)
                for _ in range(share):
                    response = http.post("/v1/client/jobs", json={"job_type": "llm_inference", "parameters": {}})
                    with lock:
                        statuses.append(response.status_code)
                        if response.status_code == 402:
                            refusals.append(response.json()["error"]["code"])

        threads = [threading.Thread(target=submit, args=(SUBMISSIONS // THREADS,)) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

        assert Counter(statuses) == {201: COVERED, 402: SUBMISSIONS - COVERED}
        assert set(refusals) == {"INSUFFICIENT_FUNDS"}
        with httpx.Client(base_url=server.url, timeout=30) as http:
            balance = http.get(f"/v1/users/{user_id}/balance", headers={"X-Api-Key": admin_key}).json()
            jobs = http.get("/v1/client/jobs", params={"limit": 100}, headers={"X-Api-Key": client_key}).json()

    assert balance == {
        "user_id": user_id, "currency": "AITBC", "available": "0.00000000", "held": f"{DEPOSIT:.8f}",
    }
    assert len(jobs["results"]) == COVERED and jobs["next"] is None
    assert run_manage("check_ledger", env=env).strip() == "ledger OK"
