"""HTTP contract of partial output: POST /v1/miner/jobs/{id}/output (the miner holding the job), GET
/v1/client/jobs/{id}/stream (its client), the receipt's `output_hash`, and maintenance deleting old output."""

import base64
import hashlib
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from aitbc_site.testing import assert_api_error, run_concurrently
from conftest import api_with_key, poll, post_result, register_miner, start_job, submit_job
from jobs.models import Job, JobOutputChunk, JobStatus
from jobs.services.maintenance import catch_up_stored_state
from jobs.services.output import delete_kept_output

JOBS = "/v1/client/jobs"


def output_url(job_id: str) -> str:
    return f"/v1/miner/jobs/{job_id}/output"


def post_output(api: APIClient, miner_id: str, job_id: str, *chunks: dict[str, Any], **body: Any) -> Any:
    return api.post(output_url(job_id), {"miner_id": miner_id, "chunks": list(chunks), **body}, format="json")


def text(seq: int, data: str, **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "data": data, **extra}


def b64(seq: int, data: bytes) -> dict[str, Any]:
    return {"seq": seq, "data": base64.b64encode(data).decode(), "encoding": "base64"}


def stream(api: APIClient, job_id: str, **query: Any) -> dict[str, Any]:
    response = api.get(f"{JOBS}/{job_id}/stream", query)
    assert response.status_code == 200, response.content
    return response.json()


def lapse_lease(job_id: str) -> None:
    Job.objects.filter(pk=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


@pytest.fixture
def running(client_api: APIClient, miner_api: APIClient) -> tuple[str, str]:
    """A job running on the miner of `miner_api`: (job id, miner id)."""
    job, miner = start_job(client_api, miner_api)
    return job["id"], miner["id"]


# --- POST /v1/miner/jobs/{id}/output ----------------------------------------------------------------------------


def test_the_holder_posts_chunks_and_they_are_kept_in_order(miner_api: APIClient, running: tuple[str, str]) -> None:
    job_id, miner_id = running

    first = post_output(miner_api, miner_id, job_id, text(0, "Hello, "), text(1, "wor", progress=0.25))
    second = post_output(miner_api, miner_id, job_id, b64(2, b"ld\n"))

    assert first.status_code == 200, first.content
    assert first.json() == {"job_id": job_id, "attempt": 1, "next_seq": 2, "bytes": 10}
    assert second.json() == {"job_id": job_id, "attempt": 1, "next_seq": 3, "bytes": 13}
    kept = JobOutputChunk.objects.filter(job_id=job_id).order_by("id")
    assert [(chunk.attempt, chunk.seq, bytes(chunk.data), chunk.encoding, chunk.size) for chunk in kept] == [
        (1, 0, b"Hello, ", "text", 7), (1, 1, b"wor", "text", 3), (1, 2, b"ld\n", "base64", 3),
    ]
    job = Job.objects.get(pk=job_id)
    assert (job.output_bytes, job.progress) == (13, 0.25)


def test_whitespace_and_binary_bytes_are_kept_exactly(miner_api: APIClient, running: tuple[str, str]) -> None:
    job_id, miner_id = running
    binary = bytes(range(256))

    assert post_output(miner_api, miner_id, job_id, text(0, "  \n\t "), b64(1, binary)).status_code == 200

    assert [bytes(data) for data in JobOutputChunk.objects.order_by("seq").values_list("data", flat=True)] == [
        b"  \n\t ", binary,
    ]


def test_posting_a_chunk_again_with_the_same_data_changes_nothing(
    miner_api: APIClient, running: tuple[str, str]
) -> None:
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, text(0, "a"), text(1, "b")).status_code == 200

    again = post_output(miner_api, miner_id, job_id, text(1, "b"))
    overlapping = post_output(miner_api, miner_id, job_id, text(1, "b"), text(2, "c"))

    assert again.json()["next_seq"] == 2 and again.json()["bytes"] == 2
    assert overlapping.json()["next_seq"] == 3 and overlapping.json()["bytes"] == 3
    assert list(JobOutputChunk.objects.order_by("seq").values_list("seq", flat=True)) == [0, 1, 2]


def test_the_same_bytes_in_the_other_encoding_are_the_same_chunk(
    miner_api: APIClient, running: tuple[str, str]
) -> None:
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, text(0, "hi")).status_code == 200

    assert post_output(miner_api, miner_id, job_id, b64(0, b"hi")).status_code == 200


