"""Receipts through the API: what a posted result earns, who may read it, and what /v1/receipts/verify accepts."""

import itertools
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rest_framework.test import APIClient

from aitbc_site.testing import assert_api_error
from conftest import poll, post_result, register_miner, submit_job
from jobs.models import Job, JobStatus
from receipts.models import Receipt
from receipts.tests.factories import (
    RECEIPT_FIELDS,
    RFC8032_TEST1_PUBLIC,
    chain_hash,
    first_receipt,
    key_id_of,
    post_and_get_receipt,
    public_hex,
    run_job,
    signed_by,
    take_job,
)

OTHER_UUID = "00000000-0000-4000-8000-000000000000"
EPOCH = "2000-01-01T00:00:00Z"


def verify(api: APIClient, document: Any) -> Any:
    return api.post("/v1/receipts/verify", document, format="json")


@pytest.fixture
def receipt(client_api: APIClient, miner_api: APIClient) -> dict[str, Any]:
    """A real receipt with every optional part filled in, so that every field has content to tamper with."""
    document, _ = first_receipt(
        client_api, miner_api, result={"text": "hi", "nested": {"tokens": [1, 2, 3], "score": 0.5}},
        metrics={"duration_ms": 1200, "gpu": "A100"},
    )
    return document


# --- what a posted result earns -----------------------------------------------------------------------------------


def test_a_completed_result_earns_a_receipt_with_every_documented_field(
    client_api: APIClient, miner_api: APIClient
) -> None:
    miner_id = register_miner(miner_api)["id"]
    job = submit_job(client_api)
    take_job(miner_api, miner_id, job["id"])

    response = post_result(miner_api, miner_id, job["id"], result={"text": "hi"}, metrics={"tokens": 2})

    assert response.status_code == 200, response.content
    assert response.json()["job"]["status"] == "completed"
    receipt = response.json()["receipt"]
    assert RECEIPT_FIELDS <= set(receipt)
    assert receipt["job_id"] == job["id"]
    assert receipt["miner_id"] == miner_id
    assert receipt["client_id"] == str(Job.objects.get(pk=job["id"]).client_id)
    assert (receipt["attempt"], receipt["job_type"], receipt["status"]) == (1, "llm_inference", "completed")
    assert (receipt["result"], receipt["error"], receipt["metrics"]) == ({"text": "hi"}, None, {"tokens": 2})
    assert receipt["alg"] == "ed25519"
    assert receipt["key_id"] == key_id_of(RFC8032_TEST1_PUBLIC)
    assert len(bytes.fromhex(receipt["proof"])) == 64
    assert all(receipt[name].endswith("Z") for name in ("started_at", "completed_at", "created_at"))
    assert Receipt.objects.filter(pk=receipt["id"], job_id=job["id"], attempt=1).exists()


def test_a_failed_attempt_also_earns_a_receipt_with_status_failed(client_api: APIClient, miner_api: APIClient) -> None:
    error = {"code": "OUT_OF_MEMORY", "message": "CUDA out of memory"}
    receipt, _ = first_receipt(
        client_api, miner_api, status="failed", result=None, error=error, retryable=False
    )

    assert (receipt["status"], receipt["result"], receipt["result_hash"]) == ("failed", None, None)
    assert receipt["error"] == error
    assert verify(APIClient(), receipt).json() == {"valid": True, "key_id": receipt["key_id"], "reason": None}


def test_a_replay_of_the_identical_result_returns_the_same_receipt(client_api: APIClient, miner_api: APIClient) -> None:
    miner_id = register_miner(miner_api)["id"]
    job = submit_job(client_api)
    take_job(miner_api, miner_id, job["id"])

    first = post_and_get_receipt(miner_api, miner_id, job["id"], result={"text": "hi"})
    replayed = post_and_get_receipt(miner_api, miner_id, job["id"], result={"text": "hi"})

    assert replayed == first
    assert (replayed["id"], replayed["proof"]) == (first["id"], first["proof"])
    assert Receipt.objects.filter(job_id=job["id"]).count() == 1


