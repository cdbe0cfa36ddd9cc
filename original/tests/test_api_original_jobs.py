"""The original dialect's client routes: /v1/jobs…, over the same jobs as /v1/client/jobs."""

import uuid

import pytest
from rest_framework.test import APIClient

from aitbc_site.testing import assert_api_error
from conftest import submit_job
from jobs.models import Job, JobStatus
from original.tests.helpers import post_result, submit, submitted, taken


def test_a_job_submitted_with_an_original_type_is_stored_as_ours_and_reads_back_as_sent(
    client_api: APIClient,
) -> None:
    payload = {"type": "text-generation", "prompt": "hi", "parameters": {"max_tokens": 5}}

    response = submit(client_api, payload=payload, ttl_seconds=600)

    assert response.status_code == 201, response.content
    body = response.json()
    stored = Job.objects.get(pk=body["job_id"])
    assert stored.job_type == "llm_inference"
    assert stored.parameters == {"prompt": "hi", "parameters": {"max_tokens": 5}}
    assert (stored.expires_at - stored.created_at).total_seconds() == 600
    assert body["state"] == "QUEUED"
    assert body["payload"] == payload
    assert body["assigned_miner_id"] is None
    assert body["result"] is None and body["error"] is None
    assert client_api.get(f"/v1/jobs/{body['job_id']}").json()["payload"] == payload


@pytest.mark.parametrize(
    ("original", "ours"),
    [
        ("inference", "llm_inference"),
        ("training", "fine_tuning"),
        ("image", "image_generation"),
        ("image-generation", "image_generation"),
        ("embedding", "embedding"),
        ("embeddings", "embedding"),
        ("transcription", "audio_transcription"),
        ("llm_inference", "llm_inference"),
    ],
)
def test_every_original_type_name_maps_to_one_of_ours(client_api: APIClient, original: str, ours: str) -> None:
    body = submitted(client_api, payload={"type": original})

    assert Job.objects.get(pk=body["job_id"]).job_type == ours
    assert body["payload"] == {"type": original}


def test_an_unknown_type_is_refused_with_the_names_this_server_accepts(client_api: APIClient) -> None:
    error = assert_api_error(submit(client_api, payload={"type": "mining"}), status=400, code="INVALID_JOB_TYPE")

    assert error["details"]["unsupported"] == ["mining"]
    assert {"inference", "training", "embedding", "llm_inference"} <= set(error["details"]["supported"])
    assert not Job.objects.exists()


def test_constraints_become_requirements_and_read_back(client_api: APIClient) -> None:
    constraints = {"gpu": "RTX 4090", "min_vram_gb": 20, "models": ["llama3"], "region": "eu"}

    body = submitted(client_api, constraints=constraints)

    stored = Job.objects.get(pk=body["job_id"])
    assert stored.requirements == {
        "gpu_model": "RTX 4090",
        "min_gpu_memory_gb": 20,
        "models": ["llama3"],
        "region": "eu",
    }
    assert body["constraints"] == constraints


def test_a_max_price_below_the_price_is_refused(client_api: APIClient) -> None:
    response = submit(client_api, constraints={"max_price": "0.00000001"})

    assert_api_error(response, status=400, code="PRICE_ABOVE_MAX")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ttl_seconds": 900}, "payload"),
        ({"payload": {"prompt": "no type"}}, "payload"),
        ({"payload": {"type": 5}}, "payload"),
        ({"payload": "inference"}, "payload"),
        ({"payload": {"type": "inference"}, "ttl_seconds": 1}, "ttl_seconds"),
        ({"payload": {"type": "inference"}, "constraints": {"gpus": "x"}}, "constraints"),
        ({"payload": {"type": "inference"}, "priority": 1}, "priority"),
    ],
)
def test_a_malformed_submission_is_a_validation_error_naming_the_field(
    client_api: APIClient, body: dict, field: str
) -> None:
    error = assert_api_error(client_api.post("/v1/jobs", body, format="json"), status=400, code="VALIDATION_ERROR")

    assert field in error["details"], error


