"""Jobs: the whole life of a job, from submission through hand-out and results to its end.

App dependencies point one way: accounts ← miners ← receipts ← jobs. Only this module changes a job's status, and
only through `transition`, a compare-and-set that is race-safe on SQLite and PostgreSQL alike.
"""

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache, partial
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts import ledger
from accounts.models import User
from accounts.services import wallet_user_for
from aitbc_site import rendering, statements
from jobs.exceptions import (
    IdempotencyKeyReused,
    InvalidJobState,
    JobCancelled,
    JobNotFound,
    LeaseExpired,
    PriceAboveMax,
)
from jobs.models import JOB_TRANSITIONS, TERMINAL_STATUSES, AttemptOutcome, Job, JobAttempt, JobEvent, JobStatus
from jobs.selectors import JOB_COLUMNS, effective_status, job_type_price, overdue
from miners.models import Miner, MinerStatus
from miners.selectors import miner_get_for_owner, reads_inactive, silent_since
from receipts.models import Receipt
from receipts.selectors import receipt_for_attempt
from receipts.services import receipt_issue

logger = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)
SYSTEM = "system"
CLIENT = "client"
# How many queued jobs one poll may look at to find ones whose `models` requirement the miner meets.
CLAIM_SCAN_LIMIT = 200
# The columns a hand-out reads and answers with; the rest of a job stays in the database.
ASSIGNMENT_FIELDS = (
    "id", "job_type", "parameters", "requirements", "priority", "attempts", "handouts", "max_runtime_seconds",
    "expires_at",
)
# How many lapsed leases one poll recovers before handing out work, so a poll's cost stays bounded.
LEASE_RECOVERY_BATCH = 50
# A LIMIT that both SQLite and PostgreSQL take for "no limit".
ALL_ROWS = 2**63 - 1


def miner_actor(miner_id: UUID) -> str:
    return f"miner:{miner_id}"


def transition(
    *,
    job_id: UUID,
    expected: str,
    new: str,
    actor: str,
    reason: str,
    now: datetime,
    job: Job | None = None,
    expected_handouts: int | None = None,
    events: list[JobEvent] | None = None,
    **fields: Any,
) -> bool:
    """Move a job from `expected` to `new` if, and only if, it is still in `expected`; record the event.

    Returns False when another request changed the job first. The UPDATE's WHERE clause is the lock: of two racing
    callers exactly one changes the row, on every database. `expected_handouts` narrows it to one hand-out: a job
    requeued and handed to another miner since it was read is `running` again, but not the same attempt. A caller
    holding the job's instance passes it as `job`: it then gets the written fields, so nobody reads the row back.
    A caller moving many jobs in one transaction passes `events`: the event is added to it, and the caller writes
    them all in one statement before the transaction ends.
    """
    if (expected, new) not in JOB_TRANSITIONS:
        raise ValueError(f"illegal job transition {expected} → {new}")
    # No savepoint of its own: nothing here recovers from a failed statement, so an error must end the caller's
    # whole transaction anyway, and a savepoint per change is a large share of a hand-out's statements.
    with transaction.atomic(savepoint=False):
        current: dict[str, Any] = {"id": job_id, "status": expected}
        if expected_handouts is not None:
            current["handouts"] = expected_handouts
        changed = statements.update(Job, where=current, values={"status": new, "updated_at": now, **fields})
        if changed != 1:
            return False
        event = JobEvent(job_id=job_id, at=now, from_status=expected, to_status=new, actor=actor, reason=reason)
        if events is None:
            statements.insert([event])
        else:
            events.append(event)
        if job is not None:
            job.status, job.updated_at = new, now
            for name, value in fields.items():
                setattr(job, name, value)
        if new in TERMINAL_STATUSES:
            _settle(job=job or Job.objects.get(pk=job_id), status=new)
    return True


def job_fee_and_earnings(job: Job) -> tuple[Decimal, Decimal]:
    """What completing the job pays: (platform fee, the miner's share). Nothing for jobs that are not billed."""
    if not job.billed:
        return Decimal("0"), Decimal("0")
    fee = ledger.quantize_down(job.price * settings.PLATFORM_FEE_RATE)
    return fee, job.price - fee


