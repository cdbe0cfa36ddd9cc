"""The original dialect's miner routes: /v1/miners/…, over the same miners, hand-out, leases and receipts."""

import time
import uuid
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from aitbc_site.testing import assert_api_error
from conftest import register_miner
from jobs.models import Job, JobStatus
from miners.models import Miner, MinerStatus
from original.tests.helpers import (
    TOOL_CAPABILITIES,
    heartbeat,
    poll,
    post_result,
    register,
    registered,
    submitted,
    taken,
)


def test_registering_answers_200_and_offers_the_supported_tasks_through_the_type_table(miner_api: APIClient) -> None:
    body = registered(miner_api, "rig-7")

    miner = Miner.objects.get(pk=body["id"])
    assert body == {
        "status": "ok",
        "miner_id": "rig-7",
        "id": str(miner.pk),
        "job_types": miner.capabilities,
        "created": True,
    }
    assert miner.name == "rig-7"
    assert miner.capabilities == ["llm_inference", "fine_tuning"]
    assert miner.resources == {"gpu_model": "RTX 4060 Ti", "gpu_memory_gb": 16}
    assert miner.max_concurrent_jobs == 1
    assert miner.address is None
    assert miner.reported == {"capabilities": TOOL_CAPABILITIES}


def test_registering_the_same_name_again_updates_that_miner(miner_api: APIClient, other_miner_api: APIClient) -> None:
    first = registered(miner_api, "rig-1")
    again = registered(miner_api, "rig-1", capabilities={"gpu": {"model": "H100", "memory_gb": 80}})
    elsewhere = registered(other_miner_api, "rig-1")

    assert again["id"] == first["id"] and again["created"] is False
    assert elsewhere["id"] != first["id"]
    miner = Miner.objects.get(pk=first["id"])
    assert miner.capabilities == ["llm_inference"]
    assert miner.resources == {"gpu_model": "H100", "gpu_memory_gb": 80}
    assert Miner.objects.count() == 2


def test_unknown_capability_keys_and_tasks_are_kept_not_refused(miner_api: APIClient) -> None:
    capabilities = {"compute": {"supported_tasks": ["embeddings", "protein-folding"]}, "vendor": {"x": 1}}

    body = registered(miner_api, capabilities=capabilities)

    miner = Miner.objects.get(pk=body["id"])
    assert miner.capabilities == ["embedding"]
    assert miner.reported["capabilities"] == capabilities


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("", {"capabilities": {}}),
        ("?miner_id=bad%20name", {"capabilities": {}}),
        ("?miner_id=ok", {}),
        ("?miner_id=ok", {"capabilities": []}),
        ("?miner_id=ok", {"capabilities": {"gpu": {"memory_gb": "lots"}}}),
        ("?miner_id=ok", {"capabilities": {}, "address": "x"}),
    ],
)
def test_a_malformed_registration_is_a_validation_error(miner_api: APIClient, query: str, body: dict) -> None:
    response = miner_api.post(f"/v1/miners/register{query}", body, format="json")

    assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert not Miner.objects.exists()


def test_a_miner_offering_only_tasks_this_server_does_not_run_is_refused(miner_api: APIClient) -> None:
    response = register(miner_api, capabilities={"compute": {"supported_tasks": ["protein-folding"]}})

    error = assert_api_error(response, status=400, code="INVALID_JOB_TYPE")
    assert "inference" in error["details"]["supported"]


def test_miner_routes_need_a_miner_key(anonymous_api: APIClient, client_api: APIClient) -> None:
    for api, status, code in [(anonymous_api, 401, "AUTHENTICATION_REQUIRED"), (client_api, 403, "PERMISSION_DENIED")]:
        assert_api_error(register(api), status=status, code=code)
        assert_api_error(heartbeat(api), status=status, code=code)
        assert_api_error(poll(api), status=status, code=code)
        assert_api_error(post_result(api, str(uuid.uuid4())), status=status, code=code)


def test_a_poll_hands_out_one_job_with_its_original_payload(client_api: APIClient, miner_api: APIClient) -> None:
    job = submitted(client_api, payload={"type": "training", "dataset": "d"}, constraints={"region": "eu"})
    registered(miner_api, capabilities={**TOOL_CAPABILITIES, "region": "eu"})

    response = poll(miner_api)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["job_id"] == job["job_id"]
    assert body["payload"] == {"type": "training", "dataset": "d"}
    assert body["constraints"] == {"region": "eu"}
    assert body["attempt"] == 1
    assert Job.objects.get(pk=job["job_id"]).status == JobStatus.RUNNING


