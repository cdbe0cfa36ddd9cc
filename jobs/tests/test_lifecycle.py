"""Leases, heartbeats, retries, cancellation, deadlines and the timeline (issue 3), through the API."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from aitbc_site.testing import assert_api_error
from conftest import poll, post_result, register_miner, submit_job
from jobs.models import Job, JobAttempt, JobStatus
from miners.models import Miner, MinerStatus


def lapse_lease(job_id: str) -> None:
    """Make the job's lease run out, as if its miner had gone silent."""
    Job.objects.filter(pk=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def end_back_off(job_id: str) -> None:
    Job.objects.filter(pk=job_id).update(not_before=timezone.now() - timedelta(seconds=1))


def events_of(api, job_id: str) -> list[dict]:
    response = api.get(f"/v1/client/jobs/{job_id}/events", {"limit": 100})
    assert response.status_code == 200, response.content
    return response.json()["results"]


@pytest.fixture
def two_miners(miner_api, other_miner_api):
    return register_miner(miner_api), register_miner(other_miner_api)


# --- leases -----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_assignment_carries_its_attempt_and_lease(client_api, miner_api, settings) -> None:
    settings.JOB_LEASE_SECONDS = 30
    job = submit_job(client_api)
    miner = register_miner(miner_api)
    before = timezone.now()
    assignment = poll(miner_api, miner["id"])["results"][0]
    assert assignment["attempt"] == 1
    lease = Job.objects.get(pk=job["id"]).lease_expires_at
    assert before + timedelta(seconds=29) < lease <= timezone.now() + timedelta(seconds=30)
    assert assignment["lease_expires_at"] is not None


@pytest.mark.django_db
def test_it_requeues_a_job_whose_lease_expired_for_the_next_miner(client_api, miner_api, other_miner_api, two_miners):
    first, second = two_miners
    job = submit_job(client_api)
    poll(miner_api, first["id"])
    lapse_lease(job["id"])
    assert poll(other_miner_api, second["id"])["results"] == []  # recovered, but backing off
    stored = Job.objects.get(pk=job["id"])
    assert stored.status == JobStatus.PENDING and stored.miner_id is None and stored.attempts == 1
    end_back_off(job["id"])
    assignment = poll(other_miner_api, second["id"])["results"][0]
    assert (assignment["id"], assignment["attempt"]) == (job["id"], 2)
    reasons = [(event["from"], event["to"], event["reason"]) for event in events_of(client_api, job["id"])]
    assert ("running", "pending", "the miner's lease expired") in reasons


@pytest.mark.django_db
def test_a_job_whose_last_lease_expires_fails_with_max_attempts_exceeded(client_api, miner_api) -> None:
    job = submit_job(client_api, max_attempts=1)
    miner = register_miner(miner_api)
    poll(miner_api, miner["id"])
    lapse_lease(job["id"])
    call_command("cleanup_miners", stdout=StringIO())
    read = client_api.get(f"/v1/client/jobs/{job['id']}").json()
    assert read["status"] == "failed"
    assert read["error"]["code"] == "MAX_ATTEMPTS_EXCEEDED"


@pytest.mark.django_db
def test_heartbeat_renews_every_lease_without_a_job_list(client_api, miner_api, settings) -> None:
    settings.JOB_LEASE_SECONDS = 60
    job = submit_job(client_api)
    miner = register_miner(miner_api)
    poll(miner_api, miner["id"])
    Job.objects.filter(pk=job["id"]).update(lease_expires_at=timezone.now() + timedelta(seconds=5))
    reply = miner_api.post("/v1/miner/heartbeat", {"miner_id": miner["id"]}, format="json").json()
    assert reply["held_jobs"] == [job["id"]]
    assert reply["cancelled_jobs"] == []
    assert reply["heartbeat_interval"] == 20
    assert Job.objects.get(pk=job["id"]).lease_expires_at > timezone.now() + timedelta(seconds=55)


@pytest.mark.django_db
def test_heartbeat_with_a_job_list_renews_those_records_progress_and_releases_the_rest(client_api, miner_api) -> None:
    kept, dropped = submit_job(client_api), submit_job(client_api)
    miner = register_miner(miner_api, max_concurrent_jobs=2)
    assert len(poll(miner_api, miner["id"], limit=2)["results"]) == 2
    reply = miner_api.post(
        "/v1/miner/heartbeat",
        {"miner_id": miner["id"], "jobs": [{"job_id": kept["id"], "progress": 0.5}]},
        format="json",
    ).json()
    assert reply["held_jobs"] == [kept["id"]]
    assert client_api.get(f"/v1/client/jobs/{kept['id']}").json()["progress"] == 0.5
    released = client_api.get(f"/v1/client/jobs/{dropped['id']}").json()
    assert (released["status"], released["miner_id"], released["attempts"]) == ("pending", None, 0)
    # Released at once, with no back-off: a restarted miner's lost job goes straight to the next poll.
    assert poll(miner_api, miner["id"])["results"][0]["id"] == dropped["id"]


@pytest.mark.django_db
def test_no_lease_is_renewed_past_the_jobs_max_runtime(client_api, miner_api, settings) -> None:
    settings.JOB_LEASE_SECONDS = 600
    job = submit_job(client_api, max_runtime_seconds=30)
    miner = register_miner(miner_api)
    poll(miner_api, miner["id"])
    miner_api.post("/v1/miner/heartbeat", {"miner_id": miner["id"]}, format="json")
    stored = Job.objects.get(pk=job["id"])
    assert stored.lease_expires_at == stored.started_at + timedelta(seconds=30)


@pytest.mark.django_db
def test_a_draining_miner_gets_no_new_jobs_until_it_is_active_again(client_api, miner_api) -> None:
    submit_job(client_api)
    miner = register_miner(miner_api)
    reply = miner_api.post("/v1/miner/heartbeat", {"miner_id": miner["id"], "status": "draining"}, format="json")
    assert reply.json()["status"] == "draining"
    empty = poll(miner_api, miner["id"])
    assert (empty["results"], empty["reason"]) == ([], "draining")
    assert empty["retry_after"] > 0
    miner_api.post("/v1/miner/heartbeat", {"miner_id": miner["id"], "status": "active"}, format="json")
    assert len(poll(miner_api, miner["id"])["results"]) == 1


@pytest.mark.django_db
def test_an_empty_poll_says_why(client_api, miner_api) -> None:
    miner = register_miner(miner_api)
    nothing = poll(miner_api, miner["id"])
    assert (nothing["reason"], nothing["retry_after"]) == ("no_matching_jobs", 2)
    submit_job(client_api)
    submit_job(client_api)
    poll(miner_api, miner["id"])
    full = poll(miner_api, miner["id"])
    assert (full["results"], full["reason"]) == ([], "at_capacity")


@pytest.mark.django_db
def test_a_silent_miner_reads_as_inactive_and_a_heartbeat_brings_it_back(miner_api, settings) -> None:
    settings.MINER_HEARTBEAT_TIMEOUT = 5
    miner = register_miner(miner_api)
    Miner.objects.filter(pk=miner["id"]).update(last_heartbeat=timezone.now() - timedelta(seconds=6))
    reply = miner_api.post("/v1/miner/register", {"miner_id": miner["id"], "address": miner["address"],
                                                  "capabilities": ["llm_inference"]}, format="json")
    assert reply.json()["status"] == "active"
    Miner.objects.filter(pk=miner["id"]).update(last_heartbeat=timezone.now() - timedelta(seconds=6))
    call_command("cleanup_miners", stdout=StringIO())
    assert Miner.objects.get(pk=miner["id"]).status == MinerStatus.INACTIVE
    reply = miner_api.post("/v1/miner/heartbeat", {"miner_id": miner["id"]}, format="json").json()
    assert reply["status"] == "active"


@pytest.mark.django_db
def test_polls_write_the_sign_of_life_once_a_tenth_of_the_timeout_has_passed(miner_api, settings) -> None:
    settings.MINER_HEARTBEAT_TIMEOUT = 50
    miner = register_miner(miner_api)
    recently = timezone.now() - timedelta(seconds=4)
    Miner.objects.filter(pk=miner["id"]).update(last_heartbeat=recently)

    poll(miner_api, miner["id"])
    assert Miner.objects.get(pk=miner["id"]).last_heartbeat == recently

    Miner.objects.filter(pk=miner["id"]).update(last_heartbeat=timezone.now() - timedelta(seconds=6))
    poll(miner_api, miner["id"])
    assert timezone.now() - Miner.objects.get(pk=miner["id"]).last_heartbeat < timedelta(seconds=2)


@pytest.mark.django_db
def test_a_poll_brings_an_inactive_miner_back_at_once(miner_api, settings) -> None:
    settings.MINER_HEARTBEAT_TIMEOUT = 50
    miner = register_miner(miner_api)
    Miner.objects.filter(pk=miner["id"]).update(status=MinerStatus.INACTIVE)

    poll(miner_api, miner["id"])

    assert Miner.objects.get(pk=miner["id"]).status == MinerStatus.ACTIVE


# --- retries ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_retryable_failure_backs_off_exponentially_before_the_next_attempt(
    client_api, miner_api, other_miner_api, two_miners, settings
) -> None:
    settings.JOB_RETRY_BACKOFF_SECONDS = 10
    first, second = two_miners
    job = submit_job(client_api)
    error = {"code": "OOM", "message": "out of memory"}
    for attempt, (api, miner) in enumerate([(miner_api, first), (other_miner_api, second)], start=1):
        end_back_off(job["id"])
        assert poll(api, miner["id"])["results"][0]["attempt"] == attempt
        before = timezone.now()
        answer = post_result(api, miner["id"], job["id"], status="failed", result=None, error=error)
        assert answer.json()["job"]["status"] == "pending"
        delay = (Job.objects.get(pk=job["id"]).not_before - before).total_seconds()
        expected = 10 * 2 ** (attempt - 1)
        assert expected * 0.8 - 0.1 <= delay <= expected * 1.2 + 0.1
        assert poll(api, miner["id"])["results"] == []


