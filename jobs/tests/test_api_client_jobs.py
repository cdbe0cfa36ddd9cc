"""HTTP contract of the client endpoints: /v1/client/jobs, …/{id}, …/{id}/status, …/{id}/cancel, …/{id}/events.

Who may call them at all (401/403 for every endpoint) is in accounts/tests/test_api_key_auth.py.
"""

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKeyRole
from aitbc_site.testing import assert_api_error
from conftest import api_key_of, issue_api, post_result, register_miner, start_job, submit_job
from jobs.models import Job, JobStatus

JOBS = "/v1/client/jobs"

# The job document of the foundation issue, with the lifecycle fields of issue 3.
JOB_FIELDS = {
    "id", "client_id", "job_type", "parameters", "requirements", "priority", "status", "miner_id", "attempts",
    "result", "error", "created_at", "updated_at", "started_at", "completed_at",
    "progress", "max_attempts", "expires_at", "lease_expires_at",
}


def owner_id(api: APIClient) -> str:
    return str(api_key_of(api).user_id)


def post_raw(api: APIClient, body: str, **headers: str) -> Any:
    return api.post(JOBS, body, content_type="application/json", headers=headers)


# --- POST /v1/client/jobs ------------------------------------------------------------------------------------------


def test_submitting_a_job_stores_it_pending_for_the_callers_user(client_api: APIClient) -> None:
    response = client_api.post(JOBS, {"job_type": "embedding", "parameters": {"text": "hi"}}, format="json")

    assert response.status_code == 201, response.content
    job = response.json()
    assert set(job) >= JOB_FIELDS
    assert job["job_type"] == "embedding"
    assert job["parameters"] == {"text": "hi"}
    assert job["status"] == "pending"
    assert job["requirements"] == {}
    assert job["priority"] == 0
    assert job["attempts"] == 0
    for unset in ("miner_id", "result", "error", "started_at", "completed_at"):
        assert job[unset] is None, unset
    stored = Job.objects.get(pk=job["id"])
    assert stored.status == JobStatus.PENDING
    assert str(stored.client_id) == job["client_id"] == owner_id(client_api)


def test_the_job_records_its_requirements_and_priority(client_api: APIClient) -> None:
    requirements = {"min_gpu_memory_gb": 24, "gpu_model": "RTX 4090", "models": ["llama-3-8b"], "region": "eu-west"}

    job = submit_job(client_api, requirements=requirements, priority=9)

    assert job["requirements"] == requirements
    assert job["priority"] == 9
    assert Job.objects.get(pk=job["id"]).requirements == requirements


def test_it_refuses_a_job_type_outside_job_types_with_invalid_job_type(client_api: APIClient) -> None:
    response = client_api.post(JOBS, {"job_type": "crypto_mining", "parameters": {}}, format="json")

    assert_api_error(response, status=400, code="INVALID_JOB_TYPE")
    assert not Job.objects.exists()


def test_the_job_types_come_from_the_job_types_setting(client_api: APIClient, settings: Any) -> None:
    settings.JOB_TYPES = ["embedding"]

    assert_api_error(
        client_api.post(JOBS, {"job_type": "llm_inference", "parameters": {}}, format="json"),
        status=400,
        code="INVALID_JOB_TYPE",
    )
    assert client_api.post(JOBS, {"job_type": "embedding", "parameters": {}}, format="json").status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"parameters": {}}, "job_type"),
        ({"job_type": "llm_inference"}, "parameters"),
        ({"job_type": "llm_inference", "parameters": ["a list"]}, "parameters"),
        ({"job_type": "llm_inference", "parameters": {}, "priority": 10}, "priority"),
        ({"job_type": "llm_inference", "parameters": {}, "priority": -1}, "priority"),
        ({"job_type": "llm_inference", "parameters": {}, "priority": "high"}, "priority"),
        ({"job_type": "llm_inference", "parameters": {}, "colour": "blue"}, "colour"),
        ({"job_type": "llm_inference", "parameters": {}, "requirements": ["gpu"]}, "requirements"),
        ({"job_type": "llm_inference", "parameters": {}, "requirements": None}, "requirements"),
    ],
    ids=[
        "no job_type", "no parameters", "parameters not an object", "priority above 9", "negative priority",
        "priority not a number", "unknown field", "requirements not an object", "requirements null",
    ],
)
def test_it_refuses_an_invalid_body_with_the_field_in_the_details(
    client_api: APIClient, body: dict[str, Any], field: str
) -> None:
    error = assert_api_error(client_api.post(JOBS, body, format="json"), status=400, code="VALIDATION_ERROR")

    assert field in error["details"], error
    assert not Job.objects.exists()


