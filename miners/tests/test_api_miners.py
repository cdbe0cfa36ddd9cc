"""HTTP contract of POST /v1/miner/register and POST /v1/miner/heartbeat.

Who may call them at all (401/403) is in accounts/tests/test_api_key_auth.py; lease renewal and draining are in
jobs/tests/test_lifecycle.py.
"""

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from eth_utils import to_checksum_address
from rest_framework.test import APIClient

from aitbc_site.testing import assert_api_error
from conftest import api_key_of, register_miner, start_job, submit_job
from miners.models import Miner, MinerStatus

REGISTER = "/v1/miner/register"
HEARTBEAT = "/v1/miner/heartbeat"

MINER_FIELDS = {
    "id", "name", "address", "endpoint", "capabilities", "resources", "max_concurrent_jobs", "status", "last_heartbeat",
    "registered_at",
}
HEX = "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
CHECKSUMMED = to_checksum_address("0x" + HEX)


def flip_case_of_one_letter(address: str) -> str:
    position = next(index for index, char in enumerate(address) if index > 1 and char.isalpha())
    return address[:position] + address[position].swapcase() + address[position + 1 :]


# --- POST /v1/miner/register -------------------------------------------------------------------------------------


def test_registering_stores_an_active_miner_owned_by_the_callers_user(miner_api: APIClient) -> None:
    body = {
        "address": "ait1" + HEX,
        "endpoint": "https://gpu-box.example.net:9000",
        "capabilities": ["llm_inference", "embedding"],
        "resources": {"gpu_model": "RTX 4090", "gpu_memory_gb": 24, "models": ["llama-3-8b"], "region": "eu-west"},
        "max_concurrent_jobs": 4,
    }

    response = miner_api.post(REGISTER, body, format="json")

    assert response.status_code == 201, response.content
    miner = response.json()
    assert set(miner) == MINER_FIELDS
    assert miner["status"] == "active"
    assert miner["last_heartbeat"] is not None and miner["registered_at"] is not None
    assert {key: miner[key] for key in body} == body
    stored = Miner.objects.get(pk=miner["id"])
    assert stored.owner_id == api_key_of(miner_api).user_id
    assert stored.status == MinerStatus.ACTIVE
    assert stored.max_concurrent_jobs == 4


def test_a_minimal_registration_gets_the_defaults(miner_api: APIClient) -> None:
    miner = register_miner(miner_api, capabilities=["embedding"])

    assert miner["endpoint"] is None
    assert miner["resources"] == {}
    assert miner["max_concurrent_jobs"] == 1
    assert miner["capabilities"] == ["embedding"]


@pytest.mark.parametrize(
    "address",
    ["0x" + HEX, "0x" + HEX.upper(), CHECKSUMMED, "ait1" + HEX, "aitbc1" + HEX, "ait1" + HEX.upper()],
    ids=["0x lowercase", "0x uppercase", "0x EIP-55", "ait1", "aitbc1", "ait1 uppercase"],
)
def test_every_spelling_of_a_wallet_is_stored_as_the_canonical_ait1_lowercase(
    miner_api: APIClient, address: str
) -> None:
    miner = register_miner(miner_api, address=address)

    assert miner["address"] == "ait1" + HEX
    assert Miner.objects.get(pk=miner["id"]).address == "ait1" + HEX


@pytest.mark.parametrize(
    "address",
    [
        flip_case_of_one_letter(CHECKSUMMED),
        "0x" + HEX[:-1],
        "0x" + HEX + "0",
        "0x" + HEX[:-1] + "g",
        "ait2" + HEX,
        "bc1" + HEX,
        HEX,
        "ait1",
        123456,
    ],
    ids=[
        "0x failing EIP-55", "39 hex digits", "41 hex digits", "not hex", "unknown prefix", "bitcoin prefix",
        "no prefix", "prefix only", "a number",
    ],
)
def test_an_address_that_is_not_an_aitbc_wallet_is_invalid_address(miner_api: APIClient, address: Any) -> None:
    response = miner_api.post(REGISTER, {"address": address, "capabilities": ["embedding"]}, format="json")

    assert_api_error(response, status=400, code="INVALID_ADDRESS")
    assert not Miner.objects.exists()


