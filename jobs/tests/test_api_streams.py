"""The job's live views asked for `text/event-stream`: the timeline (/events) and the partial output (/stream) as
Server-Sent Events, resumable with Last-Event-ID; and the waits of GET /v1/client/jobs/{id} and the miner's poll.

These run in-process on jobs that have ended or end before the stream is read, so every stream here finishes by
itself; the live behaviour (a stream following a running job) is tested against gunicorn in test_live_streams."""

import json
import time
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from aitbc_site.testing import assert_api_error
from conftest import poll, post_result, register_miner, start_job, submit_job
from jobs.models import Job, JobOutputChunk
from jobs.tests.test_api_output import lapse_lease, post_output, text

JOBS = "/v1/client/jobs"
SSE = {"Accept": "text/event-stream"}


def read_events(response: Any) -> list[dict[str, Any]]:
    """The events of a finished stream: each as {"id", "event", "data"} (comments left out)."""
    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    assert response["Content-Type"] == "text/event-stream"
    body = b"".join(response.streaming_content).decode()
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            events.append({"id": fields.get("id"), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def completed_job(client_api: APIClient, miner_api: APIClient) -> str:
    job, miner = start_job(client_api, miner_api)
    assert post_result(miner_api, miner["id"], job["id"]).status_code == 200
    return job["id"]


# --- /events ---------------------------------------------------------------------------------------------------


def test_the_timeline_streams_with_positions_as_ids_and_ends_after_the_terminal_event(
    client_api: APIClient, miner_api: APIClient
) -> None:
    job_id = completed_job(client_api, miner_api)

    events = read_events(client_api.get(f"{JOBS}/{job_id}/events", headers=SSE))
    listed = client_api.get(f"{JOBS}/{job_id}/events").json()["results"]

    assert [event["event"] for event in events] == ["status"] * len(listed)
    assert [event["id"] for event in events] == [str(position) for position in range(1, len(listed) + 1)]
    assert [event["data"] for event in events] == listed
    assert [item["position"] for item in listed] == list(range(1, len(listed) + 1))
    assert events[-1]["data"]["to"] == "completed"


def test_a_listing_page_shows_the_positions_of_its_events(client_api: APIClient, miner_api: APIClient) -> None:
    job_id = completed_job(client_api, miner_api)

    first = client_api.get(f"{JOBS}/{job_id}/events", {"limit": 1}).json()
    second = client_api.get(first["next"]).json()

    assert [item["position"] for item in first["results"] + second["results"]] == [1, 2]


def test_the_timeline_resumes_after_last_event_id(client_api: APIClient, miner_api: APIClient) -> None:
    job_id = completed_job(client_api, miner_api)
    everything = read_events(client_api.get(f"{JOBS}/{job_id}/events", headers=SSE))

    resumed = read_events(client_api.get(f"{JOBS}/{job_id}/events", headers={**SSE, "Last-Event-ID": "1"}))
    after_the_end = client_api.get(f"{JOBS}/{job_id}/events", headers={**SSE, "Last-Event-ID": everything[-1]["id"]})

    assert resumed == everything[1:]
    # 204: nothing more will come, and a browser's EventSource stops reconnecting.
    assert after_the_end.status_code == 204


@pytest.mark.parametrize("last_event_id", ["x", "-1", "1.5", "9" * 12])
def test_a_last_event_id_that_is_no_position_is_a_400(client_api: APIClient, last_event_id: str) -> None:
    job = submit_job(client_api)

    response = client_api.get(f"{JOBS}/{job['id']}/events", headers={**SSE, "Last-Event-ID": last_event_id})

    assert response["Content-Type"] == "application/json"
    assert_api_error(response, status=400, code="INVALID_LAST_EVENT_ID")


def test_streams_of_someone_elses_job_are_404_envelopes(client_api: APIClient, other_client_api: APIClient) -> None:
    job = submit_job(client_api)

    for view in ("events", "stream"):
        response = other_client_api.get(f"{JOBS}/{job['id']}/{view}", headers=SSE)
        assert response["Content-Type"] == "application/json"
        assert_api_error(response, status=404, code="JOB_NOT_FOUND")


def test_streams_without_a_key_are_401_envelopes(anonymous_api: APIClient, client_api: APIClient) -> None:
    job = submit_job(client_api)

    for view in ("events", "stream"):
        response = anonymous_api.get(f"{JOBS}/{job['id']}/{view}", headers=SSE)
        assert response["Content-Type"] == "application/json"
        assert response.status_code == 401


def test_streams_are_for_clients_only(client_api: APIClient, miner_api: APIClient) -> None:
    job = submit_job(client_api)

    response = miner_api.get(f"{JOBS}/{job['id']}/events", headers=SSE)

    assert response.status_code == 403


# --- /stream ---------------------------------------------------------------------------------------------------


def test_the_output_streams_every_chunk_then_the_end(client_api: APIClient, miner_api: APIClient) -> None:
    job, miner = start_job(client_api, miner_api)
    assert post_output(miner_api, miner["id"], job["id"], text(0, "Hel"), text(1, "lo")).status_code == 200
    assert post_result(miner_api, miner["id"], job["id"], result={}).status_code == 200

    events = read_events(client_api.get(f"{JOBS}/{job['id']}/stream", headers=SSE))
    listed = client_api.get(f"{JOBS}/{job['id']}/stream").json()["results"]

    assert [event["event"] for event in events] == ["output", "output", "end"]
    assert [event["data"] for event in events[:2]] == listed
    assert [event["id"] for event in events[:2]] == [str(chunk["position"]) for chunk in listed]
    assert events[-1] == {"id": "end", "event": "end", "data": {"status": "completed"}}
    after_the_end = client_api.get(f"{JOBS}/{job['id']}/stream", headers={**SSE, "Last-Event-ID": "end"})
    assert after_the_end.status_code == 204


def test_head_asking_for_a_stream_gets_no_stream(client_api: APIClient) -> None:
    job = submit_job(client_api)

    response = client_api.head(f"{JOBS}/{job['id']}/events", headers=SSE)

    assert response.status_code == 200
    assert not response.streaming


def test_an_attempt_that_ends_without_a_result_is_reset_and_the_next_attempts_chunks_follow(
    client_api: APIClient, miner_api: APIClient, other_miner_api: APIClient
) -> None:
    job, first = start_job(client_api, miner_api)
    assert post_output(miner_api, first["id"], job["id"], text(0, "lost "), text(1, "words")).status_code == 200
    lapse_lease(job["id"])
    # The lapsed holder's next chunk is refused: it never reaches the stream.
    refused = post_output(miner_api, first["id"], job["id"], text(2, "late"))
    assert_api_error(refused, status=409, code="LEASE_EXPIRED")
    second = register_miner(other_miner_api, address="ait1" + "ab" * 20)
    # This poll requeues the lapsed job (retry back-off ahead); the next, once the back-off is over, takes it.
    assert poll(other_miner_api, second["id"])["results"] == []
    Job.objects.filter(pk=job["id"]).update(not_before=timezone.now())
    assert [item["id"] for item in poll(other_miner_api, second["id"])["results"]] == [job["id"]]
    assert post_output(other_miner_api, second["id"], job["id"], text(0, "kept")).status_code == 200
    assert post_result(other_miner_api, second["id"], job["id"], result={}).status_code == 200

    events = read_events(client_api.get(f"{JOBS}/{job['id']}/stream", headers=SSE))

    assert [(event["event"], event["data"].get("attempt")) for event in events] == [
        ("output", 1), ("output", 1), ("reset", 1), ("output", 2), ("end", None),
    ]
    assert events[2]["id"] == "reset-1"
    assert "late" not in json.dumps(events)
    # Resuming after any event sends exactly the rest.
    for index, event in enumerate(events[:-1]):
        headers = {**SSE, "Last-Event-ID": event["id"]}
        resumed = read_events(client_api.get(f"{JOBS}/{job['id']}/stream", headers=headers))
        assert resumed == events[index + 1 :], event["id"]


def test_the_output_stream_goes_by_position_whatever_order_the_rows_were_stored_in(
    client_api: APIClient, miner_api: APIClient
) -> None:
    """PostgreSQL returns rows without ORDER BY in whatever order it finds them; the stream's cursor relies on the
    position order, so rows stored out of it (ids given explicitly, highest first) must still come in order."""
    job, miner = start_job(client_api, miner_api)
    stored = Job.objects.get(pk=job["id"])
    for position, seq in ((1003, 3), (1002, 2), (1001, 1), (1000, 0)):
        JobOutputChunk.objects.create(
            pk=position, job=stored, attempt=1, seq=seq, data=f"{seq}".encode(), encoding="text", size=1,
            created_at=timezone.now(),
        )
    assert post_result(miner_api, miner["id"], job["id"], result={}).status_code == 200

    events = read_events(client_api.get(f"{JOBS}/{job['id']}/stream", headers=SSE))

    assert [event["id"] for event in events] == ["1000", "1001", "1002", "1003", "end"]


@pytest.mark.parametrize("last_event_id", ["reset-x", "999999", "abc"])
def test_an_output_last_event_id_the_job_never_sent_is_a_400(
    client_api: APIClient, miner_api: APIClient, last_event_id: str
) -> None:
    job, _miner = start_job(client_api, miner_api)

    response = client_api.get(f"{JOBS}/{job['id']}/stream", headers={**SSE, "Last-Event-ID": last_event_id})

    assert_api_error(response, status=400, code="INVALID_LAST_EVENT_ID")


# --- waits -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", [{"wait": -1}, {"wait": 31}, {"wait": "soon"}, {"wait_for": "ever"}])
def test_a_wait_out_of_range_is_a_400(client_api: APIClient, query: dict[str, Any]) -> None:
    job = submit_job(client_api)

    assert_api_error(client_api.get(f"{JOBS}/{job['id']}", query), status=400, code="VALIDATION_ERROR")


@pytest.mark.parametrize("wait", [-1, 31, "x"])
def test_a_poll_wait_out_of_range_is_a_400(miner_api: APIClient, wait: Any) -> None:
    miner = register_miner(miner_api)

    response = miner_api.get("/v1/miner/jobs", {"miner_id": miner["id"], "wait": wait})

    assert_api_error(response, status=400, code="VALIDATION_ERROR")


def test_waiting_on_an_ended_job_answers_at_once(client_api: APIClient, miner_api: APIClient) -> None:
    job_id = completed_job(client_api, miner_api)

    started = time.monotonic()
    response = client_api.get(f"{JOBS}/{job_id}", {"wait": 30})

    assert response.json()["status"] == "completed"
    assert time.monotonic() - started < 5


def test_waiting_on_someone_elses_job_is_a_404(client_api: APIClient, other_client_api: APIClient) -> None:
    job = submit_job(client_api)

    assert_api_error(other_client_api.get(f"{JOBS}/{job['id']}", {"wait": 5}), status=404, code="JOB_NOT_FOUND")


def test_a_poll_that_finds_work_answers_without_waiting(client_api: APIClient, miner_api: APIClient) -> None:
    job = submit_job(client_api)
    miner = register_miner(miner_api)

    started = time.monotonic()
    response = miner_api.get("/v1/miner/jobs", {"miner_id": miner["id"], "wait": 30})

    assert [item["id"] for item in response.json()["results"]] == [job["id"]]
    assert time.monotonic() - started < 5