def test_an_empty_poll_is_204_and_two_polls_never_share_a_job(client_api: APIClient, miner_api: APIClient) -> None:
    submitted(client_api)
    registered(miner_api)

    assert poll(miner_api).status_code == 200
    empty = poll(miner_api)

    assert empty.status_code == 204
    assert empty.content == b""


def test_a_poll_speaks_for_the_miner_that_showed_life_last(client_api: APIClient, miner_api: APIClient) -> None:
    registered(miner_api, "old")
    newest = registered(miner_api, "new")
    submitted(client_api)

    poll(miner_api)

    assert str(Job.objects.get().miner_id) == newest["id"]


def test_a_poll_without_a_registered_miner_is_not_found(miner_api: APIClient) -> None:
    assert_api_error(poll(miner_api), status=404, code="MINER_NOT_FOUND")


def test_a_poll_body_is_validated(miner_api: APIClient) -> None:
    registered(miner_api)
    response = miner_api.post("/v1/miners/poll", {"max_wait_seconds": -1}, format="json")

    assert_api_error(response, status=400, code="VALIDATION_ERROR")


def test_a_waiting_poll_waits_less_than_the_original_tools_timeout(miner_api: APIClient) -> None:
    registered(miner_api)

    started = time.monotonic()
    response = poll(miner_api, max_wait_seconds=60)
    took = time.monotonic() - started

    assert response.status_code == 204
    # Capped at 4 s: the original tools' HTTP client gives up after 5.
    assert 3.5 <= took < 5


def test_a_disabled_miner_is_refused_work(client_api: APIClient, miner_api: APIClient) -> None:
    registered(miner_api)
    Miner.objects.update(disabled_at=timezone.now())

    assert_api_error(poll(miner_api), status=403, code="MINER_DISABLED")
    assert_api_error(heartbeat(miner_api), status=403, code="MINER_DISABLED")


def test_a_heartbeat_keeps_the_metadata_and_maps_the_state(miner_api: APIClient) -> None:
    registered(miner_api)

    response = heartbeat(miner_api, status="DRAINING", inflight=1, metadata={"gpu_temperature": 65})

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"
    miner = Miner.objects.get()
    assert miner.status == MinerStatus.DRAINING
    assert miner.reported["heartbeat"] == {"gpu_temperature": 65}
    assert "capabilities" in miner.reported


def test_a_heartbeat_of_an_unknown_name_is_not_found_and_a_bad_state_invalid(miner_api: APIClient) -> None:
    registered(miner_api)

    assert_api_error(heartbeat(miner_api, "nobody"), status=404, code="MINER_NOT_FOUND")
    assert_api_error(heartbeat(miner_api, status="ASLEEP"), status=400, code="VALIDATION_ERROR")
    assert_api_error(miner_api.post("/v1/miners/heartbeat", {}, format="json"), status=400, code="VALIDATION_ERROR")


def test_inflight_zero_releases_the_held_jobs_without_counting_an_attempt(
    client_api: APIClient, miner_api: APIClient
) -> None:
    job = taken(client_api, miner_api)

    body = heartbeat(miner_api, inflight=0).json()

    assert body["held_jobs"] == []
    stored = Job.objects.get(pk=job["job_id"])
    assert stored.status == JobStatus.PENDING
    assert stored.attempts == 0


def test_a_heartbeat_with_jobs_in_flight_renews_their_leases(client_api: APIClient, miner_api: APIClient) -> None:
    job = taken(client_api, miner_api)
    before = Job.objects.get(pk=job["job_id"]).lease_expires_at

    body = heartbeat(miner_api, inflight=1).json()

    assert body["held_jobs"] == [job["job_id"]]
    assert Job.objects.get(pk=job["job_id"]).lease_expires_at >= before