@pytest.mark.django_db
def test_a_failure_marked_not_retryable_fails_the_job_at_once(client_api, miner_api) -> None:
    job = submit_job(client_api)
    miner = register_miner(miner_api)
    poll(miner_api, miner["id"])
    error = {"code": "BAD_INPUT", "message": "prompt too long"}
    answer = post_result(miner_api, miner["id"], job["id"], status="failed", result=None, error=error, retryable=False)
    assert answer.json()["job"]["status"] == "failed"
    assert answer.json()["job"]["error"] == error


@pytest.mark.django_db
def test_exhausted_attempts_fail_with_the_last_miner_error_in_details(client_api, miner_api) -> None:
    job = submit_job(client_api, max_attempts=2)
    miner = register_miner(miner_api)
    for attempt in (1, 2):
        end_back_off(job["id"])
        poll(miner_api, miner["id"])
        error = {"code": "CRASH", "message": f"attempt {attempt}"}
        answer = post_result(miner_api, miner["id"], job["id"], status="failed", result=None, error=error)
    final = answer.json()["job"]
    assert final["status"] == "failed"
    assert final["error"]["code"] == "MAX_ATTEMPTS_EXCEEDED"
    assert final["error"]["details"]["last_error"] == {"code": "CRASH", "message": "attempt 2"}