def _settle(*, job: Job, status: str) -> None:
    """Move a billed job's hold at its end: paid out on completion, given back on any other end."""
    if not job.billed or not job.price:
        return
    job_id = job.pk
    if status == JobStatus.COMPLETED:
        fee, _ = job_fee_and_earnings(job)
        ledger.capture(
            payer_id=job.client_id,
            payee_id=_wallet_user_id_of_miner(job.miner_id),
            amount=job.price,
            fee=fee,
            reference=f"job:{job_id}:capture",
            memo=f"{job.job_type} job {job_id} completed by miner {job.miner_id}",
        )
    else:
        ledger.release(
            user_id=job.client_id,
            amount=job.price,
            reference=f"job:{job_id}:release",
            memo=f"{job.job_type} job {job_id} {status}",
        )


_USER_ID_COLUMNS = statements.Columns(User, ("id",), alias="u")


@cache
def _miner_wallet_user_sql() -> str:
    u_id, u_wallet = statements.column(User, "id"), statements.column(User, "wallet_address")
    m_id, m_address = statements.column(Miner, "id"), statements.column(Miner, "address")
    return (
        f"SELECT u.{u_id} FROM {statements.table(Miner)} m JOIN {statements.table(User)} u"
        f" ON u.{u_wallet} = m.{m_address} WHERE m.{m_id} = %s"
    )


def _wallet_user_id_of_miner(miner_id: UUID) -> UUID:
    """The user of the wallet a miner is paid to: one read, and the user created the first time it earns."""
    row = statements.fetch_one(_miner_wallet_user_sql(), [statements.db_value(Miner, "id", miner_id)])
    if row is not None:
        return _USER_ID_COLUMNS.load(row).pk
    return wallet_user_for(address=Miner.objects.values_list("address", flat=True).get(pk=miner_id)).pk


def _retry_delay(attempt: int) -> timedelta:
    """Exponential back-off: the base doubled per attempt already made, with ±20 % jitter to spread retries out."""
    base = settings.JOB_RETRY_BACKOFF_SECONDS * 2 ** max(attempt - 1, 0)
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


# --- submission -------------------------------------------------------------------------------------------------


def job_submit(
    *,
    client: User,
    job_type: str,
    parameters: dict[str, Any],
    requirements: dict[str, Any],
    priority: int = 0,
    ttl_seconds: int | None = None,
    max_attempts: int | None = None,
    max_runtime_seconds: int | None = None,
    max_price: Decimal | None = None,
    idempotency_key: str | None = None,
    request_body: Any = None,
) -> tuple[Job, bool]:
    """Create a job and hold its price, or return the job an identical earlier request with the same
    Idempotency-Key created."""
    now = timezone.now()
    if idempotency_key:
        replayed = _idempotent_replay(
            client=client, idempotency_key=idempotency_key, request_body=request_body, now=now
        )
        if replayed is not None:
            return replayed, False
    price = job_type_price(job_type=job_type)
    if max_price is not None and price > max_price:
        raise PriceAboveMax(details={"price": str(price), "max_price": str(max_price)})
    gpu_model = requirements.get("gpu_model")
    job = Job(
        client=client,
        job_type=job_type,
        parameters=parameters,
        requirements=requirements,
        req_min_gpu_memory_gb=requirements.get("min_gpu_memory_gb"),
        req_gpu_model=gpu_model.lower() if gpu_model else None,
        req_region=requirements.get("region"),
        priority=priority,
        status=JobStatus.PENDING,
        max_attempts=max_attempts or settings.JOB_MAX_ATTEMPTS,
        max_runtime_seconds=max_runtime_seconds or settings.JOB_MAX_RUNTIME_SECONDS,
        created_at=now,
        updated_at=now,
        not_before=now,
        expires_at=now + timedelta(seconds=ttl_seconds or settings.JOB_TTL_SECONDS),
        price=price,
        billed=not client.is_service,
        idempotency_key=idempotency_key or None,
        idempotency_request=request_body if idempotency_key else None,
    )
    try:
        with transaction.atomic():
            statements.insert([job])
            if job.billed and price:
                ledger.hold(
                    user_id=client.pk, amount=price, reference=f"job:{job.pk}:hold", memo=f"{job_type} job {job.pk}"
                )
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the insert; answer as its replay.
        if not idempotency_key:
            raise
        replayed = _idempotent_replay(
            client=client, idempotency_key=idempotency_key, request_body=request_body, now=now
        )
        if replayed is None:
            raise
        return replayed, False
    return job, True


