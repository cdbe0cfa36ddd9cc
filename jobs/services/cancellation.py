"""Cancellation: a client (or an operator on its behalf) ends a pending or running job; its hold is given back."""

from django.db import transaction
from django.utils import timezone

from jobs.exceptions import InvalidJobState
from jobs.models import Job, JobStatus
from jobs.selectors import effective_status
from jobs.services.leases import end_attempt_as_cancelled
from jobs.services.maintenance import expire_job
from jobs.services.settlement import settle
from jobs.services.transitions import CLIENT, transition


def job_cancel(*, job: Job, actor: str = CLIENT, reason: str = "cancelled by its client") -> Job:
    """Cancel a pending or running job; cancelling a cancelled job again changes nothing."""
    now = timezone.now()
    for _ in range(3):
        job.refresh_from_db()
        current = effective_status(job)
        if current == JobStatus.CANCELLED:
            return job
        if current == JobStatus.EXPIRED and job.status == JobStatus.PENDING:
            expire_job(job_id=job.pk, now=now)
            continue
        if current not in (JobStatus.PENDING, JobStatus.RUNNING):
            raise InvalidJobState(f"A {current} job cannot be cancelled.", details={"status": current})
        with transaction.atomic():
            if transition(
                job_id=job.pk, expected=current, new=JobStatus.CANCELLED, actor=actor, reason=reason, now=now,
                completed_at=now, lease_expires_at=None,
            ):
                # The price, the client and billing are fixed at submission: the instance read above settles.
                settle(job=job, end=JobStatus.CANCELLED)
                if current == JobStatus.RUNNING:
                    end_attempt_as_cancelled(job=job, now=now)
                job.refresh_from_db()
                return job
    # Three lost races in a row: the job is changing faster than we can read it; let the client try again.
    raise InvalidJobState("The job changed while it was being cancelled; try again.")