def test_it_refuses_a_body_that_is_not_a_json_object(client_api: APIClient) -> None:
    assert_api_error(post_raw(client_api, '["llm_inference"]'), status=400, code="VALIDATION_ERROR")


@pytest.mark.parametrize(
    "requirements",
    [
        {"min_gpu_memory_gb": 8, "gpu_cores": 1000},
        {"cuda": "12.1"},
        {"capabilities": ["llm_inference"]},
        {"min_gpu_memory_gb": 0},
        {"min_gpu_memory_gb": -4},
        {"min_gpu_memory_gb": "lots"},
        {"models": "llama-3-8b"},
        {"models": [["nested"]]},
        {"region": ["eu", "us"]},
    ],
    ids=[
        "an unknown key beside a known one", "an unknown key", "capabilities", "zero memory", "negative memory",
        "memory not a number", "models not a list", "models not strings", "region not a string",
    ],
)
def test_requirements_may_hold_only_the_four_documented_keys_with_valid_values(
    client_api: APIClient, requirements: dict[str, Any]
) -> None:
    response = client_api.post(
        JOBS, {"job_type": "llm_inference", "parameters": {}, "requirements": requirements}, format="json"
    )

    error = assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert "requirements" in error["details"], error
    assert not Job.objects.exists()


def test_fractional_gpu_memory_above_zero_is_a_valid_requirement(client_api: APIClient) -> None:
    job = submit_job(client_api, requirements={"min_gpu_memory_gb": 0.5})

    assert job["requirements"] == {"min_gpu_memory_gb": 0.5}


# --- Idempotency-Key ---------------------------------------------------------------------------------------------


def test_resending_the_same_body_with_the_same_idempotency_key_returns_the_original_job(client_api: APIClient) -> None:
    body = {"job_type": "llm_inference", "parameters": {"prompt": "hello"}, "priority": 3}
    first = client_api.post(JOBS, body, format="json", headers={"Idempotency-Key": "order-42"})
    again = client_api.post(JOBS, body, format="json", headers={"Idempotency-Key": "order-42"})

    assert first.status_code == 201, first.content
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]
    assert Job.objects.count() == 1


def test_the_idempotent_body_is_compared_as_parsed_json_so_key_order_and_spacing_do_not_matter(
    client_api: APIClient,
) -> None:
    first = post_raw(
        client_api,
        '{"job_type": "llm_inference", "parameters": {"a": 1, "b": [1, 2]}, "priority": 1}',
        **{"Idempotency-Key": "k-1"},
    )
    again = post_raw(
        client_api,
        '{"priority":1,"parameters":{"b":[1,2],"a":1},"job_type":"llm_inference"}',
        **{"Idempotency-Key": "k-1"},
    )

    assert first.status_code == 201, first.content
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]
    assert Job.objects.count() == 1


def test_the_same_idempotency_key_with_a_different_body_is_a_conflict(client_api: APIClient) -> None:
    submit = {"job_type": "llm_inference", "parameters": {"prompt": "hello"}}
    client_api.post(JOBS, submit, format="json", headers={"Idempotency-Key": "k-2"})

    response = client_api.post(
        JOBS, {**submit, "parameters": {"prompt": "goodbye"}}, format="json", headers={"Idempotency-Key": "k-2"}
    )

    assert_api_error(response, status=409, code="IDEMPOTENCY_KEY_REUSED")
    assert Job.objects.count() == 1


def test_idempotency_keys_are_scoped_by_user(client_api: APIClient, other_client_api: APIClient) -> None:
    body = {"job_type": "llm_inference", "parameters": {"prompt": "hello"}}
    mine = client_api.post(JOBS, body, format="json", headers={"Idempotency-Key": "shared"})
    theirs = other_client_api.post(JOBS, body, format="json", headers={"Idempotency-Key": "shared"})

    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["client_id"] == owner_id(other_client_api)


def test_another_key_of_the_same_user_replays_the_users_idempotent_request(client_api: APIClient) -> None:
    body = {"job_type": "llm_inference", "parameters": {"prompt": "hello"}}
    first = client_api.post(JOBS, body, format="json", headers={"Idempotency-Key": "k-3"})
    same_user = issue_api(ApiKeyRole.CLIENT, user=api_key_of(client_api).user)

    again = same_user.post(JOBS, body, format="json", headers={"Idempotency-Key": "k-3"})

    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]