def _idempotent_replay(*, client: User, idempotency_key: str, request_body: Any, now: datetime) -> Job | None:
    earlier = Job.objects.filter(client=client, idempotency_key=idempotency_key).first()
    if earlier is None:
        return None
    if earlier.created_at < now - IDEMPOTENCY_WINDOW:
        # The key's window is over: free it for the new job. The old job keeps everything but the key.
        Job.objects.filter(pk=earlier.pk, idempotency_key=idempotency_key).update(idempotency_key=None)
        return None
    if earlier.idempotency_request != request_body:
        raise IdempotencyKeyReused()
    return earlier


# --- hand-out ---------------------------------------------------------------------------------------------------


# What a poll answers for a job it hands out (the view's AssignmentSerializer document).
Document = Callable[[Job], Any]


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


_ASSIGNMENT_COLUMNS = statements.Columns(Job, ASSIGNMENT_FIELDS, alias="j")


def _claim_candidates_query(
    miner: Miner, now: datetime, *, exclude_ids: set[UUID], limit: int
) -> tuple[str, list[Any]] | None:
    """The SELECT of the next `limit` pending jobs the miner may take, in hand-out order: (SQL, parameters), or
    None when the miner can take no job type at all."""
    if not miner.capabilities:
        return None
    column, resources = partial(statements.column, Job), miner.resources
    # No condition on the deadline: SQLite would then walk the deadline index and sort the whole queue instead of
    # reading the queue index in hand-out order, and a poll would slow down as the queue grows. The claim expires
    # the overdue jobs it meets instead.
    conditions = [
        f"j.{column('status')} = %s",
        f"j.{column('job_type')} IN ({', '.join(['%s'] * len(miner.capabilities))})",
        f"j.{column('not_before')} <= %s",
    ]
    params: list[Any] = [JobStatus.PENDING, *miner.capabilities, statements.db_value(Job, "not_before", now)]
    # A requirement the job states must be met by what the miner offers; a job that states none suits every miner.
    memory, gpu_model, region = resources.get("gpu_memory_gb"), resources.get("gpu_model"), resources.get("region")
    offers = (
        ("req_min_gpu_memory_gb", "<=", memory),
        ("req_gpu_model", "=", gpu_model.lower() if gpu_model else None),
        ("req_region", "=", region or None),
    )
    for requirement, comparison, offered in offers:
        if offered is None:
            conditions.append(f"j.{column(requirement)} IS NULL")
        else:
            conditions.append(f"(j.{column(requirement)} IS NULL OR j.{column(requirement)} {comparison} %s)")
            params.append(statements.db_value(Job, requirement, offered))
    if exclude_ids:
        conditions.append(f"j.{column('id')} NOT IN ({', '.join(['%s'] * len(exclude_ids))})")
        params += [statements.db_value(Job, "id", job_id) for job_id in exclude_ids]
    sql = (
        f"SELECT {_ASSIGNMENT_COLUMNS.sql} FROM {statements.table(Job)} j WHERE {' AND '.join(conditions)}"
        f" ORDER BY j.{column('priority')} DESC, j.{column('created_at')} ASC, j.{column('id')} ASC LIMIT %s"
    )
    if connection.features.has_select_for_update_skip_locked:
        # PostgreSQL: concurrent polls skip each other's candidates instead of queueing on them. The compare-and-set
        # in `transition` still decides who gets a job.
        sql += " FOR UPDATE OF j SKIP LOCKED"
    return sql, [*params, limit]


