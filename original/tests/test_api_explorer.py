"""The public explorer: each miner's receipt chain without anything of its clients'."""

import itertools
import uuid

from django.test import override_settings
from rest_framework.test import APIClient

from aitbc_site.testing import assert_api_error
from original.tests.helpers import poll, post_result, registered, submitted


def completed_jobs(client: APIClient, miner: APIClient, count: int) -> list[str]:
    registered(miner)
    job_ids = []
    for number in range(count):
        job = submitted(client, payload={"type": "inference", "prompt": f"secret {number}"})
        assert poll(miner).json()["job_id"] == job["job_id"]
        assert post_result(miner, job["job_id"], result={"text": f"private {number}"}).status_code == 200
        job_ids.append(job["job_id"])
    return job_ids


def test_the_feed_shows_a_miners_chain_newest_first_linked_by_hashes(
    client_api: APIClient, miner_api: APIClient, anonymous_api: APIClient
) -> None:
    job_ids = completed_jobs(client_api, miner_api, 3)
    miner_id = client_api.get(f"/v1/jobs/{job_ids[0]}/receipt").json()["miner_id"]

    response = anonymous_api.get("/v1/explorer/receipts", {"miner_id": miner_id})

    assert response.status_code == 200, response.content
    items = response.json()["items"]
    assert [item["job_id"] for item in items] == job_ids[::-1]
    assert [item["sequence"] for item in items] == [3, 2, 1]
    assert items[-1]["prev_hash"] is None
    for newer, older in itertools.pairwise(items):
        assert newer["prev_hash"] == older["hash"]
    assert set(items[0]) == {
        "receipt_id",
        "job_id",
        "miner_id",
        "sequence",
        "job_type",
        "status",
        "time",
        "price",
        "result_hash",
        "prev_hash",
        "hash",
    }
    text = response.content.decode()
    assert "secret" not in text and "private" not in text and "client_id" not in text


def test_a_client_finds_its_receipt_in_the_chain_by_job(
    client_api: APIClient, miner_api: APIClient, anonymous_api: APIClient
) -> None:
    [job_id] = completed_jobs(client_api, miner_api, 1)
    receipt = client_api.get(f"/v1/jobs/{job_id}/receipt").json()

    [item] = anonymous_api.get("/v1/explorer/receipts", {"job_id": job_id}).json()["items"]

    assert item["receipt_id"] == receipt["id"]
    assert item["result_hash"] == receipt["result_hash"]
    assert item["price"] == receipt["price"]


def test_the_feed_pages_with_a_cursor(client_api: APIClient, miner_api: APIClient, anonymous_api: APIClient) -> None:
    completed_jobs(client_api, miner_api, 3)

    first = anonymous_api.get("/v1/explorer/receipts", {"limit": 2}).json()
    second = anonymous_api.get(first["next"]).json()

    assert len(first["items"]) == 2 and len(second["items"]) == 1
    assert second["next"] is None


def test_bad_feed_queries_are_validation_errors(db: None, anonymous_api: APIClient) -> None:
    for query in [{"miner_id": "rig-1"}, {"limit": 1000}, {"sort": "asc"}]:
        assert_api_error(anonymous_api.get("/v1/explorer/receipts", query), status=400, code="VALIDATION_ERROR")
    assert anonymous_api.get("/v1/explorer/receipts", {"miner_id": str(uuid.uuid4())}).json()["items"] == []


def test_blocks_and_transactions_are_empty_with_a_note(db: None, anonymous_api: APIClient) -> None:
    for feed in ["blocks", "transactions"]:
        body = anonymous_api.get(f"/v1/explorer/{feed}").json()
        assert body["items"] == []
        assert "no blockchain" in body["note"]


def test_the_feed_is_rate_limited_per_ip_even_with_a_key(anonymous_api: APIClient, client_api: APIClient) -> None:
    with override_settings(RATE_LIMIT_EXPLORER="2/m"):
        assert anonymous_api.get("/v1/explorer/blocks").status_code == 200
        assert client_api.get("/v1/explorer/receipts").status_code == 200
        limited = anonymous_api.get("/v1/explorer/transactions")

    assert_api_error(limited, status=429, code="RATE_LIMITED")
    assert "Retry-After" in limited.headers