def test_a_chunk_posted_again_with_other_data_is_a_conflict(miner_api: APIClient, running: tuple[str, str]) -> None:
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, text(0, "a"), text(1, "b")).status_code == 200

    error = assert_api_error(
        post_output(miner_api, miner_id, job_id, text(1, "B"), text(2, "c")), status=409, code="INVALID_JOB_STATE"
    )

    assert error["details"] == {"seq": 1}
    assert JobOutputChunk.objects.count() == 2


def test_a_gap_is_refused_with_the_expected_seq(miner_api: APIClient, running: tuple[str, str]) -> None:
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, text(0, "a")).status_code == 200

    error = assert_api_error(
        post_output(miner_api, miner_id, job_id, text(2, "c")), status=409, code="OUTPUT_OUT_OF_ORDER"
    )

    assert error["details"] == {"expected_seq": 1}
    assert JobOutputChunk.objects.count() == 1


def test_output_past_the_cap_is_refused_and_nothing_of_that_post_is_kept(
    miner_api: APIClient, running: tuple[str, str], settings: Any
) -> None:
    settings.JOB_OUTPUT_MAX_BYTES = 5
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, text(0, "abc")).status_code == 200

    error = assert_api_error(
        post_output(miner_api, miner_id, job_id, text(1, "d"), text(2, "ef")), status=413, code="OUTPUT_TOO_LARGE"
    )

    assert error["details"] == {"max_bytes": 5, "bytes": 3, "posted": 3}
    assert post_output(miner_api, miner_id, job_id, text(1, "de")).json()["bytes"] == 5
    assert Job.objects.get(pk=job_id).output_bytes == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"chunks": [{"seq": 0, "data": "a"}], "extra": 1}, "extra", id="unknown-field"),
        pytest.param({"chunks": [{"seq": 0, "data": "a", "colour": "red"}]}, "chunks", id="unknown-chunk-field"),
        pytest.param({"chunks": [{"seq": 0, "data": "a", "encoding": "hex"}]}, "chunks", id="bad-encoding"),
        pytest.param({"chunks": [{"seq": 0, "data": "not base64!", "encoding": "base64"}]}, "chunks", id="bad-base64"),
        pytest.param({"chunks": [{"seq": -1, "data": "a"}]}, "chunks", id="negative-seq"),
        pytest.param({"chunks": [{"seq": 0, "data": ""}]}, "chunks", id="empty-data"),
        pytest.param({"chunks": [{"seq": 0, "data": "a", "progress": 1.5}]}, "chunks", id="progress-above-1"),
        pytest.param({"chunks": []}, "chunks", id="no-chunks"),
        pytest.param({"chunks": [{"seq": 0, "data": "a"}] * 101}, "chunks", id="too-many-chunks"),
        pytest.param({"chunks": [{"seq": 0, "data": "a"}, {"seq": 2, "data": "b"}]}, "chunks", id="not-consecutive"),
        pytest.param({}, "chunks", id="chunks-missing"),
    ],
)
def test_invalid_output_is_refused(
    miner_api: APIClient, running: tuple[str, str], body: dict[str, Any], field: str
) -> None:
    job_id, miner_id = running

    response = miner_api.post(output_url(job_id), {"miner_id": miner_id, **body}, format="json")

    error = assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert field in error["details"], error
    assert JobOutputChunk.objects.count() == 0


def test_output_needs_a_miner_key(
    anonymous_api: APIClient, client_api: APIClient, running: tuple[str, str]
) -> None:
    job_id, miner_id = running

    assert_api_error(post_output(anonymous_api, miner_id, job_id, text(0, "a")), status=401,
                     code="AUTHENTICATION_REQUIRED")
    assert_api_error(post_output(client_api, miner_id, job_id, text(0, "a")), status=403, code="PERMISSION_DENIED")