def _claim_candidates(miner: Miner, now: datetime, *, exclude_ids: set[UUID], limit: int) -> list[Job]:
    query = _claim_candidates_query(miner, now, exclude_ids=exclude_ids, limit=limit)
    return [] if query is None else [_ASSIGNMENT_COLUMNS.load(row) for row in statements.fetch_all(*query)]


def _jobs_just_failed_by(miner: Miner, job_ids: list[UUID]) -> set[UUID]:
    """Of these jobs, the ones whose previous attempt this miner failed."""
    return set(
        JobAttempt.objects.filter(
            job_id__in=job_ids, miner=miner, outcome=AttemptOutcome.FAILED
        ).values_list("job_id", flat=True)
    )


def _another_capable_miner_exists(miner: Miner, job_type: str, now: datetime) -> bool:
    others = Miner.objects.filter(status=MinerStatus.ACTIVE, disabled_at__isnull=True).exclude(
        reads_inactive(now=now)
    ).exclude(pk=miner.pk)
    return any(job_type in other.capabilities for other in others.only("capabilities"))


def job_claim(*, miner: Miner, limit: int, document: Document) -> ClaimResult:
    """Hand the miner up to `limit` pending jobs it can run, highest priority first, then oldest, each with its
    `document`; a job whose document cannot be rendered is failed instead and its place given to the next one."""
    now = timezone.now()
    miner_touch(miner=miner, now=now)
    if miner.status == MinerStatus.DRAINING:
        return ClaimResult(reason="draining")
    recover_expired_leases(now=now, batch=LEASE_RECOVERY_BATCH)
    miner_param = statements.db_value(Job, "miner", miner.pk)
    counted = statements.fetch_one(_running_count_sql(), [miner_param, JobStatus.RUNNING])
    running = counted[0] if counted else 0
    capacity = min(limit, miner.max_concurrent_jobs - running)
    if capacity <= 0:
        return ClaimResult(reason="at_capacity")

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
            batch = _claim_candidates(miner, now, exclude_ids=passed_over, limit=size)
            scanned += len(batch)
            retried = [job.pk for job in batch if job.attempts > 0]
            retried_here = _jobs_just_failed_by(miner, retried) if retried else set()
            for job in batch:
                if len(claimed) == capacity:
                    break
                if job.expires_at <= now:
                    _expire(job_id=job.pk, now=now)
                    continue
                skip = not _meets_requirements(miner, job.requirements) or (
                    job.pk in retried_here and _another_capable_miner_exists(miner, job.job_type, now)
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
                    if _set_aside_unrenderable(
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
        statements.insert(events)
        statements.insert(attempts)
    if not claimed:
        return ClaimResult(reason="no_matching_jobs", set_aside=set_aside)
    return ClaimResult(jobs=claimed, documents=documents, set_aside=set_aside)


def _lease_end(*, started_at: datetime, max_runtime: int, now: datetime) -> datetime:
    """A lease lasts JOB_LEASE_SECONDS from now, but never beyond the attempt's maximum runtime."""
    return min(now + timedelta(seconds=settings.JOB_LEASE_SECONDS), started_at + timedelta(seconds=max_runtime))


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
        "lease_expires_at": _lease_end(started_at=now, max_runtime=job.max_runtime_seconds, now=now),
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


UNRENDERABLE_JOB = "UNRENDERABLE_JOB"


def _set_aside_unrenderable(
    *,
    job_id: UUID,
    expected: str,
    problem: rendering.Unrenderable,
    now: datetime,
    reason: str,
    events: list[JobEvent] | None = None,
    expected_handouts: int | None = None,
) -> bool:
    """Fail a pending or running job whose document cannot be rendered, releasing its hold. False if the job
    changed first."""
    where = f" ({', '.join(problem.fields)})" if problem.fields else ""
    return transition(
        job_id=job_id,
        expected=expected,
        new=JobStatus.FAILED,
        actor=SYSTEM,
        reason=f"{reason}: {problem.reason}{where}",
        now=now,
        events=events,
        expected_handouts=expected_handouts,
        completed_at=now,
        lease_expires_at=None,
        error={
            "code": UNRENDERABLE_JOB,
            "message": f"The job's document cannot be rendered as JSON, so no miner is handed it: {problem.reason}.",
            "details": {"fields": problem.fields},
        },
    )


# --- liveness ---------------------------------------------------------------------------------------------------


def miner_touch(*, miner: Miner, now: datetime) -> None:
    """A poll counts as a sign of life: bring back an inactive miner, keep a draining one draining.

    A miner polling several times a second would write its row as often; a sign of life only has to be fresher
    than the liveness timeout, so it is written when a tenth of the timeout has passed (or the status changes).
    """
    new_status = MinerStatus.DRAINING if miner.status == MinerStatus.DRAINING else MinerStatus.ACTIVE
    fresh_since = now - timedelta(seconds=settings.MINER_HEARTBEAT_TIMEOUT / 10)
    if new_status == miner.status and miner.last_heartbeat is not None and miner.last_heartbeat > fresh_since:
        return
    Miner.objects.filter(pk=miner.pk).update(last_heartbeat=now, status=new_status)
    miner.last_heartbeat, miner.status = now, new_status


@dataclass
class HeartbeatResult:
    miner: Miner
    held_jobs: list[UUID]
    cancelled_jobs: list[UUID]


def miner_heartbeat(
    *, miner: Miner, status: str | None = None, jobs: list[dict[str, Any]] | None = None
) -> HeartbeatResult:
    """Record a sign of life; renew the miner's leases (all, or exactly those listed) and release the unlisted."""
    now = timezone.now()
    if status is not None:
        miner.status = status
    elif miner.status == MinerStatus.INACTIVE:
        miner.status = MinerStatus.ACTIVE
    miner.last_heartbeat = now
    Miner.objects.filter(pk=miner.pk).update(last_heartbeat=now, status=miner.status, updated_at=now)

    held = list(
        Job.objects.filter(miner=miner, status=JobStatus.RUNNING).only("id", "started_at", "max_runtime_seconds")
    )
    reported = {str(item["job_id"]): item.get("progress") for item in jobs} if jobs is not None else None
    kept: list[UUID] = []
    for job in held:
        if reported is not None and str(job.pk) not in reported:
            _end_attempt_and_requeue(
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
            "lease_expires_at": _lease_end(started_at=job.started_at, max_runtime=job.max_runtime_seconds, now=now)
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


def _end_attempt_and_requeue(
    *, job_id: UUID, miner: Miner, outcome: str, actor: str, reason: str, now: datetime, back_off: bool
) -> bool:
    """Take a running job away from its miner: back to pending, or failed if that was its last attempt."""
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
                error=_max_attempts_error(
                    job, attempt.error if attempt and attempt.error else {"code": "LEASE_EXPIRED", "message": reason}
                ),
            )
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
                not_before=now + _retry_delay(job.attempts) if back_off else now,
                # A released hand-out was never really tried: it does not count, so a miner restart costs no attempt.
                **({"attempts": job.attempts - 1} if outcome == AttemptOutcome.RELEASED else {}),
            )
        if moved and attempt is not None:
            JobAttempt.objects.filter(pk=attempt.pk, outcome__isnull=True).update(outcome=outcome, finished_at=now)
    return moved


def _max_attempts_error(job: Job, last_error: Any) -> dict[str, Any]:
    return {
        "code": "MAX_ATTEMPTS_EXCEEDED",
        "message": f"The job failed {job.max_attempts} attempt(s).",
        "details": {"last_error": last_error},
    }


@cache
def _running_count_sql() -> str:
    miner, status = statements.column(Job, "miner"), statements.column(Job, "status")
    return f"SELECT COUNT(*) FROM {statements.table(Job)} WHERE {miner} = %s AND {status} = %s"


_LAPSED_COLUMNS = statements.Columns(Job, ("id", "miner"), alias="j")


@cache
def _lapsed_leases_sql() -> str:
    """Running jobs whose lease ended, soonest first, through the lease index (a poll runs this every time)."""
    status, lease = statements.column(Job, "status"), statements.column(Job, "lease_expires_at")
    return (
        f"SELECT {_LAPSED_COLUMNS.sql} FROM {statements.table(Job)} j WHERE j.{status} = %s AND j.{lease} <= %s"
        f" ORDER BY j.{lease} LIMIT %s"
    )


def recover_expired_leases(*, now: datetime, batch: int | None = None) -> int:
    """Requeue (or fail, if it was the last attempt) every running job whose lease has lapsed."""
    lapsed = statements.fetch_all(
        _lapsed_leases_sql(),
        [JobStatus.RUNNING, statements.db_value(Job, "lease_expires_at", now), batch or ALL_ROWS],
    )
    recovered = 0
    for job in map(_LAPSED_COLUMNS.load, lapsed):
        recovered += _end_attempt_and_requeue(
            job_id=job.pk,
            miner=Miner(pk=job.miner_id),
            outcome=AttemptOutcome.LEASE_EXPIRED,
            actor=SYSTEM,
            reason="the miner's lease expired",
            now=now,
            back_off=True,
        )
    return recovered


def _expire(*, job_id: UUID, now: datetime) -> bool:
    return transition(
        job_id=job_id,
        expected=JobStatus.PENDING,
        new=JobStatus.EXPIRED,
        actor=SYSTEM,
        reason="its time to live ran out before it ran",
        now=now,
        completed_at=now,
    )


def expire_overdue_jobs(*, now: datetime) -> int:
    """Store `expired` for pending jobs past their deadline (they already read as expired)."""
    overdue_ids = Job.objects.filter(overdue(now=now)).values_list("id", flat=True)
    return sum(_expire(job_id=job_id, now=now) for job_id in list(overdue_ids))


# --- results ----------------------------------------------------------------------------------------------------


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
            recorded = statements.update(
                JobAttempt,
                where={"id": attempt.pk, "reported_status": None},
                values={
                    "reported_status": status,
                    "result": result,
                    "error": error,
                    "metrics": metrics,
                    "finished_at": now,
                    "outcome": AttemptOutcome.COMPLETED if status == JobStatus.COMPLETED else AttemptOutcome.FAILED,
                },
            )
            if not recorded:
                # Another post for this attempt was recorded since: judge again (a replay, or a different result).
                continue
            if _apply_result(
                job=job, miner_id=miner_id, status=status, result=result, error=error, retryable=retryable, now=now
            ):
                receipt = receipt_issue(
                    job_id=job.pk,
                    client_id=job.client_id,
                    job_type=job.job_type,
                    attempt=attempt.number,
                    miner_id=miner_id,
                    status=status,
                    result=result,
                    error=error,
                    metrics=metrics,
                    started_at=attempt.started_at,
                    completed_at=now,
                    extra=_receipt_payment(job=job, status=status),
                )
                return job, receipt
            # The job changed between our read and our write. Undo the attempt's record and judge again.
            transaction.set_rollback(True)
    raise InvalidJobState("The job changed while its result was being recorded; try again.")


def _receipt_payment(*, job: Job, status: str) -> dict[str, str]:
    _, earnings = job_fee_and_earnings(job) if status == JobStatus.COMPLETED else (None, Decimal("0"))
    return {"price": f"{job.price:.8f}", "miner_earnings": f"{earnings:.8f}"}


_JUDGED_ATTEMPT = statements.Columns(
    JobAttempt, ("id", "job", "number", "miner", "started_at", "reported_status", "result", "error"), alias="a"
)


@cache
def _latest_attempt_sql() -> str:
    """The miner's latest attempt at the job with the whole job, if the miner is the owner's: one read."""
    attempt, job, miner = statements.table(JobAttempt), statements.table(Job), statements.table(Miner)
    a_job, a_miner, a_number = (statements.column(JobAttempt, name) for name in ("job", "miner", "number"))
    j_id = statements.column(Job, "id")
    m_id, m_owner = statements.column(Miner, "id"), statements.column(Miner, "owner")
    return (
        f"SELECT {_JUDGED_ATTEMPT.sql}, {JOB_COLUMNS.sql} FROM {attempt} a"
        f" JOIN {job} j ON j.{j_id} = a.{a_job} JOIN {miner} m ON m.{m_id} = a.{a_miner}"
        f" WHERE a.{a_job} = %s AND a.{a_miner} = %s AND m.{m_owner} = %s ORDER BY a.{a_number} DESC LIMIT 1"
    )


def _judge_result(
    *, miner_id: UUID, owner: User, job_id: UUID | str, status: str, result: Any, error: Any
) -> tuple[Job, JobAttempt, bool]:
    """Decide whether this miner's result counts: (job, its attempt, whether this is a replay of a recorded post)."""
    try:
        params = [
            statements.db_value(JobAttempt, "job", job_id),
            statements.db_value(JobAttempt, "miner", miner_id),
            statements.db_value(Miner, "owner", owner.pk),
        ]
    except (ValueError, ValidationError):
        raise JobNotFound() from None
    row = statements.fetch_one(_latest_attempt_sql(), params)
    if row is None:
        # Which error it is only matters when there is one, so it is worked out only then. A job this miner never
        # held is JOB_NOT_FOUND whether or not it exists: a miner learns nothing of jobs that are not its own.
        miner_get_for_owner(miner_id=miner_id, owner=owner)
        raise JobNotFound()
    attempt, job = _JUDGED_ATTEMPT.load(row), JOB_COLUMNS.load(row, start=_JUDGED_ATTEMPT.width)
    if attempt.reported_status is not None:
        if (attempt.reported_status, attempt.result, attempt.error) == (status, result, error):
            return job, attempt, True
        raise InvalidJobState("A different result was already posted for this attempt.")
    if job.status == JobStatus.CANCELLED:
        raise JobCancelled()
    if attempt.number != job.handouts:
        raise LeaseExpired()
    if job.status == JobStatus.RUNNING and job.miner_id == miner_id:
        return job, attempt, False
    if job.status == JobStatus.PENDING:
        # The lease lapsed but nobody took the job since: the work is not wasted.
        return job, attempt, False
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
            final_error = _max_attempts_error(job, error)
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
        not_before=now + _retry_delay(job.attempts),
    )