def test_an_idempotency_key_older_than_24_hours_creates_a_new_job(client_api: APIClient) -> None:
    body = {"job_type": "llm_inference", "parameters": {"prompt": "hello"}}
    first = client_api.post(JOBS, body, format="json", headers={"Idempotency-Key": "k-4"}).json()
    Job.objects.filter(pk=first["id"]).update(created_at=timezone.now() - timedelta(hours=25))

    again = client_api.post(JOBS, body, format="json", headers={"Idempotency-Key": "k-4"})

    assert again.status_code == 201, again.content
    assert again.json()["id"] != first["id"]
    assert Job.objects.count() == 2


def test_without_an_idempotency_key_every_submission_is_a_new_job(client_api: APIClient) -> None:
    submit_job(client_api)
    submit_job(client_api)

    assert Job.objects.count() == 2


# --- GET /v1/client/jobs/{id} and /status ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/status"])
def test_the_client_reads_its_job(client_api: APIClient, suffix: str) -> None:
    job = submit_job(client_api, priority=4)

    response = client_api.get(f"{JOBS}/{job['id']}{suffix}")

    assert response.status_code == 200, response.content
    assert response.json() == job


@pytest.mark.parametrize("suffix", ["", "/status"])
def test_the_read_shows_the_progress_of_the_job(client_api: APIClient, miner_api: APIClient, suffix: str) -> None:
    job, miner = start_job(client_api, miner_api)

    running = client_api.get(f"{JOBS}/{job['id']}{suffix}").json()
    assert running["status"] == "running"
    assert running["miner_id"] == miner["id"]
    assert running["attempts"] == 1
    assert running["started_at"] is not None

    post_result(miner_api, miner["id"], job["id"], result={"text": "done"})
    completed = client_api.get(f"{JOBS}/{job['id']}{suffix}").json()
    assert completed["status"] == "completed"
    assert completed["result"] == {"text": "done"}
    assert completed["completed_at"] is not None


@pytest.mark.parametrize("suffix", ["", "/status", "/events"])
def test_another_clients_job_is_not_found(client_api: APIClient, other_client_api: APIClient, suffix: str) -> None:
    job = submit_job(client_api)

    assert_api_error(other_client_api.get(f"{JOBS}/{job['id']}{suffix}"), status=404, code="JOB_NOT_FOUND")


@pytest.mark.parametrize("suffix", ["", "/status", "/events"])
@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid", "12345", "a" * 40])
def test_an_unknown_or_malformed_job_id_is_not_found(client_api: APIClient, job_id: str, suffix: str) -> None:
    assert_api_error(client_api.get(f"{JOBS}/{job_id}{suffix}"), status=404, code="JOB_NOT_FOUND")


def test_the_user_not_the_key_owns_the_job(client_api: APIClient) -> None:
    job = submit_job(client_api)
    user = api_key_of(client_api).user
    second_key = issue_api(ApiKeyRole.CLIENT, user=user)

    response = second_key.get(f"{JOBS}/{job['id']}")

    assert response.status_code == 200, response.content
    assert response.json()["client_id"] == str(user.pk) != str(api_key_of(client_api).pk)


# --- GET /v1/client/jobs -----------------------------------------------------------------------------------------


def test_the_list_holds_only_the_callers_jobs_newest_first(client_api: APIClient, other_client_api: APIClient) -> None:
    first, second, third = (submit_job(client_api, parameters={"n": n}) for n in range(3))
    submit_job(other_client_api)

    response = client_api.get(JOBS)

    assert response.status_code == 200, response.content
    page = response.json()
    assert set(page) == {"results", "next", "previous"}
    assert [job["id"] for job in page["results"]] == [third["id"], second["id"], first["id"]]
    assert page["results"][0] == third
    assert page["next"] is None and page["previous"] is None


def test_an_empty_list_has_the_list_shape(client_api: APIClient) -> None:
    assert client_api.get(JOBS).json() == {"results": [], "next": None, "previous": None}


def test_the_list_filters_by_status(client_api: APIClient, miner_api: APIClient) -> None:
    done, _ = start_job(client_api, miner_api)
    miner_id = Job.objects.get(pk=done["id"]).miner_id
    post_result(miner_api, str(miner_id), done["id"])
    waiting = submit_job(client_api)

    completed = client_api.get(JOBS, {"status": "completed"}).json()["results"]
    pending = client_api.get(JOBS, {"status": "pending"}).json()["results"]
    failed = client_api.get(JOBS, {"status": "failed"}).json()["results"]

    assert [job["id"] for job in completed] == [done["id"]]
    assert [job["id"] for job in pending] == [waiting["id"]]
    assert failed == []