def test_a_jobs_receipts_are_listed_oldest_first_for_its_owner(
    client_api: APIClient, miner_api: APIClient, settings: Any
) -> None:
    settings.JOB_RETRY_BACKOFF_SECONDS = 0
    miner_id = register_miner(miner_api)["id"]
    job = submit_job(client_api)
    take_job(miner_api, miner_id, job["id"])
    failed = post_and_get_receipt(
        miner_api, miner_id, job["id"], status="failed", result=None, error={"code": "CRASH", "message": "boom"}
    )
    take_job(miner_api, miner_id, job["id"])
    completed = post_and_get_receipt(miner_api, miner_id, job["id"], result={"text": "second try"})

    response = client_api.get(f"/v1/client/jobs/{job['id']}/receipts")

    assert response.status_code == 200, response.content
    assert response.json()["results"] == [failed, completed]
    listed = response.json()["results"]
    assert [(item["attempt"], item["status"]) for item in listed] == [(1, "failed"), (2, "completed")]


# --- the chain ----------------------------------------------------------------------------------------------------


def test_a_miners_first_receipt_has_no_prev_hash_and_each_next_names_the_hash_of_the_previous(
    client_api: APIClient, miner_api: APIClient
) -> None:
    miner_id = register_miner(miner_api)["id"]

    receipts = [run_job(client_api, miner_api, miner_id, result={"n": index}) for index in range(4)]

    assert receipts[0]["prev_hash"] is None
    for previous, current in itertools.pairwise(receipts):
        assert current["prev_hash"] == chain_hash(previous)


def test_a_failed_attempts_receipt_is_a_link_of_the_miners_chain_too(
    client_api: APIClient, miner_api: APIClient
) -> None:
    miner_id = register_miner(miner_api)["id"]
    failed = run_job(
        client_api, miner_api, miner_id, status="failed", result=None, error={"code": "X", "message": "no"},
        retryable=False,
    )

    completed = run_job(client_api, miner_api, miner_id)

    assert completed["prev_hash"] == chain_hash(failed)


def test_each_miner_has_its_own_chain(client_api: APIClient, miner_api: APIClient, other_miner_api: APIClient) -> None:
    miner_id = register_miner(miner_api)["id"]
    run_job(client_api, miner_api, miner_id)

    others_first, _ = first_receipt(client_api, other_miner_api)

    assert others_first["prev_hash"] is None


# --- reading: privacy -----------------------------------------------------------------------------------------------


def test_the_jobs_client_and_the_producing_miners_owner_can_read_a_receipt(
    receipt: dict[str, Any], client_api: APIClient, miner_api: APIClient
) -> None:
    for reader in (client_api, miner_api):
        response = reader.get(f"/v1/receipts/{receipt['id']}")
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/json"
        assert response.json() == receipt


@pytest.mark.parametrize("reader", ["other_client_api", "other_miner_api"])
def test_no_other_client_or_miner_can_read_a_receipt(
    receipt: dict[str, Any], reader: str, request: pytest.FixtureRequest
) -> None:
    response = request.getfixturevalue(reader).get(f"/v1/receipts/{receipt['id']}")

    assert_api_error(response, status=404, code="RECEIPT_NOT_FOUND")


@pytest.mark.parametrize("receipt_id", [OTHER_UUID, "not-a-uuid", "12345"])
def test_an_unknown_or_malformed_receipt_id_is_receipt_not_found(client_api: APIClient, receipt_id: str) -> None:
    response = client_api.get(f"/v1/receipts/{receipt_id}")

    assert_api_error(response, status=404, code="RECEIPT_NOT_FOUND")


def test_reading_a_receipt_needs_an_api_key(receipt: dict[str, Any], anonymous_api: APIClient) -> None:
    response = anonymous_api.get(f"/v1/receipts/{receipt['id']}")

    assert_api_error(response, status=401, code="AUTHENTICATION_REQUIRED")


def test_another_client_cannot_list_a_jobs_receipts(receipt: dict[str, Any], other_client_api: APIClient) -> None:
    response = other_client_api.get(f"/v1/client/jobs/{receipt['job_id']}/receipts")

    assert_api_error(response, status=404, code="JOB_NOT_FOUND")


