"""Results: a miner's result ends its attempt, moves the job, settles it if it ended, and is signed as a receipt."""

from datetime import datetime
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from jobs import queries
from jobs.exceptions import InvalidJobState, JobCancelled, JobNotFound, LeaseExpired, OutputMismatch
from jobs.models import TERMINAL_STATUSES, AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.selectors import attempt_output
from jobs.services.leases import max_attempts_error, retry_delay
from jobs.services.settlement import payment_for, settle
from jobs.services.transitions import miner_actor, transition
from miners.selectors import miner_get_for_owner
from receipts.canonical import sha256_tag
from receipts.models import Receipt
from receipts.selectors import receipt_for_attempt
from receipts.services import receipt_issue


def job_submit_result(
    *,
    miner_id: UUID,
    owner: User,
    job_id: UUID | str,
    status: str,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    retryable: bool = True,
) -> tuple[Job, Receipt]:
    """Accept the result of the owner's miner for its attempt and sign its receipt; an identical replay gets the
    same answer. A miner that is not the owner's is MINER_NOT_FOUND.

    The result is judged before the write transaction begins, so SQLite's one writer is not held up by reads; the
    writes then only go through if nothing they were judged on has changed (the attempt is still unreported, the
    job still in the status and hand-out it was read in), else the result is judged again.
    """
    for _ in range(3):
        job, attempt, replay = _judge_result(
            miner_id=miner_id, owner=owner, job_id=job_id, status=status, result=result, error=error
        )
        if replay:
            receipt = receipt_for_attempt(job_id=job.pk, attempt=attempt.number)
            if receipt is None:
                raise InvalidJobState("The first post of this result is still being recorded; try again.")
            return job, receipt
        with transaction.atomic():
            now = timezone.now()
            outcome = AttemptOutcome.COMPLETED if status == JobStatus.COMPLETED else AttemptOutcome.FAILED
            report = {"reported_status": status, "result": result, "error": error, "metrics": metrics}
            recorded = queries.record_attempt_report(
                attempt_id=attempt.pk,
                output_chunks=attempt.output_chunks,
                values={**report, "finished_at": now, "outcome": outcome},
            )
            if not recorded:
                # Another post for this attempt was recorded since (a result, or output): judge again.
                continue
            if _apply_result(
                job=job, miner_id=miner_id, status=status, result=result, error=error, retryable=retryable, now=now
            ):
                if job.status in TERMINAL_STATUSES:
                    payment = settle(job=job, end=job.status)
                else:
                    payment = payment_for(job, end=status)
                # The record's compare-and-set held the attempt's chunks to what was judged; output posted since
                # finds the attempt reported and is refused, so the hash covers exactly what was kept.
                output_hash = bind_output(attempt=attempt, result=result)
                receipt = receipt_issue(
                    job_id=job.pk, client_id=job.client_id, job_type=job.job_type, attempt=attempt.number,
                    miner_id=miner_id, status=status, result=result, error=error, metrics=metrics,
                    started_at=attempt.started_at, completed_at=now, payment=payment, output_hash=output_hash,
                )
                return job, receipt
            # The job changed between our read and our write. Undo the attempt's record and judge again.
            transaction.set_rollback(True)
    raise InvalidJobState("The job changed while its result was being recorded; try again.")


def bind_output(*, attempt: JobAttempt, result: dict[str, Any] | None) -> str | None:
    """The hash of the attempt's partial output (None if it posted none), which its receipt signs. A result that
    repeats the output as `output` must repeat it exactly (OUTPUT_MISMATCH)."""
    if not attempt.output_chunks:
        return None
    output = attempt_output(job_id=attempt.job_id, attempt=attempt.number)
    if result is not None and "output" in result:
        repeated = result["output"]
        if not isinstance(repeated, str) or repeated.encode("utf-8", "surrogatepass") != output:
            raise OutputMismatch(details={"output_bytes": len(output)})
    return sha256_tag(output)