def test_another_owners_miner_and_a_job_the_miner_never_held_are_not_found(
    client_api: APIClient, miner_api: APIClient, other_miner_api: APIClient, running: tuple[str, str]
) -> None:
    job_id, miner_id = running
    other_miner = register_miner(other_miner_api)["id"]
    never_held = submit_job(client_api)["id"]

    assert_api_error(post_output(other_miner_api, miner_id, job_id, text(0, "a")), status=404, code="MINER_NOT_FOUND")
    assert_api_error(post_output(other_miner_api, other_miner, job_id, text(0, "a")), status=404,
                     code="JOB_NOT_FOUND")
    assert_api_error(post_output(miner_api, miner_id, never_held, text(0, "a")), status=404, code="JOB_NOT_FOUND")
    assert_api_error(post_output(miner_api, miner_id, "not-a-uuid", text(0, "a")), status=404, code="JOB_NOT_FOUND")
    assert JobOutputChunk.objects.count() == 0


def test_chunks_after_the_lease_lapsed_are_refused(miner_api: APIClient, running: tuple[str, str]) -> None:
    job_id, miner_id = running
    lapse_lease(job_id)

    assert_api_error(post_output(miner_api, miner_id, job_id, text(0, "a")), status=409, code="LEASE_EXPIRED")
    catch_up_stored_state()  # the job goes back to the queue
    assert_api_error(post_output(miner_api, miner_id, job_id, text(0, "a")), status=409, code="LEASE_EXPIRED")
    assert JobOutputChunk.objects.count() == 0


def test_an_earlier_attempts_chunks_never_join_the_next_attempt(
    miner_api: APIClient, other_miner_api: APIClient, running: tuple[str, str]
) -> None:
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, text(0, "first try")).status_code == 200
    lapse_lease(job_id)
    catch_up_stored_state()
    Job.objects.filter(pk=job_id).update(not_before=timezone.now())
    other_miner = register_miner(other_miner_api)["id"]
    assert [job["id"] for job in poll(other_miner_api, other_miner)["results"]] == [job_id]

    late = post_output(miner_api, miner_id, job_id, text(1, " more"))
    fresh = post_output(other_miner_api, other_miner, job_id, text(0, "second"))

    assert_api_error(late, status=409, code="LEASE_EXPIRED")
    assert fresh.json() == {"job_id": job_id, "attempt": 2, "next_seq": 1, "bytes": 15}
    chunks = JobOutputChunk.objects.order_by("id").values_list("attempt", "seq")
    assert list(chunks) == [(1, 0), (2, 0)]


def test_output_of_a_cancelled_job_is_refused(
    client_api: APIClient, miner_api: APIClient, running: tuple[str, str]
) -> None:
    job_id, miner_id = running
    assert client_api.post(f"{JOBS}/{job_id}/cancel").status_code == 200

    assert_api_error(post_output(miner_api, miner_id, job_id, text(0, "a")), status=409, code="JOB_CANCELLED")


def test_output_after_the_attempts_result_is_refused(miner_api: APIClient, running: tuple[str, str]) -> None:
    job_id, miner_id = running
    assert post_result(miner_api, miner_id, job_id).status_code == 200

    assert_api_error(post_output(miner_api, miner_id, job_id, text(0, "a")), status=409, code="INVALID_JOB_STATE")


# --- the result binds the output ----------------------------------------------------------------------------------


def test_the_receipt_signs_the_hash_of_the_attempts_output(
    miner_api: APIClient, anonymous_api: APIClient, running: tuple[str, str]
) -> None:
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, text(0, "héllo "), b64(1, b"\x00\xff")).status_code == 200

    response = post_result(miner_api, miner_id, job_id, result={"tokens": 3})

    assert response.status_code == 200, response.content
    receipt = response.json()["receipt"]
    assert receipt["output_hash"] == "sha256:" + hashlib.sha256("héllo ".encode() + b"\x00\xff").hexdigest()
    assert anonymous_api.post("/v1/receipts/verify", receipt, format="json").json()["valid"] is True


def test_a_receipt_without_output_has_a_null_output_hash(miner_api: APIClient, running: tuple[str, str]) -> None:
    job_id, miner_id = running

    assert post_result(miner_api, miner_id, job_id).json()["receipt"]["output_hash"] is None


def test_a_result_may_repeat_the_output_exactly(miner_api: APIClient, running: tuple[str, str]) -> None:
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, text(0, "Hello, "), text(1, "world")).status_code == 200

    response = post_result(miner_api, miner_id, job_id, result={"output": "Hello, world"})

    assert response.status_code == 200, response.content
    assert response.json()["job"]["result"] == {"output": "Hello, world"}