def test_the_list_filters_by_job_type(client_api: APIClient) -> None:
    embedding = submit_job(client_api, job_type="embedding")
    submit_job(client_api, job_type="llm_inference")

    results = client_api.get(JOBS, {"job_type": "embedding"}).json()["results"]

    assert [job["id"] for job in results] == [embedding["id"]]


def test_the_list_combines_filters(client_api: APIClient) -> None:
    submit_job(client_api, job_type="embedding")

    assert client_api.get(JOBS, {"job_type": "embedding", "status": "completed"}).json()["results"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "finished"}, "status"),
        ({"job_type": "crypto_mining"}, "job_type"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "ten"}, "limit"),
    ],
)
def test_the_list_refuses_invalid_query_parameters(client_api: APIClient, query: dict[str, str], field: str) -> None:
    submit_job(client_api)

    error = assert_api_error(client_api.get(JOBS, query), status=400, code="VALIDATION_ERROR")

    assert field in error["details"], error


@pytest.mark.parametrize("limit", [1, 100])
def test_the_list_accepts_limits_from_1_to_100(client_api: APIClient, limit: int) -> None:
    submit_job(client_api)
    submit_job(client_api)

    results = client_api.get(JOBS, {"limit": limit}).json()["results"]

    assert len(results) == min(limit, 2)


def test_the_list_pages_20_jobs_by_default(client_api: APIClient) -> None:
    for n in range(21):
        submit_job(client_api, parameters={"n": n})

    page = client_api.get(JOBS).json()

    assert len(page["results"]) == 20
    assert page["next"] is not None


def test_the_list_is_cursor_paginated_forwards_and_backwards(client_api: APIClient) -> None:
    jobs = [submit_job(client_api, parameters={"n": n}) for n in range(5)]
    newest_first = [job["id"] for job in reversed(jobs)]

    first = client_api.get(JOBS, {"limit": 2}).json()
    second = client_api.get(first["next"]).json()
    third = client_api.get(second["next"]).json()
    back = client_api.get(third["previous"]).json()

    assert [job["id"] for job in first["results"]] == newest_first[:2]
    assert first["previous"] is None
    assert [job["id"] for job in second["results"]] == newest_first[2:4]
    assert [job["id"] for job in third["results"]] == newest_first[4:]
    assert third["next"] is None
    assert [job["id"] for job in back["results"]] == newest_first[2:4]


def test_the_next_page_keeps_the_filters(client_api: APIClient) -> None:
    embeddings = [submit_job(client_api, job_type="embedding", parameters={"n": n}) for n in range(3)]
    submit_job(client_api, job_type="llm_inference")

    first = client_api.get(JOBS, {"job_type": "embedding", "limit": 2}).json()
    second = client_api.get(first["next"]).json()

    assert [job["id"] for job in second["results"]] == [embeddings[0]["id"]]
    assert second["next"] is None


# --- POST /v1/client/jobs/{id}/cancel ----------------------------------------------------------------------------


def test_cancelling_a_pending_job_answers_the_cancelled_job(client_api: APIClient) -> None:
    job = submit_job(client_api)

    response = client_api.post(f"{JOBS}/{job['id']}/cancel")

    assert response.status_code == 200, response.content
    assert response.json()["id"] == job["id"]
    assert response.json()["status"] == "cancelled"
    assert Job.objects.get(pk=job["id"]).status == JobStatus.CANCELLED


def test_cancelling_a_running_job_stops_its_miner_from_completing_it(
    client_api: APIClient, miner_api: APIClient
) -> None:
    job, miner = start_job(client_api, miner_api)

    response = client_api.post(f"{JOBS}/{job['id']}/cancel")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert_api_error(post_result(miner_api, miner["id"], job["id"]), status=409, code="JOB_CANCELLED")
    assert Job.objects.get(pk=job["id"]).status == JobStatus.CANCELLED


def test_cancelling_a_cancelled_job_again_answers_200(client_api: APIClient) -> None:
    job = submit_job(client_api)
    client_api.post(f"{JOBS}/{job['id']}/cancel")

    response = client_api.post(f"{JOBS}/{job['id']}/cancel")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert Job.objects.get(pk=job["id"]).events.filter(to_status=JobStatus.CANCELLED).count() == 1


@pytest.mark.parametrize(
    ("status", "result_body"),
    [
        ("completed", {}),
        ("failed", {"status": "failed", "result": None, "error": {"code": "OOM", "message": "no"}, "retryable": False}),
    ],
    ids=["completed", "failed"],
)
def test_a_finished_job_cannot_be_cancelled(
    client_api: APIClient, miner_api: APIClient, status: str, result_body: dict[str, Any]
) -> None:
    job, miner = start_job(client_api, miner_api)
    assert post_result(miner_api, miner["id"], job["id"], **result_body).status_code == 200

    error = assert_api_error(client_api.post(f"{JOBS}/{job['id']}/cancel"), status=409, code="INVALID_JOB_STATE")

    assert Job.objects.get(pk=job["id"]).status == status, error


