"""HTTP contract of the miner's job endpoints: GET /v1/miner/jobs (the claim) and POST /v1/miner/result.

Who may call them at all (401/403) is in accounts/tests/test_api_key_auth.py; leases, retries and late results are
in test_lifecycle.py.
"""

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from aitbc_site.testing import assert_api_error
from conftest import poll, post_result, register_miner, start_job, submit_job
from jobs.models import Job, JobStatus
from jobs.services import handout

POLL = "/v1/miner/jobs"
RESULT = "/v1/miner/result"


def job_ids(assignments: dict[str, Any]) -> list[str]:
    return [assignment["id"] for assignment in assignments["results"]]


# --- GET /v1/miner/jobs --------------------------------------------------------------------------------------------


def test_a_poll_hands_the_miner_a_pending_job_and_starts_it(client_api: APIClient, miner_api: APIClient) -> None:
    job = submit_job(client_api, parameters={"prompt": "hi"}, requirements={"region": "eu"}, priority=2)
    miner = register_miner(miner_api, resources={"region": "eu"})

    response = miner_api.get(POLL, {"miner_id": miner["id"]})

    assert response.status_code == 200, response.content
    [assignment] = response.json()["results"]
    assert set(assignment) >= {
        "id", "job_type", "parameters", "requirements", "priority", "attempt", "lease_expires_at",
    }
    assert assignment["id"] == job["id"]
    assert assignment["job_type"] == "llm_inference"
    assert assignment["parameters"] == {"prompt": "hi"}
    assert assignment["requirements"] == {"region": "eu"}
    assert assignment["priority"] == 2
    assert assignment["attempt"] == 1
    stored = Job.objects.get(pk=job["id"])
    assert stored.status == JobStatus.RUNNING
    assert str(stored.miner_id) == miner["id"]
    assert stored.started_at is not None
    assert stored.attempts == 1


def test_an_empty_poll_answers_an_empty_list(miner_api: APIClient) -> None:
    miner = register_miner(miner_api)

    body = poll(miner_api, miner["id"])

    assert body["results"] == []
    assert body["reason"] == "no_matching_jobs"
    assert body["retry_after"] > 0


def test_a_job_is_handed_to_one_miner_only(
    client_api: APIClient, miner_api: APIClient, other_miner_api: APIClient
) -> None:
    job = submit_job(client_api)
    first = register_miner(miner_api)
    second = register_miner(other_miner_api)

    assert job_ids(poll(miner_api, first["id"])) == [job["id"]]
    assert job_ids(poll(other_miner_api, second["id"])) == []


def test_a_poll_hands_out_up_to_limit_jobs(client_api: APIClient, miner_api: APIClient) -> None:
    for n in range(4):
        submit_job(client_api, parameters={"n": n})
    miner = register_miner(miner_api, max_concurrent_jobs=10)

    assert len(poll(miner_api, miner["id"], limit=3)["results"]) == 3
    assert Job.objects.filter(status=JobStatus.PENDING).count() == 1


def test_it_hands_out_the_highest_priority_first_then_the_oldest(client_api: APIClient, miner_api: APIClient) -> None:
    low = submit_job(client_api, priority=0)
    old_high = submit_job(client_api, priority=7)
    mid = submit_job(client_api, priority=3)
    new_high = submit_job(client_api, priority=7)
    miner = register_miner(miner_api, max_concurrent_jobs=10)

    assert job_ids(poll(miner_api, miner["id"], limit=10)) == [old_high["id"], new_high["id"], mid["id"], low["id"]]


def test_a_miner_never_runs_more_than_max_concurrent_jobs(client_api: APIClient, miner_api: APIClient) -> None:
    for n in range(3):
        submit_job(client_api, parameters={"n": n})
    miner = register_miner(miner_api, max_concurrent_jobs=2)

    first = poll(miner_api, miner["id"], limit=10)
    full = poll(miner_api, miner["id"], limit=10)
    post_result(miner_api, miner["id"], first["results"][0]["id"])
    after_a_result = poll(miner_api, miner["id"], limit=10)

    assert len(first["results"]) == 2
    assert full["results"] == [] and full["reason"] == "at_capacity"
    assert len(after_a_result["results"]) == 1


def test_a_miner_only_gets_job_types_among_its_capabilities(client_api: APIClient, miner_api: APIClient) -> None:
    submit_job(client_api, job_type="image_generation")
    embedding = submit_job(client_api, job_type="embedding")
    miner = register_miner(miner_api, capabilities=["embedding"], max_concurrent_jobs=5)

    assert job_ids(poll(miner_api, miner["id"], limit=5)) == [embedding["id"]]