@pytest.mark.parametrize("output", ["Hello, world!", "Hello", 12, None])
def test_a_result_whose_output_differs_from_the_chunks_is_refused(
    miner_api: APIClient, running: tuple[str, str], output: Any
) -> None:
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, text(0, "Hello, "), text(1, "world")).status_code == 200

    response = post_result(miner_api, miner_id, job_id, result={"output": output})

    assert_api_error(response, status=409, code="OUTPUT_MISMATCH")
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.result) == (JobStatus.RUNNING, None)
    assert job.receipts.count() == 0
    # Nothing was recorded: the miner can still post the right result.
    assert post_result(miner_api, miner_id, job_id, result={"output": "Hello, world"}).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_result_racing_output_posts_signs_exactly_the_chunks_kept(
    client_api: APIClient, miner_api: APIClient
) -> None:
    job, miner = start_job(client_api, miner_api)
    job_id, miner_id = job["id"], miner["id"]
    outputs: list[int] = []
    results: list[Any] = []

    def post_chunks() -> None:
        poster = api_with_key(miner_api.raw_key)  # type: ignore[attr-defined]
        for seq in range(200):
            status = post_output(poster, miner_id, job_id, text(seq, f"{seq},")).status_code
            outputs.append(status)
            if status != 200:
                return

    def finish() -> None:
        poster = api_with_key(miner_api.raw_key)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while len(outputs) < 5 and time.monotonic() < deadline:
            time.sleep(0.001)
        # A result judged while chunks keep arriving is judged again, and after three tries asked to come back.
        for _ in range(50):
            results.append(post_result(poster, miner_id, job_id, result={"text": "done"}))
            if results[-1].status_code == 200:
                return

    run_concurrently(post_chunks, finish)

    assert results[-1].status_code == 200, results[-1].content
    kept = list(JobOutputChunk.objects.filter(job_id=job_id).order_by("id").values_list("seq", "data"))
    assert [seq for seq, _ in kept] == list(range(len(kept)))
    assert outputs.count(200) == len(kept)
    assert outputs[-1] == 409 or len(kept) == 200
    output = b"".join(bytes(data) for _, data in kept)
    assert results[-1].json()["receipt"]["output_hash"] == "sha256:" + hashlib.sha256(output).hexdigest()


# --- GET /v1/client/jobs/{id}/stream ------------------------------------------------------------------------------


def test_the_client_reads_every_attempts_chunks_in_order(
    client_api: APIClient, miner_api: APIClient, other_miner_api: APIClient, running: tuple[str, str]
) -> None:
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, text(0, "one "), b64(1, b"\x01\x02")).status_code == 200
    lapse_lease(job_id)
    catch_up_stored_state()
    Job.objects.filter(pk=job_id).update(not_before=timezone.now())
    other_miner = register_miner(other_miner_api)["id"]
    poll(other_miner_api, other_miner)
    assert post_output(other_miner_api, other_miner, job_id, text(0, "two", progress=0.5)).status_code == 200

    page = stream(client_api, job_id)

    chunks = page["results"]
    assert [(chunk["attempt"], chunk["seq"], chunk["data"], chunk["encoding"]) for chunk in chunks] == [
        (1, 0, "one ", "text"), (1, 1, "AQI=", "base64"), (2, 0, "two", "text"),
    ]
    assert [chunk["progress"] for chunk in chunks] == [None, None, 0.5]
    positions = [chunk["position"] for chunk in chunks]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert set(chunks[0]) == {"position", "attempt", "seq", "data", "encoding", "progress", "created_at"}
    assert page["next"] is None


def test_the_stream_is_cursor_paginated(
    client_api: APIClient, miner_api: APIClient, running: tuple[str, str]
) -> None:
    job_id, miner_id = running
    chunks = [text(seq, f"piece {seq};") for seq in range(5)]
    assert post_output(miner_api, miner_id, job_id, *chunks).status_code == 200

    first = stream(client_api, job_id, limit=2)
    rest = [first]
    while rest[-1]["next"] is not None and len(rest) < 10:
        response = client_api.get(rest[-1]["next"])
        assert response.status_code == 200, response.content
        rest.append(response.json())

    assert [chunk["seq"] for page in rest for chunk in page["results"]] == [0, 1, 2, 3, 4]


