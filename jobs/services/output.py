"""Partial output: the miner holding a job posts its output as it goes, in chunks numbered from 0 per attempt, and
maintenance deletes the output of jobs that ended long ago.

A post that keeps chunks makes two compare-and-sets before it inserts them. The job's `output_bytes`, under the
conditions that make the miner the holder (running, this hand-out, this miner, lease not lapsed): a requeue or a
cancel moves the job by compare-and-set on the same row, so a post either commits before the job moves or finds it
moved and is refused, and an attempt's chunks never follow the next attempt's (ids run in (attempt, seq) order). And
the attempt's `output_chunks` (the next seq), while it has no result: the result is recorded by compare-and-set on
the same row and the count it was judged with, so its receipt's output_hash covers every chunk kept, and chunks
never follow the result. Two posts racing for the same attempt: one of them finds the counts moved and judges again.
A post takes the job's row, then the attempt's, as a requeue or a cancel does; a result takes them the other way
round, so a post gives way rather than wait for an attempt row that is taken.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.models import User
from jobs import queries, selectors, topics
from jobs.exceptions import InvalidJobState, LeaseExpired, OutputOutOfOrder, OutputTooLarge
from jobs.models import TERMINAL_STATUSES, Job, JobAttempt, JobOutputChunk
from jobs.services.results import attempt_of_miner, check_attempt_counts

# PostgreSQL's SQLSTATE for a NOWAIT lock that another transaction holds.
LOCK_NOT_AVAILABLE = "55P03"
# Chunks a maintenance round deletes at most; the rest wait for the next round, so one round stays short.
OUTPUT_DELETE_BATCH = 5000


@dataclass(frozen=True)
class OutputChunk:
    """A chunk as posted: its seq, its bytes (text as UTF-8, base64 decoded), how it was sent, and progress."""

    seq: int
    data: bytes
    encoding: str
    progress: float | None = None


@dataclass(frozen=True)
class OutputPosted:
    job_id: UUID
    attempt: int
    next_seq: int
    # The job's output in bytes, all attempts, as counted against JOB_OUTPUT_MAX_BYTES.
    bytes: int


def job_post_output(
    *, miner_id: UUID, owner: User, job_id: UUID | str, chunks: Sequence[OutputChunk]
) -> OutputPosted:
    """Keep the chunks the owner's miner posts for the attempt it holds (consecutive seqs, at least one); a chunk
    posted again with the same bytes is a no-op, with other bytes a conflict."""
    for _ in range(3):
        now = timezone.now()
        attempt, job = attempt_of_miner(miner_id=miner_id, owner=owner, job_id=job_id)
        if attempt.reported_status is not None:
            raise InvalidJobState("This attempt's result was already posted; its output is closed.")
        check_attempt_counts(job=job, attempt=attempt, miner_id=miner_id, late=False)
        if job.lease_expires_at is None or job.lease_expires_at <= now:
            raise LeaseExpired("This miner's lease on the job lapsed; renew it with heartbeats.")
        next_seq = attempt.output_chunks
        first = chunks[0].seq
        if first > next_seq:
            raise OutputOutOfOrder(details={"expected_seq": next_seq})
        _check_repeats(job=job, attempt=attempt.number, chunks=[chunk for chunk in chunks if chunk.seq < next_seq])
        fresh = [chunk for chunk in chunks if chunk.seq >= next_seq]
        if not fresh:
            return OutputPosted(job_id=job.pk, attempt=attempt.number, next_seq=next_seq, bytes=job.output_bytes)
        posted = sum(len(chunk.data) for chunk in fresh)
        total = job.output_bytes + posted
        if total > settings.JOB_OUTPUT_MAX_BYTES:
            raise OutputTooLarge(
                details={"max_bytes": settings.JOB_OUTPUT_MAX_BYTES, "bytes": job.output_bytes, "posted": posted}
            )
        if _keep(job=job, attempt=attempt, miner_id=miner_id, chunks=fresh, total=total, now=now):
            return OutputPosted(job_id=job.pk, attempt=attempt.number, next_seq=fresh[-1].seq + 1, bytes=total)
        # The job moved, or another post kept chunks, since they were read: judge again on what is there now.
    raise InvalidJobState("The job changed while its output was being recorded; try again.")


def _check_repeats(*, job: Job, attempt: int, chunks: list[OutputChunk]) -> None:
    if not chunks:
        return
    kept = selectors.output_kept(job_id=job.pk, attempt=attempt, seqs=range(chunks[0].seq, chunks[-1].seq + 1))
    for chunk in chunks:
        if kept.get(chunk.seq) != chunk.data:
            raise InvalidJobState(
                "A chunk with this seq was already posted with other data.", details={"seq": chunk.seq}
            )


def _keep(
    *, job: Job, attempt: JobAttempt, miner_id: UUID, chunks: list[OutputChunk], total: int, now: datetime
) -> bool:
    """Store the chunks if the miner still holds the attempt and its output is as read. False otherwise."""
    progress = [chunk.progress for chunk in chunks if chunk.progress is not None]
    try:
        with transaction.atomic():
            held = queries.grow_output(
                job_id=job.pk, miner_id=miner_id, handouts=attempt.number, now=now, bytes_before=job.output_bytes,
                total=total, progress=progress[-1] if progress else None,
            )
            if not held:
                return False
            # A result locks the attempt, then the job: waiting for the attempt while holding the job could
            # deadlock with it (PostgreSQL). Give way instead; judged again, the post finds the result.
            queries.lock_attempt_or_give_way(attempt_id=attempt.pk)
            counted = queries.count_attempt_chunks(
                attempt_id=attempt.pk, chunks_before=attempt.output_chunks, chunks=chunks[-1].seq + 1
            )
            if not counted:
                transaction.set_rollback(True)
                return False
            queries.insert_output_chunks([
                JobOutputChunk(
                    job_id=job.pk,
                    attempt=attempt.number,
                    seq=chunk.seq,
                    data=chunk.data,
                    encoding=chunk.encoding,
                    size=len(chunk.data),
                    progress=chunk.progress,
                    created_at=now,
                )
                for chunk in chunks
            ])
            topics.publish_output(job_id=job.pk)
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        return False
    return True


def delete_kept_output(*, now: datetime, batch: int = OUTPUT_DELETE_BATCH) -> int:
    """Delete the partial output of jobs that ended more than JOB_OUTPUT_RETENTION_SECONDS ago, at most `batch`
    chunks a round (a few statements, however many jobs); the number deleted."""
    cutoff = now - timedelta(seconds=settings.JOB_OUTPUT_RETENTION_SECONDS)
    ended = Job.objects.filter(output_bytes__gt=0, completed_at__lte=cutoff, status__in=TERMINAL_STATUSES)
    job_ids = list(ended.order_by("completed_at").values_list("pk", flat=True)[:batch])
    if not job_ids:
        return 0
    chunks = JobOutputChunk.objects.filter(job_id__in=job_ids).order_by("pk").values_list("pk", flat=True)[:batch]
    deleted = JobOutputChunk.objects.filter(pk__in=list(chunks)).delete()[0]
    # The jobs whose output is all gone leave the index maintenance walks. They ended, so no post counts on it.
    emptied = Job.objects.filter(pk__in=job_ids).exclude(Exists(JobOutputChunk.objects.filter(job_id=OuterRef("pk"))))
    emptied.update(output_bytes=0)
    return deleted