@pytest.mark.parametrize(
    ("requirements", "resources", "matches"),
    [
        ({}, {}, True),
        ({"min_gpu_memory_gb": 16}, {"gpu_memory_gb": 24}, True),
        ({"min_gpu_memory_gb": 24}, {"gpu_memory_gb": 24}, True),
        ({"min_gpu_memory_gb": 24.5}, {"gpu_memory_gb": 24}, False),
        ({"min_gpu_memory_gb": 8}, {}, False),
        ({"gpu_model": "RTX 4090"}, {"gpu_model": "rtx 4090"}, True),
        ({"gpu_model": "a100"}, {"gpu_model": "A100"}, True),
        ({"gpu_model": "A100"}, {"gpu_model": "H100"}, False),
        ({"gpu_model": "A100"}, {}, False),
        ({"models": ["llama-3-8b"]}, {"models": ["sdxl", "llama-3-8b"]}, True),
        ({"models": ["llama-3-8b", "sdxl"]}, {"models": ["llama-3-8b"]}, False),
        ({"models": ["llama-3-8b"]}, {}, False),
        ({"models": []}, {}, True),
        ({"region": "eu-west"}, {"region": "eu-west"}, True),
        ({"region": "eu-west"}, {"region": "us-east"}, False),
        ({"region": "eu-west"}, {}, False),
        (
            {"min_gpu_memory_gb": 40, "gpu_model": "A100", "models": ["m"], "region": "eu"},
            {"gpu_memory_gb": 80, "gpu_model": "a100", "models": ["m", "n"], "region": "eu"},
            True,
        ),
        (
            {"min_gpu_memory_gb": 40, "gpu_model": "A100", "models": ["m"], "region": "eu"},
            {"gpu_memory_gb": 80, "gpu_model": "a100", "models": ["m", "n"], "region": "us"},
            False,
        ),
    ],
    ids=[
        "no requirements", "more memory", "exactly the memory", "too little memory", "memory unknown",
        "gpu model in another case", "gpu model lowercase", "another gpu model", "gpu model unknown",
        "models contained", "a model missing", "models unknown", "empty models", "same region", "other region",
        "region unknown", "all four met", "all but the region met",
    ],
)
def test_a_miner_only_gets_jobs_whose_requirements_its_resources_meet(
    client_api: APIClient, miner_api: APIClient, requirements: dict[str, Any], resources: dict[str, Any], matches: bool
) -> None:
    job = submit_job(client_api, requirements=requirements)
    miner = register_miner(miner_api, resources=resources)

    handed_out = job_ids(poll(miner_api, miner["id"]))

    assert handed_out == ([job["id"]] if matches else [])
    assert Job.objects.get(pk=job["id"]).status == (JobStatus.RUNNING if matches else JobStatus.PENDING)


def test_a_job_a_miner_cannot_run_does_not_block_the_ones_behind_it(
    client_api: APIClient, miner_api: APIClient
) -> None:
    submit_job(client_api, priority=9, requirements={"models": ["huge-model"]})
    runnable = submit_job(client_api, priority=0)
    miner = register_miner(miner_api, resources={"models": ["small-model"]})

    assert job_ids(poll(miner_api, miner["id"])) == [runnable["id"]]


def test_a_poll_reads_on_past_many_jobs_the_miner_cannot_run(client_api: APIClient, miner_api: APIClient) -> None:
    for _ in range(12):
        submit_job(client_api, priority=9, requirements={"models": ["huge-model"]})
    runnable = [submit_job(client_api, parameters={"n": n}) for n in range(3)]
    miner = register_miner(miner_api, resources={"models": ["small-model"]}, max_concurrent_jobs=5)

    assert job_ids(poll(miner_api, miner["id"], limit=2)) == [job["id"] for job in runnable[:2]]
    assert job_ids(poll(miner_api, miner["id"], limit=2)) == [runnable[2]["id"]]


def test_a_poll_stops_looking_after_the_scan_limit(
    client_api: APIClient, miner_api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handout, "CLAIM_SCAN_LIMIT", 5)
    for _ in range(5):
        submit_job(client_api, priority=9, requirements={"models": ["huge-model"]})
    runnable = submit_job(client_api)
    miner = register_miner(miner_api, resources={"models": ["small-model"]})

    nothing = poll(miner_api, miner["id"])

    assert (nothing["results"], nothing["reason"]) == ([], "no_matching_jobs")
    assert Job.objects.get(pk=runnable["id"]).status == JobStatus.PENDING


