"""What operators do to a job from the admin: requeue a running one, or fail a pending or running one."""

from django.db import transaction
from django.utils import timezone

from jobs.exceptions import InvalidJobState
from jobs.models import AttemptOutcome, Job, JobStatus
from jobs.selectors import effective_status
from jobs.services.leases import end_attempt_and_requeue, end_attempt_as_cancelled
from jobs.services.settlement import settle
from jobs.services.transitions import operator_actor, transition
from miners.models import Miner


def job_requeue_by_operator(*, job: Job, operator: str) -> Job:
    """Take a running job from its miner and queue it again at once (no back-off, the attempt is not counted)."""
    job.refresh_from_db()
    if job.status != JobStatus.RUNNING or not end_attempt_and_requeue(
        job_id=job.pk,
        miner=Miner(pk=job.miner_id),
        outcome=AttemptOutcome.RELEASED,
        actor=operator_actor(operator),
        reason="requeued by an operator",
        now=timezone.now(),
        back_off=False,
    ):
        raise InvalidJobState(f"Only a running job can be requeued; this one is {effective_status(job)}.")
    job.refresh_from_db()
    return job


def job_fail_by_operator(*, job: Job, operator: str, reason: str = "failed by an operator") -> Job:
    """End a pending or running job as failed; its hold is released."""
    job.refresh_from_db()
    current = effective_status(job)
    if current not in (JobStatus.PENDING, JobStatus.RUNNING):
        raise InvalidJobState(f"A {current} job cannot be failed.")
    now = timezone.now()
    with transaction.atomic():
        failed = transition(
            job_id=job.pk, expected=current, new=JobStatus.FAILED, actor=operator_actor(operator), reason=reason,
            now=now, completed_at=now, lease_expires_at=None,
            error={"code": "FAILED_BY_OPERATOR", "message": reason},
        )
        if failed:
            settle(job=job, end=JobStatus.FAILED)
            if current == JobStatus.RUNNING:
                end_attempt_as_cancelled(job=job, now=now)
    if not failed:
        raise InvalidJobState("The job changed while it was being failed; try again.")
    job.refresh_from_db()
    return job
