"""Leases: a running job is its miner's while its lease lasts. Heartbeats renew it, a miner releases a job by no
longer reporting it, and a lapsed lease puts the job back in the queue (or fails it on its last attempt)."""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs import queries
from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.services.settlement import settle
from jobs.services.transitions import SYSTEM, miner_actor, transition
from miners.models import Miner
from miners.services import miner_record_heartbeat


def lease_end(*, started_at: datetime, max_runtime: int, now: datetime) -> datetime:
    """A lease lasts JOB_LEASE_SECONDS from now, but never beyond the attempt's maximum runtime."""
    return min(now + timedelta(seconds=settings.JOB_LEASE_SECONDS), started_at + timedelta(seconds=max_runtime))


def retry_delay(attempt: int) -> timedelta:
    """Exponential back-off: the base doubled per attempt already made, with ±20 % jitter to spread retries out."""
    base = settings.JOB_RETRY_BACKOFF_SECONDS * 2 ** max(attempt - 1, 0)
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def max_attempts_error(job: Job, last_error: Any) -> dict[str, Any]:
    return {
        "code": "MAX_ATTEMPTS_EXCEEDED",
        "message": f"The job failed {job.max_attempts} attempt(s).",
        "details": {"last_error": last_error},
    }


@dataclass
class HeartbeatResult:
    miner: Miner
    held_jobs: list[UUID]
    cancelled_jobs: list[UUID]


def miner_heartbeat(
    *,
    miner: Miner,
    status: str | None = None,
    jobs: list[dict[str, Any]] | None = None,
    reported: dict[str, Any] | None = None,
) -> HeartbeatResult:
    """Record a sign of life (with what the miner `reported` of itself, when given); renew the miner's leases (all,
    or exactly those listed) and release the unlisted."""
    now = timezone.now()
    miner_record_heartbeat(miner=miner, status=status, now=now, reported=reported)
    held = list(
        Job.objects.filter(miner=miner, status=JobStatus.RUNNING).only("id", "started_at", "max_runtime_seconds")
    )
    reported = {str(item["job_id"]): item.get("progress") for item in jobs} if jobs is not None else None
    kept: list[UUID] = []
    for job in held:
        if reported is not None and str(job.pk) not in reported:
            end_attempt_and_requeue(
                job_id=job.pk,
                miner=miner,
                outcome=AttemptOutcome.RELEASED,
                actor=miner_actor(miner.pk),
                reason="the miner no longer reports the job",
                now=now,
                back_off=False,
            )
            continue
        progress = reported.get(str(job.pk)) if reported is not None else None
        renewal: dict[str, Any] = {
            "lease_expires_at": lease_end(started_at=job.started_at, max_runtime=job.max_runtime_seconds, now=now)
        }
        if progress is not None:
            renewal["progress"] = progress
        # Only while this miner still holds it: it may have been cancelled or requeued since it was read.
        if Job.objects.filter(pk=job.pk, miner=miner, status=JobStatus.RUNNING).update(**renewal):
            kept.append(job.pk)

    cancelled_since = now - timedelta(seconds=settings.JOB_LEASE_SECONDS)
    cancelled = list(
        JobAttempt.objects.filter(
            miner=miner,
            outcome=AttemptOutcome.CANCELLED,
            reported_status__isnull=True,
            finished_at__gte=cancelled_since,
        ).values_list("job_id", flat=True)
    )
    return HeartbeatResult(miner=miner, held_jobs=kept, cancelled_jobs=cancelled)


def end_attempt_and_requeue(
    *, job_id: UUID, miner: Miner, outcome: str, actor: str, reason: str, now: datetime, back_off: bool
) -> bool:
    """Take a running job away from its miner: back to pending, or failed (its hold given back) if that was its
    last attempt."""
    with transaction.atomic():
        job = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, miner=miner).first()
        if job is None:
            return False
        attempt = JobAttempt.objects.filter(job_id=job_id, number=job.handouts).first()
        if job.attempts >= job.max_attempts and outcome != AttemptOutcome.RELEASED:
            moved = transition(
                job_id=job_id,
                expected=JobStatus.RUNNING,
                new=JobStatus.FAILED,
                actor=actor,
                reason=f"{reason}; no attempts left",
                now=now,
                job=job,
                expected_handouts=job.handouts,
                completed_at=now,
                lease_expires_at=None,
                error=max_attempts_error(
                    job, attempt.error if attempt and attempt.error else {"code": "LEASE_EXPIRED", "message": reason}
                ),
            )
            if moved:
                settle(job=job, end=JobStatus.FAILED)
        else:
            moved = transition(
                job_id=job_id,
                expected=JobStatus.RUNNING,
                new=JobStatus.PENDING,
                actor=actor,
                reason=reason,
                now=now,
                job=job,
                expected_handouts=job.handouts,
                miner=None,
                lease_expires_at=None,
                progress=None,
                not_before=now + retry_delay(job.attempts) if back_off else now,
                # A released hand-out was never really tried: it does not count, so a miner restart costs no attempt.
                **({"attempts": job.attempts - 1} if outcome == AttemptOutcome.RELEASED else {}),
            )
        if moved and attempt is not None:
            JobAttempt.objects.filter(pk=attempt.pk, outcome__isnull=True).update(outcome=outcome, finished_at=now)
    return moved


def end_attempt_as_cancelled(*, job: Job, now: datetime) -> None:
    """Close the running attempt of a job ended under its miner; the miner's next heartbeat tells it to stop."""
    JobAttempt.objects.filter(job=job, number=job.handouts, outcome__isnull=True).update(
        outcome=AttemptOutcome.CANCELLED, finished_at=now
    )


def recover_expired_leases(*, now: datetime, batch: int | None = None) -> int:
    """Requeue (or fail, if it was the last attempt) every running job whose lease has lapsed."""
    recovered = 0
    for job in queries.lapsed_leases(now=now, batch=batch):
        recovered += end_attempt_and_requeue(
            job_id=job.pk,
            miner=Miner(pk=job.miner_id),
            outcome=AttemptOutcome.LEASE_EXPIRED,
            actor=SYSTEM,
            reason="the miner's lease expired",
            now=now,
            back_off=True,
        )
    return recovered
