import itertools
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from jobs.models import JOB_TRANSITIONS, TERMINAL_STATUSES, Job, JobEvent, JobStatus
from jobs.queries import claim_candidates_query
from jobs.services.transitions import transition
from jobs.tests.factories import make_job, make_miner

ALL_PAIRS = list(itertools.product(JobStatus.values, repeat=2))


@pytest.mark.parametrize(("current", "new"), ALL_PAIRS)
@pytest.mark.django_db
def test_transition_allows_exactly_the_moves_of_the_table(current: str, new: str) -> None:
    miner = make_miner()
    job = make_job(status=current, miner=miner if current == JobStatus.RUNNING else None)
    now = timezone.now()
    extra = {"miner": miner, "lease_expires_at": now + timedelta(minutes=1)} if new == JobStatus.RUNNING else {}
    if (current, new) in JOB_TRANSITIONS:
        assert transition(job_id=job.pk, expected=current, new=new, actor="system", reason="test", now=now, **extra)
        job.refresh_from_db()
        assert job.status == new
        event = JobEvent.objects.get(job=job)
        assert (event.from_status, event.to_status, event.actor) == (current, new, "system")
    else:
        with pytest.raises(ValueError, match="illegal job transition"):
            transition(job_id=job.pk, expected=current, new=new, actor="system", reason="test", now=now, **extra)
        job.refresh_from_db()
        assert job.status == current
        assert not JobEvent.objects.filter(job=job).exists()


def test_terminal_statuses_have_no_way_out() -> None:
    assert not [pair for pair in JOB_TRANSITIONS if pair[0] in TERMINAL_STATUSES]


@pytest.mark.django_db
def test_a_transition_from_a_stale_status_changes_nothing() -> None:
    job = make_job(status=JobStatus.CANCELLED)
    assert not transition(
        job_id=job.pk, expected=JobStatus.PENDING, new=JobStatus.EXPIRED, actor="system", reason="test",
        now=timezone.now(),
    )
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    assert not JobEvent.objects.exists()


@pytest.mark.django_db
def test_a_transition_guarded_by_a_hand_out_changes_nothing_once_the_job_was_handed_out_again() -> None:
    miner = make_miner()
    job = make_job(status=JobStatus.RUNNING, miner=miner, handouts=2)
    now = timezone.now()
    finish = {
        "expected": JobStatus.RUNNING,
        "new": JobStatus.COMPLETED,
        "actor": "system",
        "reason": "test",
        "now": now,
    }

    assert not transition(job_id=job.pk, expected_handouts=1, **finish)
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING
    assert not JobEvent.objects.filter(job=job).exists()

    assert transition(job_id=job.pk, expected_handouts=2, **finish)
    assert Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL plans from its statistics; this is SQLite's plan")
@pytest.mark.django_db
def test_the_claim_reads_the_queue_index_in_hand_out_order_whatever_the_queue_length() -> None:
    query = claim_candidates_query(make_miner(), timezone.now(), exclude_ids=set(), limit=10)
    assert query is not None
    sql, params = query

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        plan = " | ".join(row[-1] for row in cursor.fetchall())

    assert "USING INDEX job_claim_queue" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