@pytest.mark.parametrize(
    ("query", "field"),
    [({}, "miner_id"), ({"limit": "0"}, "limit"), ({"limit": "11"}, "limit"), ({"limit": "one"}, "limit")],
    ids=["no miner_id", "limit 0", "limit 11", "limit not a number"],
)
def test_a_poll_refuses_invalid_query_parameters(miner_api: APIClient, query: dict[str, str], field: str) -> None:
    miner = register_miner(miner_api)
    if field != "miner_id":
        query = {"miner_id": miner["id"], **query}

    error = assert_api_error(miner_api.get(POLL, query), status=400, code="VALIDATION_ERROR")

    assert field in error["details"], error


def test_a_poll_hands_out_one_job_unless_asked_for_more(client_api: APIClient, miner_api: APIClient) -> None:
    for n in range(3):
        submit_job(client_api, parameters={"n": n})
    miner = register_miner(miner_api, max_concurrent_jobs=5)

    assert len(miner_api.get(POLL, {"miner_id": miner["id"]}).json()["results"]) == 1


def test_a_poll_accepts_a_limit_of_10(client_api: APIClient, miner_api: APIClient) -> None:
    submit_job(client_api)
    miner = register_miner(miner_api)

    assert len(poll(miner_api, miner["id"], limit=10)["results"]) == 1


def test_polling_with_another_principals_miner_is_miner_not_found(
    client_api: APIClient, miner_api: APIClient, other_miner_api: APIClient
) -> None:
    job = submit_job(client_api)
    theirs = register_miner(other_miner_api)

    assert_api_error(miner_api.get(POLL, {"miner_id": theirs["id"]}), status=404, code="MINER_NOT_FOUND")
    assert Job.objects.get(pk=job["id"]).status == JobStatus.PENDING


@pytest.mark.parametrize("miner_id", [str(uuid.uuid4()), "not-a-uuid", "12345"])
def test_polling_with_an_unknown_or_malformed_miner_id_is_miner_not_found(miner_api: APIClient, miner_id: str) -> None:
    assert_api_error(miner_api.get(POLL, {"miner_id": miner_id}), status=404, code="MINER_NOT_FOUND")


# --- POST /v1/miner/result -----------------------------------------------------------------------------------------


def test_posting_a_completed_result_completes_the_job(client_api: APIClient, miner_api: APIClient) -> None:
    job, miner = start_job(client_api, miner_api)

    response = post_result(miner_api, miner["id"], job["id"], result={"text": "42"}, metrics={"tokens": 7})

    assert response.status_code == 200, response.content
    answered = response.json()["job"]
    assert answered["id"] == job["id"]
    assert answered["status"] == "completed"
    assert answered["result"] == {"text": "42"}
    assert answered["completed_at"] is not None
    stored = Job.objects.get(pk=job["id"])
    assert (stored.status, stored.result, stored.error) == (JobStatus.COMPLETED, {"text": "42"}, None)


def test_posting_a_failure_that_cannot_be_retried_fails_the_job(client_api: APIClient, miner_api: APIClient) -> None:
    job, miner = start_job(client_api, miner_api)
    error = {"code": "OUT_OF_MEMORY", "message": "CUDA out of memory"}

    response = post_result(
        miner_api, miner["id"], job["id"], status="failed", result=None, error=error, retryable=False
    )

    assert response.status_code == 200, response.content
    assert response.json()["job"]["status"] == "failed"
    assert response.json()["job"]["error"] == error
    stored = Job.objects.get(pk=job["id"])
    assert (stored.status, stored.error, stored.result) == (JobStatus.FAILED, error, None)


def test_posting_the_same_result_again_answers_the_same(client_api: APIClient, miner_api: APIClient) -> None:
    job, miner = start_job(client_api, miner_api)
    first = post_result(miner_api, miner["id"], job["id"], result={"text": "42"}, metrics={"seconds": 1})

    again = post_result(miner_api, miner["id"], job["id"], result={"text": "42"}, metrics={"seconds": 9})

    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert Job.objects.get(pk=job["id"]).events.filter(to_status=JobStatus.COMPLETED).count() == 1


