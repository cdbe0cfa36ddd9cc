"""Hand-out: a poll gives a miner the pending jobs it can run, each to exactly one miner."""

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from aitbc_site import rendering
from jobs import queries
from jobs.models import AttemptOutcome, Job, JobAttempt, JobEvent, JobStatus
from jobs.services.leases import lease_end, recover_expired_leases
from jobs.services.maintenance import expire_job
from jobs.services.transitions import miner_actor, record_events, transition
from jobs.services.unrenderable import UNRENDERABLE_JOB, Document, set_aside_unrenderable
from miners.models import Miner, MinerStatus
from miners.selectors import another_capable_miner_exists
from miners.services import miner_touch

logger = logging.getLogger(__name__)

# How many queued jobs one poll may look at to find ones whose `models` requirement the miner meets.
CLAIM_SCAN_LIMIT = 200
# How many lapsed leases one poll recovers before handing out work, so a poll's cost stays bounded.
LEASE_RECOVERY_BATCH = 50


@dataclass
class ClaimResult:
    jobs: list[Job] = field(default_factory=list)
    # The miner's document of each job in `jobs`, in order: rendered before the hand-out committed.
    documents: list[Any] = field(default_factory=list)
    # Why nothing was handed out: "no_matching_jobs", "at_capacity" or "draining"; None when jobs were.
    reason: str | None = None
    # Jobs this poll met whose document cannot be rendered: failed UNRENDERABLE_JOB instead of handed out.
    set_aside: list[UUID] = field(default_factory=list)


def _meets_requirements(miner: Miner, requirements: dict[str, Any]) -> bool:
    wanted_models = requirements.get("models") or []
    if not wanted_models:
        return True
    return set(wanted_models) <= set(miner.resources.get("models") or [])


def _jobs_just_failed_by(miner: Miner, job_ids: list[UUID]) -> set[UUID]:
    """Of these jobs, the ones whose previous attempt this miner failed."""
    return set(
        JobAttempt.objects.filter(
            job_id__in=job_ids, miner=miner, outcome=AttemptOutcome.FAILED
        ).values_list("job_id", flat=True)
    )


def job_claim(*, miner: Miner, limit: int, document: Document, look_first: bool = False) -> ClaimResult:
    """Hand the miner up to `limit` pending jobs it can run, highest priority first, then oldest, each with its
    `document`; a job whose document cannot be rendered is failed instead and its place given to the next one.
    `look_first` (a long-poll, which mostly finds nothing): see whether any job is there before taking SQLite's
    write lock for the hand-out's transaction."""
    now = timezone.now()
    miner_touch(miner=miner, now=now)
    if miner.status == MinerStatus.DRAINING:
        return ClaimResult(reason="draining")
    recover_expired_leases(now=now, batch=LEASE_RECOVERY_BATCH)
    capacity = min(limit, miner.max_concurrent_jobs - queries.running_count(miner_id=miner.pk))
    if capacity <= 0:
        return ClaimResult(reason="at_capacity")
    if look_first and not queries.claim_candidates(miner, now, exclude_ids=set(), limit=1):
        return ClaimResult(reason="no_matching_jobs")

    claimed: list[Job] = []
    documents: list[Any] = []
    set_aside: list[UUID] = []
    passed_over: set[UUID] = set()
    scanned = 0
    # The hand-outs' events and attempts, written together at the end rather than two inserts per job.
    events: list[JobEvent] = []
    attempts: list[JobAttempt] = []
    with transaction.atomic():
        # Read only as many candidates as there is room for. Jobs the miner cannot take are passed over and a
        # batch as large as all read so far is read next, up to CLAIM_SCAN_LIMIT in all. The transaction (SQLite)
        # or the row locks (PostgreSQL) keep what was read claimable until the end.
        while len(claimed) < capacity and scanned < CLAIM_SCAN_LIMIT:
            size = min(max(capacity - len(claimed), scanned), CLAIM_SCAN_LIMIT - scanned)
            batch = queries.claim_candidates(miner, now, exclude_ids=passed_over, limit=size)
            scanned += len(batch)
            retried = [job.pk for job in batch if job.attempts > 0]
            retried_here = _jobs_just_failed_by(miner, retried) if retried else set()
            for job in batch:
                if len(claimed) == capacity:
                    break
                if job.expires_at <= now:
                    expire_job(job_id=job.pk, now=now)
                    continue
                skip = not _meets_requirements(miner, job.requirements) or (
                    job.pk in retried_here and another_capable_miner_exists(miner=miner, job_type=job.job_type, now=now)
                )
                if skip:
                    passed_over.add(job.pk)
                    continue
                try:
                    handed = _start_attempt(
                        job=job, miner=miner, now=now, events=events, attempts=attempts, document=document
                    )
                except rendering.Unrenderable as problem:
                    # Its slot goes to the next candidate (read on if need be): one bad row must not make a miner
                    # with room wait out a back-off while other work is queued. Only this rare path reads more.
                    if set_aside_unrenderable(
                        job_id=job.pk, expected=JobStatus.PENDING, problem=problem, now=now, events=events,
                        reason="the poll that met it could not render its document, so it was not handed out",
                    ):
                        logger.warning("Job %s failed %s, not handed out: %s", job.pk, UNRENDERABLE_JOB, problem.reason)
                        set_aside.append(job.pk)
                    passed_over.add(job.pk)
                    continue
                if handed is None:
                    passed_over.add(job.pk)
                else:
                    claimed.append(job)
                    documents.append(handed)
            if len(batch) < size:
                break
        record_events(events)
        queries.insert_attempts(attempts)
    if not claimed:
        return ClaimResult(reason="no_matching_jobs", set_aside=set_aside)
    return ClaimResult(jobs=claimed, documents=documents, set_aside=set_aside)


def _start_attempt(
    *, job: Job, miner: Miner, now: datetime, events: list[JobEvent], attempts: list[JobAttempt], document: Document
) -> Any:
    """Hand a pending job to the miner: its document, or None if another request changed the job first; `job`
    then reads as the running hand-out. Its event and attempt row are added to `events` and `attempts`, for the
    caller to write before its transaction ends. Raises Unrenderable, having written nothing, if the document
    cannot be rendered."""
    reason = f"attempt {job.attempts + 1} handed to the miner"
    handout: dict[str, Any] = {
        "miner": miner,
        "attempts": job.attempts + 1,
        "handouts": job.handouts + 1,
        "started_at": now,
        "progress": None,
        "lease_expires_at": lease_end(started_at=now, max_runtime=job.max_runtime_seconds, now=now),
    }
    # The document is made from the job as the hand-out leaves it and rendered before the hand-out is written, so
    # nothing is committed that the answer could not carry. The instance is the caller's to drop if this fails.
    for name, value in handout.items():
        setattr(job, name, value)
    answer = document(job)
    rendering.render(answer)
    started = transition(
        job_id=job.pk,
        expected=JobStatus.PENDING,
        new=JobStatus.RUNNING,
        actor=miner_actor(miner.pk),
        reason=reason,
        now=now,
        job=job,
        events=events,
        **handout,
    )
    if not started:
        return None
    attempts.append(JobAttempt(job_id=job.pk, number=job.handouts, miner=miner, started_at=now))
    return answer