@pytest.mark.django_db
def test_a_miner_is_not_handed_the_job_it_just_failed_while_another_capable_miner_exists(
    client_api, miner_api, other_miner_api, two_miners
) -> None:
    first, second = two_miners
    job = submit_job(client_api)
    poll(miner_api, first["id"])
    post_result(miner_api, first["id"], job["id"], status="failed", result=None, error={"code": "X", "message": ""})
    end_back_off(job["id"])
    assert poll(miner_api, first["id"])["results"] == []
    assert poll(other_miner_api, second["id"])["results"][0]["id"] == job["id"]


@pytest.mark.django_db
def test_a_miner_gets_its_failed_job_again_when_no_other_miner_can_run_it(client_api, miner_api) -> None:
    job = submit_job(client_api)
    miner = register_miner(miner_api)
    poll(miner_api, miner["id"])
    post_result(miner_api, miner["id"], job["id"], status="failed", result=None, error={"code": "X", "message": ""})
    end_back_off(job["id"])
    assert poll(miner_api, miner["id"])["results"][0]["attempt"] == 2


# --- cancellation and deadlines ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cancelling_a_pending_job_and_again_is_idempotent(client_api) -> None:
    job = submit_job(client_api)
    for _ in range(2):
        response = client_api.post(f"/v1/client/jobs/{job['id']}/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
    assert [event["to"] for event in events_of(client_api, job["id"])] == ["cancelled"]


@pytest.mark.django_db
def test_a_cancelled_running_jobs_miner_is_told_in_its_heartbeat_and_its_result_refused(client_api, miner_api) -> None:
    job = submit_job(client_api)
    miner = register_miner(miner_api)
    poll(miner_api, miner["id"])
    assert client_api.post(f"/v1/client/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    reply = miner_api.post("/v1/miner/heartbeat", {"miner_id": miner["id"]}, format="json").json()
    assert (reply["held_jobs"], reply["cancelled_jobs"]) == ([], [job["id"]])
    assert_api_error(post_result(miner_api, miner["id"], job["id"]), status=409, code="JOB_CANCELLED")
    assert client_api.get(f"/v1/client/jobs/{job['id']}").json()["result"] is None


@pytest.mark.django_db
@pytest.mark.parametrize("final", ["completed", "failed", "expired"])
def test_a_finished_job_cannot_be_cancelled(client_api, miner_api, final: str) -> None:
    job = submit_job(client_api, max_attempts=1)
    if final == "expired":
        Job.objects.filter(pk=job["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        miner = register_miner(miner_api)
        poll(miner_api, miner["id"])
        error = {"code": "X", "message": ""} if final == "failed" else None
        post_result(miner_api, miner["id"], job["id"], status=final, error=error,
                    result={"ok": True} if final == "completed" else None)
    response = client_api.post(f"/v1/client/jobs/{job['id']}/cancel")
    assert_api_error(response, status=409, code="INVALID_JOB_STATE")
    assert client_api.get(f"/v1/client/jobs/{job['id']}").json()["status"] == final


@pytest.mark.django_db
def test_a_pending_job_past_its_ttl_reads_expired_and_is_never_handed_out(client_api, miner_api) -> None:
    job = submit_job(client_api, ttl_seconds=10)
    assert job["expires_at"] is not None
    Job.objects.filter(pk=job["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client_api.get(f"/v1/client/jobs/{job['id']}").json()["status"] == "expired"
    listed = client_api.get("/v1/client/jobs", {"status": "expired"}).json()["results"]
    assert [item["id"] for item in listed] == [job["id"]]
    miner = register_miner(miner_api)
    assert poll(miner_api, miner["id"])["results"] == []
    call_command("cleanup_miners", stdout=StringIO())
    assert Job.objects.get(pk=job["id"]).status == JobStatus.EXPIRED
    assert [event["to"] for event in events_of(client_api, job["id"])] == ["expired"]


@pytest.mark.django_db
def test_a_poll_expires_the_overdue_jobs_it_meets_and_hands_out_the_next(client_api, miner_api) -> None:
    overdue = submit_job(client_api, priority=9)
    waiting = submit_job(client_api)
    Job.objects.filter(pk=overdue["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    miner = register_miner(miner_api)

    assert [assignment["id"] for assignment in poll(miner_api, miner["id"])["results"]] == [waiting["id"]]
    assert Job.objects.get(pk=overdue["id"]).status == JobStatus.EXPIRED
    assert [(event["to"], event["actor"]) for event in events_of(client_api, overdue["id"])] == [("expired", "system")]


# --- late and stale results -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_late_result_is_accepted_while_nobody_else_took_the_job(client_api, miner_api, two_miners) -> None:
    first, _ = two_miners
    job = submit_job(client_api)
    poll(miner_api, first["id"])
    lapse_lease(job["id"])
    call_command("cleanup_miners", stdout=StringIO())
    answer = post_result(miner_api, first["id"], job["id"])
    assert answer.status_code == 200, answer.content
    assert answer.json()["job"]["status"] == "completed"


@pytest.mark.django_db
def test_a_stale_result_after_another_miner_took_the_job_is_refused(
    client_api, miner_api, other_miner_api, two_miners
) -> None:
    first, second = two_miners
    job = submit_job(client_api)
    poll(miner_api, first["id"])
    lapse_lease(job["id"])
    call_command("cleanup_miners", stdout=StringIO())
    end_back_off(job["id"])
    poll(other_miner_api, second["id"])
    assert_api_error(post_result(miner_api, first["id"], job["id"]), status=409, code="LEASE_EXPIRED")
    assert post_result(other_miner_api, second["id"], job["id"]).status_code == 200
    assert_api_error(post_result(miner_api, first["id"], job["id"]), status=409, code="LEASE_EXPIRED")


@pytest.mark.django_db
def test_a_miner_that_never_held_the_job_is_told_it_is_not_found(
    client_api, miner_api, other_miner_api, two_miners
) -> None:
    first, second = two_miners
    job = submit_job(client_api)
    poll(miner_api, first["id"])
    assert_api_error(post_result(other_miner_api, second["id"], job["id"]), status=404, code="JOB_NOT_FOUND")


# --- the timeline and maintenance --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_timeline_records_every_change_with_its_actor(client_api, miner_api) -> None:
    job = submit_job(client_api)
    miner = register_miner(miner_api)
    poll(miner_api, miner["id"])
    post_result(miner_api, miner["id"], job["id"])
    events = events_of(client_api, job["id"])
    assert [(event["from"], event["to"], event["actor"]) for event in events] == [
        ("pending", "running", f"miner:{miner['id']}"),
        ("running", "completed", f"miner:{miner['id']}"),
    ]
    assert all(event["at"] and event["reason"] for event in events)


@pytest.mark.django_db
def test_another_client_cannot_read_the_timeline(client_api, other_client_api) -> None:
    job = submit_job(client_api)
    assert_api_error(other_client_api.get(f"/v1/client/jobs/{job['id']}/events"), status=404, code="JOB_NOT_FOUND")


@pytest.mark.django_db
def test_cleanup_miners_catches_up_and_is_idempotent(client_api, miner_api, settings) -> None:
    settings.MINER_HEARTBEAT_TIMEOUT = 5
    running, overdue = submit_job(client_api), submit_job(client_api)
    miner = register_miner(miner_api)
    poll(miner_api, miner["id"])
    lapse_lease(running["id"])
    Job.objects.filter(pk=overdue["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    Miner.objects.filter(pk=miner["id"]).update(last_heartbeat=timezone.now() - timedelta(seconds=6))
    first, second = StringIO(), StringIO()
    call_command("cleanup_miners", stdout=first)
    call_command("cleanup_miners", stdout=second)
    assert first.getvalue().split() == [
        "leases_recovered=1", "jobs_expired=1", "miners_inactive=1", "output_chunks_deleted=0"
    ]
    assert second.getvalue().split() == [
        "leases_recovered=0", "jobs_expired=0", "miners_inactive=0", "output_chunks_deleted=0"
    ]
    assert Job.objects.get(pk=running["id"]).status == JobStatus.PENDING


@pytest.mark.django_db
def test_cleanup_miners_purges_only_long_silent_miners_without_history(client_api, miner_api) -> None:
    idle = register_miner(miner_api)
    worked = register_miner(miner_api)
    job = submit_job(client_api)
    poll(miner_api, worked["id"])
    post_result(miner_api, worked["id"], job["id"])
    Miner.objects.update(last_heartbeat=timezone.now() - timedelta(days=31))
    output = StringIO()
    call_command("cleanup_miners", "--purge-after", "30", stdout=output)
    assert "miners_purged=1" in output.getvalue()
    assert [str(pk) for pk in Miner.objects.values_list("pk", flat=True)] == [worked["id"]]
    assert not Miner.objects.filter(pk=idle["id"]).exists()
    assert JobAttempt.objects.filter(miner_id=worked["id"]).exists()