def test_a_result_completes_the_job_and_answers_its_receipt(client_api: APIClient, miner_api: APIClient) -> None:
    job = taken(client_api, miner_api)

    response = post_result(miner_api, job["job_id"], metrics={"aitbc_earned": 1000000, "price": "999"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["job_id"] == job["job_id"] and body["state"] == "COMPLETED"
    assert body["receipt"]["metrics"] == {"aitbc_earned": 1000000, "price": "999"}
    stored = Job.objects.get(pk=job["job_id"])
    assert body["receipt"]["price"] == f"{stored.price:.8f}"
    assert stored.status == JobStatus.COMPLETED
    assert post_result(miner_api, job["job_id"]).json() == body  # a replay gets the same answer


def test_a_different_second_result_is_a_conflict(client_api: APIClient, miner_api: APIClient) -> None:
    job = taken(client_api, miner_api)
    post_result(miner_api, job["job_id"])

    assert_api_error(post_result(miner_api, job["job_id"], result={"other": 1}), status=409, code="INVALID_JOB_STATE")


def test_a_result_for_a_job_none_of_the_keys_miners_holds_is_not_found(
    client_api: APIClient, miner_api: APIClient, other_miner_api: APIClient
) -> None:
    job = taken(client_api, miner_api)
    registered(other_miner_api)

    assert_api_error(post_result(other_miner_api, job["job_id"]), status=404, code="JOB_NOT_FOUND")
    assert_api_error(post_result(miner_api, "not-a-uuid"), status=404, code="JOB_NOT_FOUND")
    assert Job.objects.get(pk=job["job_id"]).status == JobStatus.RUNNING


def test_a_result_after_the_job_went_to_another_owners_miner_is_refused(
    client_api: APIClient, miner_api: APIClient, other_miner_api: APIClient
) -> None:
    job = taken(client_api, miner_api)
    heartbeat(miner_api, inflight=0)
    registered(other_miner_api)
    assert poll(other_miner_api).json()["job_id"] == job["job_id"]

    response = post_result(miner_api, job["job_id"])

    assert response.status_code == 409, response.content
    assert Job.objects.get(pk=job["job_id"]).status == JobStatus.RUNNING
    assert post_result(other_miner_api, job["job_id"]).status_code == 200


def test_a_result_is_posted_for_the_owners_miner_that_took_the_job_last(
    client_api: APIClient, miner_api: APIClient
) -> None:
    job = taken(client_api, miner_api)
    heartbeat(miner_api, inflight=0)
    second = registered(miner_api, "second")
    assert poll(miner_api).json()["job_id"] == job["job_id"]

    body = post_result(miner_api, job["job_id"]).json()

    assert body["receipt"]["miner_id"] == second["id"]


def test_a_malformed_result_is_a_validation_error(client_api: APIClient, miner_api: APIClient) -> None:
    job = taken(client_api, miner_api)

    for body in [{}, {"result": "text"}, {"result": {}, "extra": 1}]:
        response = miner_api.post(f"/v1/miners/{job['job_id']}/result", body, format="json")
        assert_api_error(response, status=400, code="VALIDATION_ERROR")


def test_a_failure_requeues_the_job_while_attempts_remain_and_is_receipted(
    client_api: APIClient, miner_api: APIClient
) -> None:
    job = taken(client_api, miner_api)

    response = miner_api.post(
        f"/v1/miners/{job['job_id']}/fail", {"error_code": "OOM", "error_message": "out of memory"}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "QUEUED"
    assert body["receipt"]["status"] == "failed"
    assert body["receipt"]["error"] == {"code": "OOM", "message": "out of memory"}
    assert Job.objects.get(pk=job["job_id"]).status == JobStatus.PENDING
    missing = miner_api.post(f"/v1/miners/{job['job_id']}/fail", {}, format="json")
    assert_api_error(missing, status=400, code="VALIDATION_ERROR")


def test_a_job_of_the_last_attempt_fails_for_good(client_api: APIClient, miner_api: APIClient) -> None:
    job = submitted(client_api)
    Job.objects.filter(pk=job["job_id"]).update(max_attempts=1)
    registered(miner_api)
    poll(miner_api)

    response = miner_api.post(f"/v1/miners/{job['job_id']}/fail", {"error_code": "BROKEN"}, format="json")

    assert response.json()["state"] == "FAILED"
    document = client_api.get(f"/v1/jobs/{job['job_id']}").json()
    assert document["state"] == "FAILED"
    assert document["error"].startswith("MAX_ATTEMPTS_EXCEEDED") or document["error"].startswith("BROKEN")


def test_native_and_original_miners_of_one_owner_share_names(miner_api: APIClient) -> None:
    native = register_miner(miner_api, name="rig-1")

    original = registered(miner_api, "rig-1")

    assert original["id"] == native["id"]


def test_the_miner_routes_share_the_miner_rate_limit(miner_api: APIClient, settings: Any) -> None:
    settings.RATE_LIMIT_MINER = "2/m"
    registered(miner_api)
    heartbeat(miner_api)

    limited = poll(miner_api)

    assert_api_error(limited, status=429, code="RATE_LIMITED")
    assert "Retry-After" in limited.headers
