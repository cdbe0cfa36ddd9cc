"""Against a real gunicorn server (2 workers with threads) on a SQLite file or PostgreSQL: each miner's receipts form
one unbroken hash chain even when the miner posts many results at once, while other miners post theirs in parallel."""

import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aitbc_site.testing import live_server
from conftest import live_env
from receipts.tests.factories import chain_hash

pytestmark = pytest.mark.live

API_KEY = "live-receipts-key"


@dataclass(frozen=True)
class MinerPlan:
    job_type: str
    jobs: int
    max_concurrent_jobs: int
    posting_threads: int


PLANS = [
    # The miner under test: holds 20 jobs at a time and posts each batch of results from 8 threads at once.
    MinerPlan("llm_inference", jobs=40, max_concurrent_jobs=20, posting_threads=8),
    # Two others, working at the same time, so that chains of different miners are built side by side.
    MinerPlan("embedding", jobs=20, max_concurrent_jobs=10, posting_threads=4),
    MinerPlan("image_generation", jobs=20, max_concurrent_jobs=10, posting_threads=4),
]


def submit_jobs(url: str, job_type: str, count: int) -> list[str]:
    with httpx.Client(base_url=url, headers={"X-Api-Key": API_KEY}, timeout=60) as http:
        ids = []
        for _ in range(count):
            response = http.post("/v1/client/jobs", json={"job_type": job_type, "parameters": {}})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        return ids


def work_as_one_miner(url: str, plan: MinerPlan, index: int) -> tuple[str, list[dict[str, Any]]]:
    """Register a miner, then repeatedly fill its capacity and post that whole batch of results concurrently.
    Returns (miner id, the receipts the result posts answered with)."""
    local = threading.local()
    opened: list[httpx.Client] = []

    def http() -> httpx.Client:
        # One connection pool per thread, so the posting threads never wait on each other on our side.
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers={"X-Api-Key": API_KEY}, timeout=60)
            opened.append(local.client)
        return local.client

    miner = http().post(
        "/v1/miner/register",
        json={"address": "ait1" + f"{index + 1:02x}" * 20, "capabilities": [plan.job_type],
              "max_concurrent_jobs": plan.max_concurrent_jobs},
    )
    assert miner.status_code == 201, miner.text
    miner_id = miner.json()["id"]

    def post(job_id: str) -> dict[str, Any]:
        response = http().post(
            "/v1/miner/result",
            json={"miner_id": miner_id, "job_id": job_id, "status": "completed",
                  "result": {"job": job_id, "worker": threading.get_ident()}, "metrics": {"tokens": 7}},
        )
        assert response.status_code == 200, response.text
        return response.json()["receipt"]

    receipts: list[dict[str, Any]] = []
    try:
        with ThreadPoolExecutor(max_workers=plan.posting_threads) as posting:
            while len(receipts) < plan.jobs:
                held: list[str] = []
                while len(held) < plan.max_concurrent_jobs:
                    poll = http().get("/v1/miner/jobs", params={"miner_id": miner_id, "limit": 10})
                    assert poll.status_code == 200, poll.text
                    taken = [job["id"] for job in poll.json()["results"]]
                    if not taken:
                        break
                    held.extend(taken)
                assert held, f"miner {plan.job_type} found no work with {len(receipts)} of {plan.jobs} done"
                receipts.extend(posting.map(post, held))
    finally:
        for client in opened:
            client.close()
    return miner_id, receipts


def assert_one_unbroken_chain(receipts: list[dict[str, Any]]) -> None:
    hashes = {chain_hash(receipt): receipt for receipt in receipts}
    heads = [receipt for receipt in receipts if receipt["prev_hash"] is None]
    links = [receipt["prev_hash"] for receipt in receipts if receipt["prev_hash"] is not None]

    assert len(heads) == 1, f"{len(heads)} receipts start a chain"
    assert len(links) == len(set(links)), "two receipts name the same predecessor: the chain forks"
    assert set(links) <= set(hashes), "a prev_hash names no receipt of this miner"
    successor = {receipt["prev_hash"]: receipt for receipt in receipts if receipt["prev_hash"] is not None}
    walked = [heads[0]]
    while chain_hash(walked[-1]) in successor:
        walked.append(successor[chain_hash(walked[-1])])
    assert len(walked) == len(receipts), f"the chain from the first receipt reaches {len(walked)} of {len(receipts)}"


def test_each_miners_receipts_form_one_unbroken_chain_under_concurrent_result_posts(
    live_database_url: str, tmp_path: Path
) -> None:
    env = live_env(live_database_url, API_KEYS=API_KEY)
    with live_server(env=env, log_path=tmp_path / "gunicorn.log", workers=2) as server:
        submitted = {plan.job_type: submit_jobs(server.url, plan.job_type, plan.jobs) for plan in PLANS}

        with ThreadPoolExecutor(max_workers=len(PLANS)) as miners:
            futures = [miners.submit(work_as_one_miner, server.url, plan, index) for index, plan in enumerate(PLANS)]
            answered = dict(future.result(timeout=300) for future in futures)

        with httpx.Client(base_url=server.url, headers={"X-Api-Key": API_KEY}, timeout=60) as http:
            keys = {key["key_id"]: key["public_key"] for key in http.get("/v1/receipts/keys").json()["keys"]}
            listed: list[dict[str, Any]] = []
            for job_ids in submitted.values():
                for job_id in job_ids:
                    page = http.get(f"/v1/client/jobs/{job_id}/receipts").json()["results"]
                    assert len(page) == 1, (job_id, page)
                    listed.extend(page)
            verdicts = {http.post("/v1/receipts/verify", json=receipt).json()["reason"] for receipt in listed}

    assert sorted(listed, key=lambda receipt: receipt["id"]) == sorted(
        (receipt for receipts in answered.values() for receipt in receipts), key=lambda receipt: receipt["id"]
    )
    assert verdicts == {None}
    for receipt in listed:
        signed = {name: value for name, value in receipt.items() if name != "proof"}
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(keys[receipt["key_id"]])).verify(
            bytes.fromhex(receipt["proof"]), rfc8785.dumps(signed)
        )

    by_miner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for receipt in listed:
        by_miner[receipt["miner_id"]].append(receipt)
    assert {miner_id: len(receipts) for miner_id, receipts in by_miner.items()} == {
        miner_id: plan.jobs for miner_id, plan in zip(answered, PLANS, strict=True)
    }
    for receipts in by_miner.values():
        assert_one_unbroken_chain(receipts)