def test_a_different_result_for_a_finished_job_is_invalid_job_state(
    client_api: APIClient, miner_api: APIClient
) -> None:
    job, miner = start_job(client_api, miner_api)
    post_result(miner_api, miner["id"], job["id"], result={"text": "42"})

    changed = post_result(miner_api, miner["id"], job["id"], result={"text": "43"})
    failed = post_result(
        miner_api, miner["id"], job["id"], status="failed", result=None, error={"code": "X", "message": "late"}
    )

    assert_api_error(changed, status=409, code="INVALID_JOB_STATE")
    assert_api_error(failed, status=409, code="INVALID_JOB_STATE")
    assert Job.objects.get(pk=job["id"]).result == {"text": "42"}


def test_a_result_for_a_job_the_miner_was_never_handed_is_job_not_found(
    client_api: APIClient, miner_api: APIClient
) -> None:
    job = submit_job(client_api)
    miner = register_miner(miner_api)

    never_handed = assert_api_error(post_result(miner_api, miner["id"], job["id"]), status=404, code="JOB_NOT_FOUND")
    unknown = assert_api_error(post_result(miner_api, miner["id"], str(uuid.uuid4())), status=404, code="JOB_NOT_FOUND")

    assert never_handed == unknown, "a miner must not tell a job it never held from one that does not exist"
    assert Job.objects.get(pk=job["id"]).status == JobStatus.PENDING


def test_a_result_for_a_job_another_miner_holds_is_job_not_found(
    client_api: APIClient, miner_api: APIClient, other_miner_api: APIClient
) -> None:
    job, holder = start_job(client_api, miner_api)
    other = register_miner(other_miner_api)
    own_second_miner = register_miner(miner_api)

    assert_api_error(post_result(other_miner_api, other["id"], job["id"]), status=404, code="JOB_NOT_FOUND")
    assert_api_error(post_result(miner_api, own_second_miner["id"], job["id"]), status=404, code="JOB_NOT_FOUND")
    stored = Job.objects.get(pk=job["id"])
    assert (stored.status, str(stored.miner_id)) == (JobStatus.RUNNING, holder["id"])


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_a_result_for_an_unknown_or_malformed_job_id_is_job_not_found(miner_api: APIClient, job_id: str) -> None:
    miner = register_miner(miner_api)

    assert_api_error(post_result(miner_api, miner["id"], job_id), status=404, code="JOB_NOT_FOUND")


def test_a_result_under_another_principals_miner_is_miner_not_found(
    client_api: APIClient, miner_api: APIClient, other_miner_api: APIClient
) -> None:
    job, holder = start_job(client_api, miner_api)

    response = post_result(other_miner_api, holder["id"], job["id"])

    assert_api_error(response, status=404, code="MINER_NOT_FOUND")
    assert Job.objects.get(pk=job["id"]).status == JobStatus.RUNNING


@pytest.mark.parametrize("miner_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_a_result_under_an_unknown_or_malformed_miner_id_is_miner_not_found(
    client_api: APIClient, miner_api: APIClient, miner_id: str
) -> None:
    job, _ = start_job(client_api, miner_api)

    assert_api_error(post_result(miner_api, miner_id, job["id"]), status=404, code="MINER_NOT_FOUND")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"result": None}, "result"),
        ({"error": {"code": "X", "message": "both"}}, "error"),
        ({"status": "failed", "result": None}, "error"),
        ({"status": "failed", "result": None, "error": {"code": "X"}}, "error"),
        ({"status": "failed", "error": {"code": "X", "message": "both"}}, "result"),
        ({"status": "running"}, "status"),
        ({"result": "text"}, "result"),
        ({"metrics": [1, 2]}, "metrics"),
        ({"receipt": "forged"}, "receipt"),
    ],
    ids=[
        "completed without result", "completed with an error", "failed without error", "error without message",
        "failed with a result", "status not final", "result not an object", "metrics not an object", "unknown field",
    ],
)
def test_a_result_body_is_validated(
    client_api: APIClient, miner_api: APIClient, overrides: dict[str, Any], field: str
) -> None:
    job, miner = start_job(client_api, miner_api)

    error = assert_api_error(
        post_result(miner_api, miner["id"], job["id"], **overrides), status=400, code="VALIDATION_ERROR"
    )

    assert field in error["details"], error
    assert Job.objects.get(pk=job["id"]).status == JobStatus.RUNNING


def test_a_result_needs_miner_id_and_job_id(miner_api: APIClient) -> None:
    response = miner_api.post(RESULT, {"status": "completed", "result": {}}, format="json")

    error = assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert {"miner_id", "job_id"} <= set(error["details"]), error