def test_a_miner_key_cannot_list_a_jobs_receipts(receipt: dict[str, Any], miner_api: APIClient) -> None:
    response = miner_api.get(f"/v1/client/jobs/{receipt['job_id']}/receipts")

    assert_api_error(response, status=403, code="PERMISSION_DENIED")


def test_listing_a_jobs_receipts_needs_an_api_key(receipt: dict[str, Any], anonymous_api: APIClient) -> None:
    response = anonymous_api.get(f"/v1/client/jobs/{receipt['job_id']}/receipts")

    assert_api_error(response, status=401, code="AUTHENTICATION_REQUIRED")


def test_a_malformed_job_id_when_listing_receipts_is_job_not_found(client_api: APIClient) -> None:
    response = client_api.get("/v1/client/jobs/not-a-uuid/receipts")

    assert_api_error(response, status=404, code="JOB_NOT_FOUND")


# --- serving: verbatim ----------------------------------------------------------------------------------------------


def test_a_receipt_is_served_byte_for_byte_as_stored(receipt: dict[str, Any], client_api: APIClient) -> None:
    response = client_api.get(f"/v1/receipts/{receipt['id']}")

    stored = Receipt.objects.get(pk=receipt["id"]).document
    assert response.content == stored.encode()
    # What is stored is what was signed: the canonical bytes of the receipt, proof included.
    assert json.loads(stored) == receipt
    assert stored.encode() == rfc8785.dumps(receipt)


# --- the public keys --------------------------------------------------------------------------------------------------


def test_the_keys_endpoint_publishes_the_active_key_without_authentication(anonymous_api: APIClient) -> None:
    response = anonymous_api.get("/v1/receipts/keys")

    assert response.status_code == 200, response.content
    assert response.json() == {
        "keys": [
            {"key_id": key_id_of(RFC8032_TEST1_PUBLIC), "alg": "ed25519", "public_key": RFC8032_TEST1_PUBLIC,
             "status": "active"}
        ]
    }


def test_the_key_id_is_the_first_16_hex_digits_of_the_sha256_of_the_raw_public_key(anonymous_api: APIClient) -> None:
    (key,) = anonymous_api.get("/v1/receipts/keys").json()["keys"]

    # Computed by hand for RFC 8032's TEST 1 public key, so the rule itself is pinned, not just its implementation.
    assert key["key_id"] == "21fe31dfa154a261"
    assert key["key_id"] == key_id_of(key["public_key"])


def test_the_public_endpoints_ignore_an_invalid_api_key(receipt: dict[str, Any]) -> None:
    api = APIClient()
    api.credentials(HTTP_X_API_KEY="aitbc_nope_nope")

    assert api.get("/v1/receipts/keys").status_code == 200
    assert verify(api, receipt).json()["valid"] is True


# --- verifying --------------------------------------------------------------------------------------------------------


def test_an_untampered_receipt_is_valid_with_no_reason(receipt: dict[str, Any], anonymous_api: APIClient) -> None:
    response = verify(anonymous_api, receipt)

    assert response.status_code == 200, response.content
    assert response.json() == {"valid": True, "key_id": receipt["key_id"], "reason": None}