def test_a_job_without_output_streams_an_empty_list(client_api: APIClient) -> None:
    job = submit_job(client_api)

    assert stream(client_api, job["id"]) == {"results": [], "next": None, "previous": None}


def test_another_clients_job_stream_is_not_found(
    other_client_api: APIClient, miner_api: APIClient, running: tuple[str, str]
) -> None:
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, text(0, "secret")).status_code == 200

    assert_api_error(other_client_api.get(f"{JOBS}/{job_id}/stream"), status=404, code="JOB_NOT_FOUND")


def test_the_stream_needs_a_client_key(
    anonymous_api: APIClient, miner_api: APIClient, running: tuple[str, str]
) -> None:
    job_id, _ = running

    assert_api_error(anonymous_api.get(f"{JOBS}/{job_id}/stream"), status=401, code="AUTHENTICATION_REQUIRED")
    assert_api_error(miner_api.get(f"{JOBS}/{job_id}/stream"), status=403, code="PERMISSION_DENIED")


def test_a_forged_stream_cursor_is_refused(client_api: APIClient, running: tuple[str, str]) -> None:
    job_id, _ = running
    cursor = base64.b64encode(b"p=not-a-number").decode()

    assert_api_error(client_api.get(f"{JOBS}/{job_id}/stream", {"cursor": cursor}), status=400,
                     code="INVALID_CURSOR")


# --- maintenance --------------------------------------------------------------------------------------------------


def test_maintenance_deletes_the_output_of_jobs_that_ended_long_ago(
    client_api: APIClient, miner_api: APIClient, settings: Any
) -> None:
    settings.JOB_OUTPUT_RETENTION_SECONDS = 60
    miner_id = register_miner(miner_api, max_concurrent_jobs=3)["id"]
    old, recent, still_running = (submit_job(client_api)["id"] for _ in range(3))
    assert len(poll(miner_api, miner_id, limit=3)["results"]) == 3
    for job_id in (old, recent, still_running):
        assert post_output(miner_api, miner_id, job_id, text(0, "a"), text(1, "b")).status_code == 200
    for job_id in (old, recent):
        assert post_result(miner_api, miner_id, job_id).status_code == 200
    Job.objects.filter(pk=old).update(completed_at=timezone.now() - timedelta(seconds=61))
    Job.objects.filter(pk=still_running).update(completed_at=timezone.now() - timedelta(seconds=61))

    assert catch_up_stored_state()["output_chunks_deleted"] == 2

    assert sorted(set(JobOutputChunk.objects.values_list("job_id", flat=True))) == sorted(
        [Job.objects.get(pk=recent).pk, Job.objects.get(pk=still_running).pk]
    )
    assert Job.objects.get(pk=old).output_bytes == 0
    assert Job.objects.get(pk=recent).output_bytes == 2
    assert catch_up_stored_state()["output_chunks_deleted"] == 0


def test_a_round_deletes_at_most_its_batch(miner_api: APIClient, running: tuple[str, str], settings: Any) -> None:
    settings.JOB_OUTPUT_RETENTION_SECONDS = 60
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, *(text(seq, "x") for seq in range(5))).status_code == 200
    assert post_result(miner_api, miner_id, job_id).status_code == 200
    later = timezone.now() + timedelta(seconds=61)

    assert delete_kept_output(now=later, batch=3) == 3
    assert Job.objects.get(pk=job_id).output_bytes == 5
    assert delete_kept_output(now=later, batch=3) == 2
    assert Job.objects.get(pk=job_id).output_bytes == 0
    assert delete_kept_output(now=later, batch=3) == 0


def test_the_maintenance_command_deletes_old_output(
    miner_api: APIClient, running: tuple[str, str], settings: Any
) -> None:
    settings.JOB_OUTPUT_RETENTION_SECONDS = 60
    job_id, miner_id = running
    assert post_output(miner_api, miner_id, job_id, text(0, "a")).status_code == 200
    assert post_result(miner_api, miner_id, job_id).status_code == 200
    Job.objects.filter(pk=job_id).update(completed_at=timezone.now() - timedelta(seconds=61))

    call_command("cleanup_miners", stdout=StringIO())

    assert JobOutputChunk.objects.count() == 0