# --- cancellation -----------------------------------------------------------------------------------------------


def job_cancel(*, job: Job, actor: str = CLIENT, reason: str = "cancelled by its client") -> Job:
    """Cancel a pending or running job; cancelling a cancelled job again changes nothing."""
    now = timezone.now()
    for _ in range(3):
        job.refresh_from_db()
        current = effective_status(job)
        if current == JobStatus.CANCELLED:
            return job
        if current == JobStatus.EXPIRED and job.status == JobStatus.PENDING:
            _expire(job_id=job.pk, now=now)
            continue
        if current not in (JobStatus.PENDING, JobStatus.RUNNING):
            raise InvalidJobState(f"A {current} job cannot be cancelled.", details={"status": current})
        with transaction.atomic():
            if transition(
                job_id=job.pk, expected=current, new=JobStatus.CANCELLED, actor=actor, reason=reason, now=now,
                completed_at=now, lease_expires_at=None,
            ):
                if current == JobStatus.RUNNING:
                    JobAttempt.objects.filter(job=job, number=job.handouts, outcome__isnull=True).update(
                        outcome=AttemptOutcome.CANCELLED, finished_at=now
                    )
                job.refresh_from_db()
                return job
    # Three lost races in a row: the job is changing faster than we can read it; let the client try again.
    raise InvalidJobState("The job changed while it was being cancelled; try again.")


