"""Maintenance: deadlines pass, and the stored state catches up with what reads already show."""

from datetime import datetime
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.selectors import overdue
from jobs.services.leases import recover_expired_leases
from jobs.services.output import delete_kept_output
from jobs.services.settlement import settle
from jobs.services.transitions import SYSTEM, transition
from miners.services import mark_silent_miners_inactive


def expire_job(*, job_id: UUID, now: datetime) -> bool:
    """End a pending job whose time to live ran out, giving its hold back. False if it changed first."""
    with transaction.atomic(savepoint=False):
        expired = transition(
            job_id=job_id,
            expected=JobStatus.PENDING,
            new=JobStatus.EXPIRED,
            actor=SYSTEM,
            reason="its time to live ran out before it ran",
            now=now,
            completed_at=now,
        )
        if expired:
            settle(job=Job.objects.get(pk=job_id), end=JobStatus.EXPIRED)
    return expired


def expire_overdue_jobs(*, now: datetime) -> int:
    """Store `expired` for pending jobs past their deadline (they already read as expired)."""
    overdue_ids = Job.objects.filter(overdue(now=now)).values_list("id", flat=True)
    return sum(expire_job(job_id=job_id, now=now) for job_id in list(overdue_ids))


def catch_up_stored_state() -> dict[str, int]:
    """Make the stored state match what reads already show: lapsed leases, overdue jobs, silent miners; and delete
    the partial output kept past its retention."""
    now = timezone.now()
    return {
        "leases_recovered": recover_expired_leases(now=now),
        "jobs_expired": expire_overdue_jobs(now=now),
        "miners_inactive": mark_silent_miners_inactive(now=now),
        "output_chunks_deleted": delete_kept_output(now=now),
    }