def _judge_result(
    *, miner_id: UUID, owner: User, job_id: UUID | str, status: str, result: Any, error: Any
) -> tuple[Job, JobAttempt, bool]:
    """Decide whether this miner's result counts: (job, its attempt, whether this is a replay of a recorded post)."""
    attempt, job = attempt_of_miner(miner_id=miner_id, owner=owner, job_id=job_id)
    if attempt.reported_status is not None:
        if (attempt.reported_status, attempt.result, attempt.error) == (status, result, error):
            return job, attempt, True
        raise InvalidJobState("A different result was already posted for this attempt.")
    check_attempt_counts(job=job, attempt=attempt, miner_id=miner_id, late=True)
    return job, attempt, False


def attempt_of_miner(*, miner_id: UUID, owner: User, job_id: UUID | str) -> tuple[JobAttempt, Job]:
    """The miner's latest attempt at the job, with the job. A miner that is not the owner's is MINER_NOT_FOUND."""
    try:
        found = queries.latest_attempt_with_job(job_id=job_id, miner_id=miner_id, owner_id=owner.pk)
    except (ValueError, ValidationError):
        raise JobNotFound() from None
    if found is None:
        # Which error it is only matters when there is one, so it is worked out only then. A job this miner never
        # held is JOB_NOT_FOUND whether or not it exists: a miner learns nothing of jobs that are not its own.
        miner_get_for_owner(miner_id=miner_id, owner=owner)
        raise JobNotFound()
    return found


def check_attempt_counts(*, job: Job, attempt: JobAttempt, miner_id: UUID, late: bool) -> None:
    """Refuse what the miner sends for an attempt that no longer counts: the job was cancelled, handed out again, or
    ended. `late` accepts the last attempt of a job back in the queue after its lease lapsed (nobody took it since)."""
    if job.status == JobStatus.CANCELLED:
        raise JobCancelled()
    if attempt.number != job.handouts:
        raise LeaseExpired()
    if job.status == JobStatus.RUNNING and job.miner_id == miner_id:
        return
    if job.status == JobStatus.PENDING:
        if late:
            # The lease lapsed but nobody took the job since: the work is not wasted.
            return
        raise LeaseExpired()
    raise InvalidJobState(f"The job is already {job.status}.", details={"status": job.status})


def _apply_result(
    *, job: Job, miner_id: UUID, status: str, result: Any, error: Any, retryable: bool, now: datetime
) -> bool:
    """Move the job as the miner's result says. False if the job changed since it was judged."""

    def move(new: str, reason: str, **fields: Any) -> bool:
        # Only from the status and the hand-out the result was judged against.
        return transition(
            job_id=job.pk,
            expected=job.status,
            expected_handouts=job.handouts,
            new=new,
            actor=miner_actor(miner_id),
            reason=reason,
            now=now,
            job=job,
            **fields,
        )

    # A late result of a lapsed lease finds the job pending with no miner: the job ends under the miner that did it.
    ending = {"miner_id": miner_id, "completed_at": now, "lease_expires_at": None}
    if status == JobStatus.COMPLETED:
        return move(
            JobStatus.COMPLETED, "the miner posted its result", result=result, error=None, progress=1.0, **ending
        )
    if not retryable or job.attempts >= job.max_attempts:
        final_error = error
        reason = "the miner reported a failure that cannot be retried"
        if retryable:
            reason = "the miner reported a failure and no attempts are left"
            final_error = max_attempts_error(job, error)
        return move(JobStatus.FAILED, reason, error=final_error, **ending)
    if job.status == JobStatus.PENDING:
        # Already back in the queue after a lapsed lease: the failure is noted on the attempt, the job waits.
        return True
    return move(
        JobStatus.PENDING,
        "the miner reported a failure; the job will be retried",
        miner=None,
        lease_expires_at=None,
        progress=None,
        not_before=now + retry_delay(job.attempts),
    )