# --- maintenance ------------------------------------------------------------------------------------------------


def mark_silent_miners_inactive(*, now: datetime) -> int:
    """Store `inactive` for miners silent longer than MINER_HEARTBEAT_TIMEOUT (they already read as inactive)."""
    return Miner.objects.filter(
        status__in=[MinerStatus.ACTIVE, MinerStatus.DRAINING], last_heartbeat__lt=silent_since(now=now)
    ).update(status=MinerStatus.INACTIVE, updated_at=now)


def catch_up_stored_state() -> dict[str, int]:
    """Make the stored state match what reads already show: lapsed leases, overdue jobs, silent miners."""
    now = timezone.now()
    return {
        "leases_recovered": recover_expired_leases(now=now),
        "jobs_expired": expire_overdue_jobs(now=now),
        "miners_inactive": mark_silent_miners_inactive(now=now),
    }


def purge_inactive_miners(*, inactive_for: timedelta, now: datetime) -> int:
    """Delete miners silent for `inactive_for` that never held a job or earned a receipt.

    Miners with a history stay as the archive."""
    silent_since = now - inactive_for
    purgeable = Miner.objects.filter(last_heartbeat__lt=silent_since).exclude(
        Q(jobs__isnull=False) | Q(attempts__isnull=False) | Q(receipts__isnull=False)
    )
    deleted, _ = Miner.objects.filter(pk__in=list(purgeable.values_list("pk", flat=True))).delete()
    return deleted