def test_the_same_idempotency_key_returns_the_first_job(client_api: APIClient) -> None:
    body = {"payload": {"type": "inference", "prompt": "once"}}
    first = client_api.post("/v1/jobs", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = client_api.post("/v1/jobs", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    other = client_api.post("/v1/jobs", {"payload": {"type": "inference"}}, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["job_id"] == first.json()["job_id"]
    assert_api_error(other, status=409, code="IDEMPOTENCY_KEY_REUSED")


def test_the_list_shows_the_callers_jobs_of_both_dialects_as_items(
    client_api: APIClient, other_client_api: APIClient
) -> None:
    mine = submitted(client_api)
    native = submit_job(client_api, job_type="embedding", parameters={"input": "x"})
    submitted(other_client_api)

    response = client_api.get("/v1/jobs", {"limit": 1})

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"items", "next"}
    assert [item["job_id"] for item in body["items"]] == [native["id"]]
    assert body["items"][0]["payload"] == {"type": "embedding", "input": "x"}
    following = client_api.get(body["next"]).json()
    assert [item["job_id"] for item in following["items"]] == [mine["job_id"]]
    assert following["next"] is None


def test_a_list_with_an_unknown_parameter_or_bad_cursor_is_refused(client_api: APIClient) -> None:
    assert_api_error(client_api.get("/v1/jobs", {"state": "QUEUED"}), status=400, code="VALIDATION_ERROR")
    assert_api_error(client_api.get("/v1/jobs", {"cursor": "junk"}), status=400, code="INVALID_CURSOR")
    assert_api_error(client_api.get("/v1/jobs", {"limit": 0}), status=400, code="VALIDATION_ERROR")


def test_a_running_job_names_its_miner_by_name(client_api: APIClient, miner_api: APIClient) -> None:
    job = taken(client_api, miner_api)

    body = client_api.get(f"/v1/jobs/{job['job_id']}").json()

    assert body["state"] == "RUNNING"
    assert body["assigned_miner_id"] == "cli-miner"


def test_someone_elses_job_and_a_malformed_id_are_not_found(client_api: APIClient, other_client_api: APIClient) -> None:
    job = submitted(client_api)

    for path in ["", "/result", "/receipt", "/receipts"]:
        assert_api_error(other_client_api.get(f"/v1/jobs/{job['job_id']}{path}"), status=404, code="JOB_NOT_FOUND")
    assert_api_error(other_client_api.post(f"/v1/jobs/{job['job_id']}/cancel"), status=404, code="JOB_NOT_FOUND")
    assert_api_error(client_api.get("/v1/jobs/not-a-uuid"), status=404, code="JOB_NOT_FOUND")
    assert_api_error(client_api.get(f"/v1/jobs/{uuid.uuid4()}"), status=404, code="JOB_NOT_FOUND")


def test_a_job_is_cancelled_with_an_empty_post_and_again_harmlessly(client_api: APIClient) -> None:
    job = submitted(client_api)

    first = client_api.post(f"/v1/jobs/{job['job_id']}/cancel")
    again = client_api.post(f"/v1/jobs/{job['job_id']}/cancel")

    assert first.status_code == 200, first.content
    assert first.json()["state"] == again.json()["state"] == "CANCELED"
    assert Job.objects.get(pk=job["job_id"]).status == JobStatus.CANCELLED


def test_cancelling_a_completed_job_is_a_conflict(client_api: APIClient, miner_api: APIClient) -> None:
    job = taken(client_api, miner_api)
    assert post_result(miner_api, job["job_id"]).status_code == 200

    assert_api_error(client_api.post(f"/v1/jobs/{job['job_id']}/cancel"), status=409, code="INVALID_JOB_STATE")


def test_the_result_is_too_early_until_the_job_finishes_then_comes_with_its_receipt(
    client_api: APIClient, miner_api: APIClient
) -> None:
    job = taken(client_api, miner_api)

    early = assert_api_error(client_api.get(f"/v1/jobs/{job['job_id']}/result"), status=425, code="JOB_NOT_FINISHED")
    assert early["details"] == {"state": "RUNNING"}
    assert_api_error(client_api.get(f"/v1/jobs/{job['job_id']}/receipt"), status=404, code="RECEIPT_NOT_FOUND")
    assert post_result(miner_api, job["job_id"]).status_code == 200

    body = client_api.get(f"/v1/jobs/{job['job_id']}/result").json()
    assert body["result"] == {"status": "completed", "output": "done"}
    assert body["receipt"]["job_id"] == job["job_id"]
    assert body["receipt"]["status"] == "completed"
    assert client_api.get(f"/v1/jobs/{job['job_id']}/receipt").json() == body["receipt"]
    assert client_api.get(f"/v1/jobs/{job['job_id']}/receipts").json() == {"items": [body["receipt"]]}
    verified = client_api.post("/v1/receipts/verify", body["receipt"], format="json").json()
    assert verified["valid"] is True
    document = client_api.get(f"/v1/jobs/{job['job_id']}").json()
    assert document["state"] == "COMPLETED" and document["completed_at"] is not None


def test_a_cancelled_job_has_a_result_of_none_and_no_receipt(client_api: APIClient) -> None:
    job = submitted(client_api)
    client_api.post(f"/v1/jobs/{job['job_id']}/cancel")

    assert client_api.get(f"/v1/jobs/{job['job_id']}/result").json() == {"result": None, "receipt": None}
    assert client_api.get(f"/v1/jobs/{job['job_id']}/receipts").json() == {"items": []}


def test_client_routes_need_a_client_key(anonymous_api: APIClient, miner_api: APIClient) -> None:
    assert_api_error(anonymous_api.get("/v1/jobs"), status=401, code="AUTHENTICATION_REQUIRED")
    assert_api_error(submit(anonymous_api), status=401, code="AUTHENTICATION_REQUIRED")
    assert_api_error(submit(miner_api), status=403, code="PERMISSION_DENIED")