def test_an_unknown_capability_is_invalid_job_type(miner_api: APIClient) -> None:
    response = miner_api.post(
        REGISTER, {"address": "ait1" + HEX, "capabilities": ["embedding", "crypto_mining"]}, format="json"
    )

    error = assert_api_error(response, status=400, code="INVALID_JOB_TYPE")
    assert "crypto_mining" in error["message"]
    assert not Miner.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"capabilities": []}, "capabilities"),
        ({"capabilities": "embedding"}, "capabilities"),
        ({"address": ""}, "address"),
        ({"name": "has space"}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"max_concurrent_jobs": 0}, "max_concurrent_jobs"),
        ({"max_concurrent_jobs": 65}, "max_concurrent_jobs"),
        ({"endpoint": "not a url"}, "endpoint"),
        ({"resources": {"vram": 24}}, "resources"),
        ({"resources": {"gpu_memory_gb": -1}}, "resources"),
        ({"resources": {"models": "llama"}}, "resources"),
        ({"resources": ["gpu"]}, "resources"),
        ({"wallet": "ait1" + HEX}, "wallet"),
        ({"endpoint": "ftp://gpu-box.example.net/"}, "endpoint"),
        ({"endpoint": "file:///etc/passwd"}, "endpoint"),
        ({"endpoint": "https://user:secret@gpu-box.example.net/"}, "endpoint"),
        ({"endpoint": "https://token@gpu-box.example.net/"}, "endpoint"),
        ({"endpoint": "https://gpu-box.example.net/" + "a" * 500}, "endpoint"),
        ({"max_concurrent_jobs": "2"}, "max_concurrent_jobs"),
        ({"max_concurrent_jobs": True}, "max_concurrent_jobs"),
        ({"max_concurrent_jobs": 2.5}, "max_concurrent_jobs"),
        ({"capabilities": [7]}, "capabilities"),
        ({"resources": {"gpu_model": 4090}}, "resources"),
        ({"resources": {"gpu_memory_gb": "24"}}, "resources"),
        ({"resources": {"models": ["llama", 3]}}, "resources"),
    ],
    ids=[
        "no capabilities", "capabilities not a list", "address empty", "name with a space", "name too long",
        "max_concurrent_jobs 0",
        "max_concurrent_jobs 65", "endpoint not a url", "unknown resource", "negative memory", "models not a list",
        "resources not an object", "unknown field", "endpoint ftp", "endpoint file", "endpoint with a password",
        "endpoint with a user", "endpoint over 500 characters",
        "max_concurrent_jobs a string", "max_concurrent_jobs true",
        "max_concurrent_jobs a fraction", "capability a number", "gpu_model a number", "gpu memory a string",
        "a model a number",
    ],
)
def test_a_registration_body_is_validated(miner_api: APIClient, overrides: dict[str, Any], field: str) -> None:
    body = {"address": "ait1" + HEX, "capabilities": ["embedding"], **overrides}

    error = assert_api_error(miner_api.post(REGISTER, body, format="json"), status=400, code="VALIDATION_ERROR")

    assert field in error["details"], error
    assert not Miner.objects.exists()


def test_a_registration_needs_capabilities(miner_api: APIClient) -> None:
    error = assert_api_error(miner_api.post(REGISTER, {}, format="json"), status=400, code="VALIDATION_ERROR")

    assert set(error["details"]) == {"capabilities"}, error


def test_registering_again_under_the_same_name_updates_that_miner(miner_api: APIClient) -> None:
    first = miner_api.post(REGISTER, {"name": "rig-1", "capabilities": ["embedding"]}, format="json")
    again = miner_api.post(REGISTER, {"name": "rig-1", "capabilities": ["llm_inference"]}, format="json")

    assert (first.status_code, again.status_code) == (201, 200), again.content
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["capabilities"] == ["llm_inference"]
    assert Miner.objects.count() == 1


