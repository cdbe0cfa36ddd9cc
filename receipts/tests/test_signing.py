"""The coordinator's keys: which key signs, how keys are named and published, rotation, and verifying offline."""

import json
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIClient

from conftest import register_miner
from receipts.keys import published_keys, signing_key
from receipts.tests.factories import (
    RFC8032_TEST1_PUBLIC,
    RFC8032_TEST1_SEED,
    RFC8032_TEST2_PUBLIC,
    RFC8032_TEST2_SEED,
    chain_hash,
    first_receipt,
    key_id_of,
    public_hex,
    run_job,
)

# RFC 8032, section 7.1, TEST 1: the signature of the empty message under the TEST 1 key.
RFC8032_TEST1_EMPTY_SIGNATURE = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
    "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

# The README's offline verification, verbatim: only the standard library, rfc8785 and cryptography.
README_OFFLINE_VERIFICATION = """\
import json

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

receipt = json.load(open("receipt.json"))  # GET /v1/receipts/{id}, or the "receipt" of POST /v1/miner/result
keys = {key["key_id"]: key["public_key"] for key in json.load(open("keys.json"))["keys"]}  # GET /v1/receipts/keys

public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(keys[receipt["key_id"]]))
signed = {name: value for name, value in receipt.items() if name != "proof"}
public_key.verify(bytes.fromhex(receipt["proof"]), rfc8785.dumps(signed))  # raises InvalidSignature if tampered
print("valid receipt", receipt["id"], "signed by", receipt["key_id"])
"""