def _flip_last_hex_digit(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


# How to change each field plausibly: another id, another status, a nudged number, a result with one more character …
TAMPERINGS: dict[str, Callable[[Any], Any]] = {
    "id": lambda _: str(uuid.uuid4()),
    "job_id": lambda _: str(uuid.uuid4()),
    "miner_id": lambda _: str(uuid.uuid4()),
    "client_id": lambda _: str(uuid.uuid4()),
    "attempt": lambda value: value + 1,
    "job_type": lambda _: "embedding",
    "status": lambda _: "failed",
    "result": lambda value: {**value, "text": value["text"] + "!"},
    "result_hash": lambda value: _flip_last_hex_digit(value),
    "output_hash": lambda _: "sha256:" + "1" * 64,
    "error": lambda _: {"code": "OOPS", "message": "not what happened"},
    "metrics": lambda value: {**value, "duration_ms": value["duration_ms"] - 1},
    "started_at": lambda _: EPOCH,
    "completed_at": lambda _: EPOCH,
    "created_at": lambda _: EPOCH,
    "prev_hash": lambda _: "sha256:" + "0" * 64,
    "alg": lambda _: "ES256",
    "proof": _flip_last_hex_digit,
}


def test_the_tamperings_cover_every_field_of_a_receipt_but_the_key_id() -> None:
    # key_id is the one field whose change is reported differently (UNKNOWN_KEY), tested on its own below.
    assert set(TAMPERINGS) == RECEIPT_FIELDS - {"key_id"}


@pytest.mark.parametrize("field", sorted(TAMPERINGS))
def test_every_field_tampered_in_turn_makes_the_receipt_a_bad_signature(
    receipt: dict[str, Any], anonymous_api: APIClient, field: str
) -> None:
    tampered = {**receipt, field: TAMPERINGS[field](receipt[field])}
    assert tampered[field] != receipt[field]

    response = verify(anonymous_api, tampered)

    assert response.status_code == 200, response.content
    assert response.json() == {"valid": False, "key_id": receipt["key_id"], "reason": "BAD_SIGNATURE"}


def _tampered_anyhow(value: Any) -> Any:
    """A different value of the same JSON type, for fields this file does not know by name."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "0"
    if isinstance(value, dict):
        return {**value, "tampered": True}
    if isinstance(value, list):
        return [*value, "tampered"]
    return "tampered"


def test_fields_beyond_the_documented_ones_are_signed_too(receipt: dict[str, Any], anonymous_api: APIClient) -> None:
    extra_fields = sorted(set(receipt) - RECEIPT_FIELDS)

    outcomes = {
        field: verify(anonymous_api, {**receipt, field: _tampered_anyhow(receipt[field])}).json()["reason"]
        for field in extra_fields
    }

    assert outcomes == {field: "BAD_SIGNATURE" for field in extra_fields}


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda r: {**r, "result": {**r["result"], "nested": {"tokens": [3, 2, 1], "score": 0.5}}},
                     id="array-reordered-deep-inside-the-result"),
        pytest.param(lambda r: {**r, "result": {**r["result"], "nested": {"tokens": [1, 2, 3], "score": 0.25}}},
                     id="float-changed-deep-inside-the-result"),
        pytest.param(lambda r: {**r, "attempt": str(r["attempt"])}, id="number-turned-into-a-string"),
        pytest.param(lambda r: {**r, "bonus": "1000 AIT"}, id="field-added"),
        pytest.param(lambda r: {k: v for k, v in r.items() if k != "metrics"}, id="field-removed"),
        pytest.param(lambda r: {**r, "proof": r["proof"][:-2]}, id="proof-truncated"),
        pytest.param(lambda r: {**r, "proof": "zz" + r["proof"][2:]}, id="proof-not-hex"),
        pytest.param(lambda r: {**r, "result": {"big": 2**60}}, id="integer-json-canonicalization-cannot-represent"),
    ],
)
def test_other_changes_to_a_receipt_are_bad_signatures_too(
    receipt: dict[str, Any], anonymous_api: APIClient, tamper: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    response = verify(anonymous_api, tamper(receipt))

    assert response.status_code == 200, response.content
    assert response.json() == {"valid": False, "key_id": receipt["key_id"], "reason": "BAD_SIGNATURE"}


@pytest.mark.parametrize("field", ["proof", "key_id"])
@pytest.mark.parametrize("value", [12345, 1.5, True, None])
def test_a_receipt_whose_key_id_or_proof_is_not_a_string_is_400(
    receipt: dict[str, Any], anonymous_api: APIClient, field: str, value: Any
) -> None:
    error = assert_api_error(verify(anonymous_api, {**receipt, field: value}), status=400, code="VALIDATION_ERROR")

    assert field in error["details"]


def test_a_receipt_re_signed_by_another_key_under_our_key_id_is_a_bad_signature(
    receipt: dict[str, Any], anonymous_api: APIClient
) -> None:
    forged = signed_by(Ed25519PrivateKey.generate(), receipt, result={"text": "forged"})

    response = verify(anonymous_api, forged)

    assert response.json() == {"valid": False, "key_id": receipt["key_id"], "reason": "BAD_SIGNATURE"}


def test_a_receipt_signed_by_a_foreign_key_under_its_own_key_id_is_an_unknown_key(
    receipt: dict[str, Any], anonymous_api: APIClient
) -> None:
    foreign = Ed25519PrivateKey.generate()
    foreign_key_id = key_id_of(public_hex(foreign))
    forged = signed_by(foreign, receipt, key_id=foreign_key_id)

    response = verify(anonymous_api, forged)

    assert response.status_code == 200, response.content
    assert response.json() == {"valid": False, "key_id": foreign_key_id, "reason": "UNKNOWN_KEY"}


def test_changing_only_the_key_id_is_an_unknown_key(receipt: dict[str, Any], anonymous_api: APIClient) -> None:
    response = verify(anonymous_api, {**receipt, "key_id": "0123456789abcdef"})

    assert response.json() == {"valid": False, "key_id": "0123456789abcdef", "reason": "UNKNOWN_KEY"}


@pytest.mark.parametrize("body", ["[1, 2]", '"a receipt"', "42", "null", "true"])
def test_a_body_that_is_not_a_json_object_is_a_validation_error(anonymous_api: APIClient, body: str) -> None:
    response = anonymous_api.post("/v1/receipts/verify", body, content_type="application/json")

    assert_api_error(response, status=400, code="VALIDATION_ERROR")


@pytest.mark.parametrize("missing", ["key_id", "proof"])
def test_a_receipt_without_key_id_or_proof_is_a_validation_error(
    receipt: dict[str, Any], anonymous_api: APIClient, missing: str
) -> None:
    response = verify(anonymous_api, {name: value for name, value in receipt.items() if name != missing})

    error = assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert missing in error["details"]


def test_verifying_records_nothing(receipt: dict[str, Any], anonymous_api: APIClient) -> None:
    forged = signed_by(Ed25519PrivateKey.generate(), receipt, id=str(uuid.uuid4()))

    verify(anonymous_api, receipt)
    verify(anonymous_api, forged)

    assert Receipt.objects.count() == 1


def test_a_job_still_running_has_no_receipts(client_api: APIClient, miner_api: APIClient) -> None:
    miner_id = register_miner(miner_api)["id"]
    job = submit_job(client_api)
    poll(miner_api, miner_id)

    response = client_api.get(f"/v1/client/jobs/{job['id']}/receipts")

    assert response.status_code == 200
    assert response.json()["results"] == []
    assert Job.objects.get(pk=job["id"]).status == JobStatus.RUNNING


# --- the OpenAPI schema -----------------------------------------------------------------------------------------------


@pytest.fixture
def schema(anonymous_api: APIClient) -> dict[str, Any]:
    response = anonymous_api.get("/openapi.json", {"format": "json"})
    assert response.status_code == 200, response.content[:500]
    return json.loads(response.content)


def test_the_openapi_schema_documents_every_receipt_endpoint(schema: dict[str, Any]) -> None:
    paths = schema["paths"]

    assert "get" in paths["/v1/receipts/{id}"]
    assert "get" in paths["/v1/receipts/keys"]
    assert "post" in paths["/v1/receipts/verify"]
    assert "get" in paths["/v1/client/jobs/{id}/receipts"]
    assert "404" in paths["/v1/receipts/{id}"]["get"]["responses"]
    assert {"job", "receipt"} <= set(schema["components"]["schemas"]["ResultResponse"]["properties"])


def test_the_openapi_schema_documents_every_field_of_the_issue(schema: dict[str, Any]) -> None:
    assert set(schema["components"]["schemas"]["Receipt"]["properties"]) >= RECEIPT_FIELDS
    assert set(schema["components"]["schemas"]["Verification"]["properties"]) == {"valid", "key_id", "reason"}


def test_the_openapi_schema_documents_every_field_a_real_receipt_carries(
    schema: dict[str, Any], receipt: dict[str, Any]
) -> None:
    assert set(receipt) <= set(schema["components"]["schemas"]["Receipt"]["properties"])