def test_the_same_name_under_another_owner_is_another_miner(miner_api: APIClient, other_miner_api: APIClient) -> None:
    mine = miner_api.post(REGISTER, {"name": "rig-1", "capabilities": ["embedding"]}, format="json").json()
    theirs = other_miner_api.post(REGISTER, {"name": "rig-1", "capabilities": ["embedding"]}, format="json")

    assert theirs.status_code == 201
    assert theirs.json()["id"] != mine["id"]


def test_a_miner_without_a_name_is_named_by_its_id_and_without_an_address_pays_its_owner(
    miner_api: APIClient,
) -> None:
    miner = miner_api.post(REGISTER, {"capabilities": ["embedding"]}, format="json").json()

    assert miner["name"] == miner["id"]
    assert miner["address"] is None


def test_renaming_to_a_name_the_owner_already_uses_is_a_conflict(miner_api: APIClient) -> None:
    miner_api.post(REGISTER, {"name": "rig-1", "capabilities": ["embedding"]}, format="json")
    other = miner_api.post(REGISTER, {"name": "rig-2", "capabilities": ["embedding"]}, format="json").json()

    response = miner_api.post(
        REGISTER, {"miner_id": other["id"], "name": "rig-1", "capabilities": ["embedding"]}, format="json"
    )

    assert_api_error(response, status=409, code="MINER_NAME_TAKEN")