def verify(document: dict[str, Any]) -> dict[str, Any]:
    response = APIClient().post("/v1/receipts/verify", document, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def run_offline_verification(directory: Path, receipt: dict[str, Any], keys: dict[str, Any]) -> Any:
    (directory / "receipt.json").write_text(json.dumps(receipt, indent=2))
    (directory / "keys.json").write_text(json.dumps(keys))
    # -I: an isolated interpreter that cannot import the project, so nothing but the snippet's imports helps it.
    return subprocess.run(
        [sys.executable, "-I", "-c", README_OFFLINE_VERIFICATION],
        cwd=directory, capture_output=True, text=True, timeout=60,
    )


# --- the key that signs --------------------------------------------------------------------------------------------


def test_the_configured_seed_is_used_as_an_rfc_8032_ed25519_seed() -> None:
    key_id, signer = signing_key()

    assert signer.sign(b"").hex() == RFC8032_TEST1_EMPTY_SIGNATURE
    assert key_id == key_id_of(RFC8032_TEST1_PUBLIC)


def test_a_receipts_proof_is_the_ed25519_signature_of_its_canonical_bytes_without_the_proof(
    client_api: APIClient, miner_api: APIClient
) -> None:
    receipt, _ = first_receipt(client_api, miner_api)
    signed = {name: value for name, value in receipt.items() if name != "proof"}

    Ed25519PublicKey.from_public_bytes(bytes.fromhex(RFC8032_TEST1_PUBLIC)).verify(
        bytes.fromhex(receipt["proof"]), rfc8785.dumps(signed)
    )


@pytest.mark.parametrize("seed", ["abc", "zz" * 32, "00" * 31, "00" * 33])
def test_a_malformed_signing_key_is_a_configuration_error(settings: Any, seed: str) -> None:
    settings.RECEIPT_SIGNING_KEY = seed

    with pytest.raises(ImproperlyConfigured, match="RECEIPT_SIGNING_KEY"):
        signing_key()


def test_a_malformed_retired_public_key_is_a_configuration_error(settings: Any) -> None:
    settings.RECEIPT_RETIRED_PUBLIC_KEYS = ["not-hex"]

    with pytest.raises(ImproperlyConfigured, match="RECEIPT_RETIRED_PUBLIC_KEYS"):
        published_keys()


# --- a generated key, when none is configured ------------------------------------------------------------------------


def test_without_a_configured_key_one_is_generated_once_into_a_private_file(settings: Any, tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "receipt-signing.key"
    settings.RECEIPT_SIGNING_KEY = ""
    settings.RECEIPT_SIGNING_KEY_FILE = key_file

    key_id, _ = signing_key()

    seed = key_file.read_text().strip()
    assert len(bytes.fromhex(seed)) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert signing_key()[0] == key_id
    settings.RECEIPT_SIGNING_KEY = seed
    assert signing_key()[0] == key_id


def first_signature(start: threading.Barrier, key_ids: list[str], errors: list[Exception]) -> None:
    """Wait for the other workers, then sign once, recording the key id or the error."""
    start.wait()
    try:
        key_ids.append(signing_key()[0])
    except Exception as error:  # collected and asserted on by the caller
        errors.append(error)


def test_workers_starting_together_all_sign_with_the_one_generated_key(settings: Any, tmp_path: Path) -> None:
    settings.RECEIPT_SIGNING_KEY = ""
    for round_number in range(30):
        settings.RECEIPT_SIGNING_KEY_FILE = tmp_path / f"round-{round_number}" / "receipt-signing.key"
        start = threading.Barrier(12)
        key_ids: list[str] = []
        errors: list[Exception] = []

        workers = [threading.Thread(target=first_signature, args=(start, key_ids, errors)) for _ in range(12)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)

        assert errors == []
        assert len(key_ids) == 12 and len(set(key_ids)) == 1


def test_receipts_signed_with_a_generated_key_verify(
    settings: Any, tmp_path: Path, client_api: APIClient, miner_api: APIClient
) -> None:
    settings.RECEIPT_SIGNING_KEY = ""
    settings.RECEIPT_SIGNING_KEY_FILE = tmp_path / "receipt-signing.key"

    receipt, _ = first_receipt(client_api, miner_api)

    (published,) = APIClient().get("/v1/receipts/keys").json()["keys"]
    assert receipt["key_id"] == published["key_id"] != key_id_of(RFC8032_TEST1_PUBLIC)
    assert verify(receipt) == {"valid": True, "key_id": receipt["key_id"], "reason": None}


# --- rotation --------------------------------------------------------------------------------------------------------


def test_a_receipt_signed_by_a_retired_key_still_verifies(
    settings: Any, client_api: APIClient, miner_api: APIClient
) -> None:
    receipt, _ = first_receipt(client_api, miner_api)

    settings.RECEIPT_SIGNING_KEY = RFC8032_TEST2_SEED
    settings.RECEIPT_RETIRED_PUBLIC_KEYS = [RFC8032_TEST1_PUBLIC]

    assert verify(receipt) == {"valid": True, "key_id": key_id_of(RFC8032_TEST1_PUBLIC), "reason": None}


def test_after_rotation_the_keys_endpoint_lists_the_active_and_the_retired_key(
    settings: Any, anonymous_api: APIClient
) -> None:
    settings.RECEIPT_SIGNING_KEY = RFC8032_TEST2_SEED
    settings.RECEIPT_RETIRED_PUBLIC_KEYS = [RFC8032_TEST1_PUBLIC]

    response = anonymous_api.get("/v1/receipts/keys")

    assert response.status_code == 200, response.content
    assert response.json() == {
        "keys": [
            {"key_id": key_id_of(RFC8032_TEST2_PUBLIC), "alg": "ed25519", "public_key": RFC8032_TEST2_PUBLIC,
             "status": "active"},
            {"key_id": key_id_of(RFC8032_TEST1_PUBLIC), "alg": "ed25519", "public_key": RFC8032_TEST1_PUBLIC,
             "status": "retired"},
        ]
    }


def test_after_rotation_new_receipts_are_signed_by_the_new_key_and_the_chain_goes_on(
    settings: Any, client_api: APIClient, miner_api: APIClient
) -> None:
    miner_id = register_miner(miner_api)["id"]
    before = run_job(client_api, miner_api, miner_id)

    settings.RECEIPT_SIGNING_KEY = RFC8032_TEST2_SEED
    settings.RECEIPT_RETIRED_PUBLIC_KEYS = [RFC8032_TEST1_PUBLIC]
    after = run_job(client_api, miner_api, miner_id)

    assert after["key_id"] == key_id_of(RFC8032_TEST2_PUBLIC)
    assert after["prev_hash"] == chain_hash(before)
    assert verify(after)["valid"] is True
    assert verify(before)["valid"] is True


def test_a_key_neither_active_nor_retired_no_longer_verifies(
    settings: Any, client_api: APIClient, miner_api: APIClient
) -> None:
    receipt, _ = first_receipt(client_api, miner_api)

    settings.RECEIPT_SIGNING_KEY = RFC8032_TEST2_SEED
    settings.RECEIPT_RETIRED_PUBLIC_KEYS = []

    assert verify(receipt) == {"valid": False, "key_id": receipt["key_id"], "reason": "UNKNOWN_KEY"}


def test_the_active_key_listed_as_retired_too_is_published_once_as_active(settings: Any) -> None:
    settings.RECEIPT_RETIRED_PUBLIC_KEYS = [RFC8032_TEST1_PUBLIC, RFC8032_TEST2_PUBLIC]

    keys = APIClient().get("/v1/receipts/keys").json()["keys"]

    assert [(key["public_key"], key["status"]) for key in keys] == [
        (RFC8032_TEST1_PUBLIC, "active"), (RFC8032_TEST2_PUBLIC, "retired")
    ]


# --- offline verification (the README's snippet) ---------------------------------------------------------------------


def test_a_receipt_verifies_offline_with_only_the_published_public_key(
    client_api: APIClient, miner_api: APIClient, tmp_path: Path
) -> None:
    receipt, _ = first_receipt(client_api, miner_api, result={"text": "Grüße 😀", "score": 0.1})
    served = client_api.get(f"/v1/receipts/{receipt['id']}").json()
    keys = APIClient().get("/v1/receipts/keys").json()

    completed = run_offline_verification(tmp_path, served, keys)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"valid receipt {receipt['id']} signed by {receipt['key_id']}"


def test_a_tampered_receipt_fails_offline_verification(
    client_api: APIClient, miner_api: APIClient, tmp_path: Path
) -> None:
    receipt, _ = first_receipt(client_api, miner_api)
    keys = APIClient().get("/v1/receipts/keys").json()

    completed = run_offline_verification(tmp_path, {**receipt, "result": {"text": "better result"}}, keys)

    assert completed.returncode != 0
    assert InvalidSignature.__name__ in completed.stderr


def test_a_receipt_signed_by_a_retired_key_verifies_offline_with_the_published_keys(
    settings: Any, client_api: APIClient, miner_api: APIClient, tmp_path: Path
) -> None:
    receipt, _ = first_receipt(client_api, miner_api)
    settings.RECEIPT_SIGNING_KEY = RFC8032_TEST2_SEED
    settings.RECEIPT_RETIRED_PUBLIC_KEYS = [RFC8032_TEST1_PUBLIC]
    keys = APIClient().get("/v1/receipts/keys").json()

    completed = run_offline_verification(tmp_path, receipt, keys)

    assert completed.returncode == 0, completed.stderr


def test_the_seeds_used_by_these_tests_are_rfc_8032s_test_vectors() -> None:
    # Guards the constants themselves: each seed derives the public key RFC 8032 publishes for it.
    assert public_hex(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_TEST1_SEED))) == RFC8032_TEST1_PUBLIC
    assert public_hex(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_TEST2_SEED))) == RFC8032_TEST2_PUBLIC
