"""A stored job whose document JSON cannot carry (a "poison job") is set aside, never handed out, and never answered
as a 500.

Such a row cannot be stored through the API once the parser refuses bad input, and PostgreSQL's jsonb refuses it
anyway ("Unicode low surrogate must follow a high surrogate"), so the tests that need one write it into a SQLite
JSON column directly, as text, the way an older release stored it. What does not depend on the database (a
document that cannot be rendered, set aside by a poll with its hold released) is tested on both.
"""

from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from accounts.selectors import ledger_problems
from aitbc_site import rendering
from conftest import poll, register_miner, submit_job
from jobs.models import AttemptOutcome, Job, JobAttempt, JobEvent, JobStatus
from jobs.serializers import AssignmentSerializer
from jobs.services.handout import job_claim
from jobs.tests.factories import make_job, make_miner
from jobs.tests.test_billing import balances, wallet_client
from miners.models import Miner

JOBS = "/v1/client/jobs"
# JSON text SQLite accepts (json_valid) that reads back as a value no response can carry.
LONE_SURROGATE = '{"x": "\\ud800"}'
NOT_FINITE = '{"x": 1e999}'

@pytest.fixture(autouse=True)
def _prices(settings: Any, db: None) -> Any:
    settings.JOB_PRICES = {"llm_inference": Decimal("2.5")}
    yield
    assert ledger_problems() == []


@pytest.fixture
def stored_as_text() -> None:
    """Only SQLite keeps a JSON column as text that can hold what no document can carry."""
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's jsonb refuses a lone surrogate and keeps 1e999 as an exact, finite number")