def test_sending_miner_id_updates_the_callers_earlier_registration(miner_api: APIClient) -> None:
    miner = register_miner(miner_api, capabilities=["embedding"])

    response = miner_api.post(
        REGISTER,
        {
            "miner_id": miner["id"],
            "address": "aitbc1" + HEX,
            "capabilities": ["llm_inference"],
            "resources": {"gpu_memory_gb": 80},
            "max_concurrent_jobs": 8,
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    updated = response.json()
    assert updated["id"] == miner["id"]
    assert (updated["address"], updated["capabilities"], updated["max_concurrent_jobs"]) == (
        "ait1" + HEX, ["llm_inference"], 8,
    )
    assert Miner.objects.count() == 1
    assert Miner.objects.get(pk=miner["id"]).resources == {"gpu_memory_gb": 80}


def test_sending_another_principals_miner_id_is_miner_not_found(
    miner_api: APIClient, other_miner_api: APIClient
) -> None:
    theirs = register_miner(other_miner_api, capabilities=["embedding"])

    response = miner_api.post(
        REGISTER, {"miner_id": theirs["id"], "address": "ait1" + HEX, "capabilities": ["llm_inference"]}, format="json"
    )

    assert_api_error(response, status=404, code="MINER_NOT_FOUND")
    stored = Miner.objects.get(pk=theirs["id"])
    assert (stored.capabilities, stored.owner_id) == (["embedding"], api_key_of(other_miner_api).user_id)
    assert Miner.objects.count() == 1


@pytest.mark.parametrize("miner_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_sending_an_unknown_or_malformed_miner_id_is_miner_not_found(miner_api: APIClient, miner_id: str) -> None:
    response = miner_api.post(
        REGISTER, {"miner_id": miner_id, "address": "ait1" + HEX, "capabilities": ["embedding"]}, format="json"
    )

    assert_api_error(response, status=404, code="MINER_NOT_FOUND")
    assert not Miner.objects.exists()


# --- POST /v1/miner/heartbeat ------------------------------------------------------------------------------------


def test_a_heartbeat_records_that_the_miner_is_alive(miner_api: APIClient) -> None:
    miner = register_miner(miner_api)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Miner.objects.filter(pk=miner["id"]).update(last_heartbeat=an_hour_ago, status=MinerStatus.INACTIVE)

    response = miner_api.post(HEARTBEAT, {"miner_id": miner["id"]}, format="json")

    assert response.status_code == 200, response.content
    beat = response.json()
    assert set(beat) >= MINER_FIELDS | {"held_jobs", "cancelled_jobs", "heartbeat_interval"}
    assert beat["id"] == miner["id"]
    assert beat["status"] == "active"
    assert beat["held_jobs"] == [] and beat["cancelled_jobs"] == []
    assert beat["heartbeat_interval"] > 0
    stored = Miner.objects.get(pk=miner["id"])
    assert stored.status == MinerStatus.ACTIVE
    assert timezone.now() - stored.last_heartbeat < timedelta(seconds=5)
    assert datetime.fromisoformat(beat["last_heartbeat"]) > datetime.fromisoformat(miner["last_heartbeat"])


def test_a_heartbeat_lists_the_jobs_the_miner_holds(client_api: APIClient, miner_api: APIClient) -> None:
    job, miner = start_job(client_api, miner_api)

    beat = miner_api.post(HEARTBEAT, {"miner_id": miner["id"]}, format="json").json()

    assert beat["held_jobs"] == [job["id"]]


def test_a_heartbeat_tells_the_miner_which_of_its_jobs_were_cancelled(
    client_api: APIClient, miner_api: APIClient
) -> None:
    job, miner = start_job(client_api, miner_api)
    client_api.post(f"/v1/client/jobs/{job['id']}/cancel")

    beat = miner_api.post(HEARTBEAT, {"miner_id": miner["id"]}, format="json").json()

    assert beat["cancelled_jobs"] == [job["id"]]
    assert beat["held_jobs"] == []


def test_a_heartbeat_may_set_the_miner_draining(client_api: APIClient, miner_api: APIClient) -> None:
    submit_job(client_api)
    miner = register_miner(miner_api)

    beat = miner_api.post(HEARTBEAT, {"miner_id": miner["id"], "status": "draining"}, format="json").json()

    assert beat["status"] == "draining"
    assert Miner.objects.get(pk=miner["id"]).status == MinerStatus.DRAINING


def test_a_heartbeat_for_another_principals_miner_is_miner_not_found(
    miner_api: APIClient, other_miner_api: APIClient
) -> None:
    theirs = register_miner(other_miner_api)
    Miner.objects.filter(pk=theirs["id"]).update(last_heartbeat=timezone.now() - timedelta(hours=1))

    assert_api_error(
        miner_api.post(HEARTBEAT, {"miner_id": theirs["id"]}, format="json"), status=404, code="MINER_NOT_FOUND"
    )
    assert timezone.now() - Miner.objects.get(pk=theirs["id"]).last_heartbeat > timedelta(minutes=59)


@pytest.mark.parametrize("miner_id", [str(uuid.uuid4()), "not-a-uuid", 7])
def test_a_heartbeat_for_an_unknown_or_malformed_miner_id_is_miner_not_found(
    miner_api: APIClient, miner_id: Any
) -> None:
    assert_api_error(
        miner_api.post(HEARTBEAT, {"miner_id": miner_id}, format="json"), status=404, code="MINER_NOT_FOUND"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "miner_id"),
        ({"miner_id": None}, "miner_id"),
        ({"status": "inactive"}, "status"),
        ({"jobs": [{"job_id": str(uuid.uuid4()), "progress": 1.5}]}, "jobs"),
        ({"jobs": "all"}, "jobs"),
        ({"gpu_temperature": 80}, "gpu_temperature"),
    ],
    ids=["no miner_id", "null miner_id", "status not allowed", "progress above 1", "jobs not a list", "unknown field"],
)
def test_a_heartbeat_body_is_validated(miner_api: APIClient, body: dict[str, Any], field: str) -> None:
    miner = register_miner(miner_api)
    if field != "miner_id":
        body = {"miner_id": miner["id"], **body}

    error = assert_api_error(miner_api.post(HEARTBEAT, body, format="json"), status=400, code="VALIDATION_ERROR")

    assert field in error["details"], error
