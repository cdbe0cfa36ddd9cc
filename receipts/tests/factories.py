"""Receipts obtained the way clients and miners get them: through the API."""

import hashlib
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from rest_framework.test import APIClient

from conftest import poll, post_result, register_miner, submit_job

# RFC 8032, section 7.1, TEST 1 (the seed pytest.ini configures) and TEST 2: well-known keys, for tests only.
RFC8032_TEST1_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_TEST1_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_TEST2_SEED = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
RFC8032_TEST2_PUBLIC = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"

RECEIPT_FIELDS = {
    "id", "job_id", "miner_id", "client_id", "attempt", "job_type", "status", "result", "result_hash", "output_hash",
    "error", "metrics", "started_at", "completed_at", "created_at", "prev_hash", "key_id", "alg", "proof",
}


def key_id_of(public_key_hex: str) -> str:
    """The documented rule, computed independently of receipts.keys."""
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:16]


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def chain_hash(receipt: dict[str, Any]) -> str:
    """What the miner's next receipt names as prev_hash: sha256 of this receipt's RFC 8785 bytes, proof included."""
    return "sha256:" + hashlib.sha256(rfc8785.dumps(receipt)).hexdigest()


def signed_by(key: Ed25519PrivateKey, receipt: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The receipt with `changes` applied and re-signed, correctly, by `key`."""
    body = {name: value for name, value in {**receipt, **changes}.items() if name != "proof"}
    return {**body, "proof": key.sign(rfc8785.dumps(body)).hex()}


def take_job(miner: APIClient, miner_id: str, job_id: str) -> None:
    assignments = poll(miner, miner_id)["results"]
    assert [assignment["id"] for assignment in assignments] == [job_id], assignments


def post_and_get_receipt(miner: APIClient, miner_id: str, job_id: str, **result_overrides: Any) -> dict[str, Any]:
    response = post_result(miner, miner_id, job_id, **result_overrides)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"job", "receipt"}, body
    return body["receipt"]


def run_job(client: APIClient, miner: APIClient, miner_id: str, **result_overrides: Any) -> dict[str, Any]:
    """Submit a job, have this registered miner take it and post its result; the receipt it gets back."""
    job = submit_job(client)
    take_job(miner, miner_id, job["id"])
    return post_and_get_receipt(miner, miner_id, job["id"], **result_overrides)


def first_receipt(client: APIClient, miner: APIClient, **result_overrides: Any) -> tuple[dict[str, Any], str]:
    """A newly registered miner's first receipt for a job of `client`: (receipt, miner id)."""
    miner_id = register_miner(miner)["id"]
    return run_job(client, miner, miner_id, **result_overrides), miner_id