def store_json_text(job_id: Any, column: str, text: str) -> None:
    """Write JSON text into a job's column, past the API and the ORM's encoder (what an older release let in)."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(Job._meta.db_table)} SET {quote(Job._meta.get_field(column).column)} = %s WHERE"
            f" {quote(Job._meta.pk.column)} = %s",
            [text, Job._meta.pk.get_db_prep_value(Job._meta.pk.to_python(job_id), connection)],
        )


def assert_set_aside(job_id: Any, *, field: str = "parameters") -> Job:
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.FAILED
    assert job.error["code"] == "UNRENDERABLE_JOB", job.error
    assert job.error["details"] == {"fields": [field]}
    assert job.completed_at is not None and job.lease_expires_at is None
    [event] = JobEvent.objects.filter(job=job, to_status=JobStatus.FAILED)
    assert event.actor == "system"
    return job


# --- the hand-out -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [LONE_SURROGATE, NOT_FINITE], ids=["lone surrogate", "infinite number"])
def test_a_poll_hands_out_the_others_and_sets_the_poison_job_aside(
    stored_as_text: None, miner_api: APIClient, text: str
) -> None:
    user, api = wallet_client(deposit="10")
    poison = submit_job(api, priority=9)
    innocent = [submit_job(api, parameters={"n": n}) for n in range(2)]
    store_json_text(poison["id"], "parameters", text)
    miner = register_miner(miner_api, max_concurrent_jobs=5)

    # The poison job is first in hand-out order; its slot goes to the next job.
    answer = poll(miner_api, miner["id"], limit=2)

    assert [assignment["id"] for assignment in answer["results"]] == [job["id"] for job in innocent]
    assert "reason" not in answer
    set_aside = assert_set_aside(poison["id"])
    assert (set_aside.attempts, set_aside.handouts, set_aside.miner_id) == (0, 0, None)
    assert not JobAttempt.objects.filter(job=set_aside).exists()
    assert list(JobEvent.objects.filter(job=set_aside).values_list("from_status", flat=True)) == [JobStatus.PENDING]
    for job in innocent:
        stored = Job.objects.get(pk=job["id"])
        assert (stored.status, stored.attempts, str(stored.miner_id)) == (JobStatus.RUNNING, 1, miner["id"])
    # Its hold is given back; the two handed out stay held.
    assert balances(user) == (Decimal("5"), Decimal("5"))


def test_a_poll_that_meets_only_a_poison_job_answers_empty_and_the_next_poll_is_not_stuck(
    stored_as_text: None, miner_api: APIClient
) -> None:
    user, api = wallet_client(deposit="10")
    poison = submit_job(api)
    store_json_text(poison["id"], "requirements", LONE_SURROGATE)
    miner = register_miner(miner_api)

    empty = poll(miner_api, miner["id"])
    later = submit_job(api)
    next_poll = poll(miner_api, miner["id"])

    assert (empty["results"], empty["reason"]) == ([], "no_matching_jobs")
    assert_set_aside(poison["id"], field="requirements")
    assert [assignment["id"] for assignment in next_poll["results"]] == [later["id"]]
    assert balances(user) == (Decimal("7.5"), Decimal("2.5"))


def test_a_document_that_cannot_be_rendered_is_set_aside_on_every_database(db: None) -> None:
    """A document holding a value no JSON can carry (a NaN handed in by the document function, since PostgreSQL
    itself stores none) is set aside on every database."""
    user, api = wallet_client(deposit="10")
    poison, innocent = submit_job(api, priority=9), submit_job(api)
    miner = make_miner(max_concurrent_jobs=5)

    def document(job: Job) -> dict[str, Any]:
        answer = AssignmentSerializer().to_representation(job)
        return {**answer, "parameters": {"x": float("nan")}} if str(job.pk) == poison["id"] else answer

    claim = job_claim(miner=Miner.objects.get(pk=miner.pk), limit=5, document=document)

    assert [str(job.pk) for job in claim.jobs] == [innocent["id"]]
    assert [answer["id"] for answer in claim.documents] == [innocent["id"]]
    assert [str(job_id) for job_id in claim.set_aside] == [poison["id"]]
    job = assert_set_aside(poison["id"])
    assert "not finite" in job.error["message"]
    assert (job.attempts, JobAttempt.objects.filter(job=job).count()) == (0, 0)
    assert balances(user) == (Decimal("7.5"), Decimal("2.5"))


# A poll handing out one job, as before hand-outs were rendered in their transaction: the key, the miner, lapsed
# leases, the running count, then in the claim's transaction (a savepoint inside the test's own) the candidates,
# the compare-and-set and the event and attempt inserts.
POLL_STATEMENTS = 10


def test_a_document_our_code_failed_to_convert_is_a_bug_not_a_poison_job(db: None) -> None:
    """Setting aside every job a poll meets would hide the bug behind plausible failures: it surfaces instead."""
    _, api = wallet_client(deposit="10")
    job = submit_job(api)
    miner = make_miner(max_concurrent_jobs=5)

    def document(job: Job) -> dict[str, Any]:
        return {**AssignmentSerializer().to_representation(job), "parameters": {"x": object()}}

    with pytest.raises(TypeError):
        job_claim(miner=Miner.objects.get(pk=miner.pk), limit=5, document=document)

    assert Job.objects.get(pk=job["id"]).status == "pending"


def test_a_normal_poll_costs_no_more_statements(
    client_api: APIClient, miner_api: APIClient, django_assert_num_queries: Any
) -> None:
    """Rendering the hand-out inside its transaction costs CPU, not statements."""
    submit_job(client_api)
    miner = register_miner(miner_api)

    with django_assert_num_queries(POLL_STATEMENTS):
        assert len(poll(miner_api, miner["id"])["results"]) == 1



# --- the client's reads -----------------------------------------------------------------------------------------


def test_reading_a_poison_job_answers_it_with_the_bad_values_replaced(stored_as_text: None) -> None:
    _, api = wallet_client(deposit="10")
    body = {"job_type": "llm_inference", "parameters": {"x": "ok"}}
    poison = api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1").json()
    store_json_text(poison["id"], "parameters", '{"x": "a\\ud800b", "\\udfff": [1e999, 1.5]}')
    submit_job(api)

    read = api.get(f"{JOBS}/{poison['id']}")
    listed = api.get(JOBS)
    replayed = api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    expected = {"x": "a\ufffdb", "\ufffd": [None, 1.5]}
    assert read.status_code == 200, read.content
    assert read.json()["parameters"] == expected
    assert listed.status_code == 200, listed.content
    assert [job["parameters"] for job in listed.json()["results"]][1] == expected
    assert replayed.status_code == 200, replayed.content
    assert (replayed.json()["id"], replayed.json()["parameters"]) == (poison["id"], expected)
    # Only the answer is replaced: the stored row is as it was until a poll or the command sets it aside.
    assert Job.objects.get(pk=poison["id"]).parameters["x"] == "a\ud800b"


def test_reading_a_poison_job_after_it_was_set_aside_shows_why(stored_as_text: None, miner_api: APIClient) -> None:
    _, api = wallet_client(deposit="10")
    poison = submit_job(api)
    store_json_text(poison["id"], "parameters", LONE_SURROGATE)
    poll(miner_api, register_miner(miner_api)["id"])

    read = api.get(f"{JOBS}/{poison['id']}").json()

    assert (read["status"], read["error"]["code"]) == ("failed", "UNRENDERABLE_JOB")
    assert read["parameters"] == {"x": "\ufffd"}
    assert "U+D800" in read["error"]["message"]


# --- the renderer -----------------------------------------------------------------------------------------------


def test_the_renderer_writes_what_drf_writes_and_recovers_only_from_stored_values() -> None:
    from rest_framework.renderers import JSONRenderer as DRFRenderer

    ordinary = {"a": ["ü", 1.5, None, "\u2028"], "b": {"c": True}}

    assert rendering.JSONRenderer().render(ordinary) == DRFRenderer().render(ordinary) == rendering.render(ordinary)
    assert rendering.JSONRenderer().render({"a": "\ud800", "b": float("nan")}) == b'{"a":"\xef\xbf\xbd","b":null}'
    with pytest.raises(TypeError):
        rendering.JSONRenderer().render({"a": object()})
    with pytest.raises(TypeError):
        rendering.render({"a": object()})
    with pytest.raises(rendering.Unrenderable) as raised:
        rendering.render({"fine": 1, "bad": "\udc00", "worse": float("inf")})
    assert raised.value.fields == ["bad", "worse"]
    assert "U+DC00" in raised.value.reason


# --- the command ------------------------------------------------------------------------------------------------


def test_the_command_sets_aside_stored_poison_jobs_and_is_idempotent(stored_as_text: None) -> None:
    user, api = wallet_client(deposit="10")
    pending, clean = submit_job(api), submit_job(api)
    store_json_text(pending["id"], "parameters", LONE_SURROGATE)
    miner = make_miner()
    running = make_job(status=JobStatus.RUNNING, miner=miner, handouts=1)
    JobAttempt.objects.create(job=running, number=1, miner=miner, started_at=running.created_at)
    store_json_text(running.pk, "parameters", NOT_FINITE)
    completed = make_job(status=JobStatus.COMPLETED, miner=miner, result={"text": "hi"})
    store_json_text(completed.pk, "result", LONE_SURROGATE)

    dry = call(["--dry-run", "--chunk-size", "1"])
    assert Job.objects.get(pk=pending["id"]).status == JobStatus.PENDING
    first = call(["--chunk-size", "2"])
    again = call([])

    assert dry[-1] == "would_set_aside=2 left=1 already_set_aside=0 changed=0", dry
    assert first[-1] == "set_aside=2 left=1 already_set_aside=0 changed=0", first
    assert f"set_aside job={pending['id']} status=pending:" in "\n".join(first)
    assert again[-1] == "set_aside=0 left=1 already_set_aside=2 changed=0", again
    assert_set_aside(pending["id"])
    assert_set_aside(running.pk)
    assert JobAttempt.objects.get(job=running).outcome == AttemptOutcome.CANCELLED
    assert Job.objects.get(pk=completed.pk).status == JobStatus.COMPLETED
    assert Job.objects.get(pk=clean["id"]).status == JobStatus.PENDING
    assert balances(user) == (Decimal("7.5"), Decimal("2.5"))


def call(arguments: list[str]) -> list[str]:
    out = StringIO()
    call_command("quarantine_unrenderable_jobs", *arguments, stdout=out)
    return out.getvalue().splitlines()