def test_an_expired_job_cannot_be_cancelled(client_api: APIClient) -> None:
    job = submit_job(client_api)
    Job.objects.filter(pk=job["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert_api_error(client_api.post(f"{JOBS}/{job['id']}/cancel"), status=409, code="INVALID_JOB_STATE")


def test_another_clients_job_cannot_be_cancelled(client_api: APIClient, other_client_api: APIClient) -> None:
    job = submit_job(client_api)

    assert_api_error(other_client_api.post(f"{JOBS}/{job['id']}/cancel"), status=404, code="JOB_NOT_FOUND")
    assert Job.objects.get(pk=job["id"]).status == JobStatus.PENDING


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_cancelling_an_unknown_or_malformed_job_id_is_not_found(client_api: APIClient, job_id: str) -> None:
    assert_api_error(client_api.post(f"{JOBS}/{job_id}/cancel"), status=404, code="JOB_NOT_FOUND")


# --- GET /v1/client/jobs/{id}/events -----------------------------------------------------------------------------


def test_the_events_of_a_job_are_its_status_changes_oldest_first(client_api: APIClient, miner_api: APIClient) -> None:
    job, miner = start_job(client_api, miner_api)
    post_result(miner_api, miner["id"], job["id"])

    response = client_api.get(f"{JOBS}/{job['id']}/events")

    assert response.status_code == 200, response.content
    page = response.json()
    assert set(page) == {"results", "next", "previous"}
    assert [set(event) for event in page["results"]] == [{"position", "at", "from", "to", "actor", "reason"}] * 2
    assert [(event["from"], event["to"], event["actor"]) for event in page["results"]] == [
        ("pending", "running", f"miner:{miner['id']}"),
        ("running", "completed", f"miner:{miner['id']}"),
    ]
    assert datetime.fromisoformat(page["results"][0]["at"]) <= datetime.fromisoformat(page["results"][1]["at"])


def test_a_new_job_has_no_events_yet(client_api: APIClient) -> None:
    job = submit_job(client_api)

    assert client_api.get(f"{JOBS}/{job['id']}/events").json() == {"results": [], "next": None, "previous": None}


def test_a_cancellation_is_an_event_by_the_client(client_api: APIClient) -> None:
    job = submit_job(client_api)
    client_api.post(f"{JOBS}/{job['id']}/cancel")

    events = client_api.get(f"{JOBS}/{job['id']}/events").json()["results"]

    assert [(event["from"], event["to"], event["actor"]) for event in events] == [("pending", "cancelled", "client")]


def test_the_events_are_cursor_paginated(client_api: APIClient, miner_api: APIClient) -> None:
    job, miner = start_job(client_api, miner_api)
    post_result(miner_api, miner["id"], job["id"])

    first = client_api.get(f"{JOBS}/{job['id']}/events", {"limit": 1}).json()
    second = client_api.get(first["next"]).json()

    assert [event["to"] for event in first["results"]] == ["running"]
    assert [event["to"] for event in second["results"]] == ["completed"]
    assert second["next"] is None
    assert second["previous"] is not None


@pytest.mark.parametrize("limit", ["0", "101", "many"])
def test_the_events_refuse_a_limit_out_of_range(client_api: APIClient, limit: str) -> None:
    job = submit_job(client_api)

    response = client_api.get(f"{JOBS}/{job['id']}/events", {"limit": limit})

    assert_api_error(response, status=400, code="VALIDATION_ERROR")


# --- one whole cycle, as the client sees it -------------------------------------------------------------------------


def test_a_job_goes_from_submission_to_completed(client_api: APIClient, miner_api: APIClient) -> None:
    job = submit_job(client_api, job_type="embedding", parameters={"text": "hello"})
    miner = register_miner(miner_api)

    assignment = miner_api.get("/v1/miner/jobs", {"miner_id": miner["id"]}).json()["results"][0]
    assert (assignment["id"], assignment["parameters"]) == (job["id"], {"text": "hello"})
    assert post_result(miner_api, miner["id"], job["id"], result={"vector": [0.1, 0.2]}).status_code == 200

    read = client_api.get(f"{JOBS}/{job['id']}").json()
    assert read["status"] == "completed"
    assert read["result"] == {"vector": [0.1, 0.2]}
    assert read["miner_id"] == miner["id"]
    assert read["client_id"] == owner_id(client_api)