@dataclass
class UnrenderableJob:
    job_id: UUID
    # As it read when found (the effective status: a pending job past its deadline reads expired).
    status: str
    problem: str
    # "set_aside", "would_set_aside" (a dry run), "left" (already ended: reads answer it with the values replaced),
    # "already_set_aside", or "changed" (it moved while being set aside; a run again judges it anew).
    action: str


def quarantine_unrenderable_jobs(
    *, document: Document, dry_run: bool = False, chunk_size: int = 500
) -> list[UnrenderableJob]:
    """Find stored jobs whose `document` cannot be rendered; fail the pending and running ones as a poll would."""
    found: list[UnrenderableJob] = []
    after: UUID | None = None
    while True:
        # Through the primary key in chunks: the table may be large, and setting jobs aside changes no key.
        chunk = Job.objects.order_by("pk")
        if after is not None:
            chunk = chunk.filter(pk__gt=after)
        jobs = list(chunk[:chunk_size])
        if not jobs:
            return found
        after = jobs[-1].pk
        for job in jobs:
            try:
                rendering.render(document(job))
            except rendering.Unrenderable as problem:
                found.append(_quarantine(job=job, problem=problem, dry_run=dry_run))


def _quarantine(*, job: Job, problem: rendering.Unrenderable, dry_run: bool) -> UnrenderableJob:
    status = effective_status(job)
    found = UnrenderableJob(
        job_id=job.pk,
        status=status,
        problem=problem.reason + (f" ({', '.join(problem.fields)})" if problem.fields else ""),
        action="would_set_aside" if dry_run else "set_aside",
    )
    if status not in (JobStatus.PENDING, JobStatus.RUNNING):
        # An ended job keeps what it stored (a completed one was paid for and its receipt signed).
        already = isinstance(job.error, dict) and job.error.get("code") == UNRENDERABLE_JOB
        found.action = "already_set_aside" if already else "left"
        return found
    if dry_run:
        return found
    now = timezone.now()
    with transaction.atomic():
        moved = _set_aside_unrenderable(
            job_id=job.pk,
            expected=status,
            expected_handouts=job.handouts,
            problem=problem,
            now=now,
            reason="quarantine_unrenderable_jobs found that its document cannot be rendered",
        )
        if moved and status == JobStatus.RUNNING:
            # Its miner is told to stop through the heartbeat, as for any job ended under it.
            JobAttempt.objects.filter(job=job, number=job.handouts, outcome__isnull=True).update(
                outcome=AttemptOutcome.CANCELLED, finished_at=now
            )
    if not moved:
        found.action = "changed"
    return found


# --- operators --------------------------------------------------------------------------------------------------


def operator_actor(name: str) -> str:
    return f"operator:{name}"


def job_requeue_by_operator(*, job: Job, operator: str) -> Job:
    """Take a running job from its miner and queue it again at once (no back-off, the attempt is not counted)."""
    job.refresh_from_db()
    if job.status != JobStatus.RUNNING or not _end_attempt_and_requeue(
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
        if failed and current == JobStatus.RUNNING:
            JobAttempt.objects.filter(job=job, number=job.handouts, outcome__isnull=True).update(
                outcome=AttemptOutcome.CANCELLED, finished_at=now
            )
    if not failed:
        raise InvalidJobState("The job changed while it was being failed; try again.")
    job.refresh_from_db()
    return job
