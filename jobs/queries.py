"""The jobs app's hand-written statements: every SQL text and `statements` call of the app lives here.

Each function answers one question of the hot path (or makes one write) in the fewest statements; services and
selectors call these, and `aitbc_site.statements` runs them with Django's own conversion of every value.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from functools import cache, partial
from typing import Any
from uuid import UUID

from django.db import connection

from aitbc_site import statements
from jobs.models import Job, JobAttempt, JobEvent, JobOutputChunk, JobStatus, JobTypePrice
from miners.models import Miner

# The columns a hand-out reads and answers with; the rest of a job stays in the database. A field the miner's job
# document reads must be named here, or every job handed out costs a query of its own (a query budget test fails).
ASSIGNMENT_FIELDS = (
    "id", "job_type", "parameters", "requirements", "priority", "attempts", "handouts", "max_runtime_seconds",
    "expires_at", "original_type",
)
# A LIMIT that both SQLite and PostgreSQL take for "no limit".
ALL_ROWS = 2**63 - 1

# A whole job, under the alias `j`.
_JOB_COLUMNS = statements.Columns(Job, alias="j")
_ASSIGNMENT_COLUMNS = statements.Columns(Job, ASSIGNMENT_FIELDS, alias="j")
_LAPSED_COLUMNS = statements.Columns(Job, ("id", "miner"), alias="j")
_PRICE_COLUMNS = statements.Columns(JobTypePrice, ("job_type", "price"), alias="p")
_JUDGED_ATTEMPT = statements.Columns(
    JobAttempt,
    ("id", "job", "number", "miner", "started_at", "reported_status", "result", "error", "output_chunks"),
    alias="a",
)


def job_of_client(*, job_id: UUID | str, client_id: UUID) -> Job | None:
    """The whole job if it is this client's. Raises ValueError or ValidationError for a malformed id."""
    return _JOB_COLUMNS.get(id=job_id, client=client_id)


def stored_price(*, job_type: str) -> Decimal | None:
    """The price operators set for a job type, None if it was never stored."""
    stored = _PRICE_COLUMNS.get(job_type=job_type)
    return None if stored is None else stored.price


def insert_job(job: Job) -> None:
    statements.insert([job])


def change_status(
    *, job_id: UUID, expected: str, expected_handouts: int | None, values: Mapping[str, Any]
) -> bool:
    """The compare-and-set of a status change: write `values` only if the job is still in `expected` (and in that
    hand-out, when given). Its WHERE clause is the lock: of two racing writers exactly one changes the row."""
    current: dict[str, Any] = {"id": job_id, "status": expected}
    if expected_handouts is not None:
        current["handouts"] = expected_handouts
    return statements.update(Job, where=current, values=values) == 1


def job_types_of(*, job_ids: Sequence[UUID]) -> set[str]:
    return set(Job.objects.filter(pk__in=job_ids).values_list("job_type", flat=True))


def insert_events(events: Sequence[JobEvent]) -> None:
    statements.insert(events)


def insert_attempts(attempts: Sequence[JobAttempt]) -> None:
    statements.insert(attempts)


# --- hand-out ---------------------------------------------------------------------------------------------------


def claim_candidates_query(
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
        # of `change_status` still decides who gets a job.
        sql += " FOR UPDATE OF j SKIP LOCKED"
    return sql, [*params, limit]


def claim_candidates(miner: Miner, now: datetime, *, exclude_ids: set[UUID], limit: int) -> list[Job]:
    """The next `limit` jobs the miner may take, loaded with ASSIGNMENT_FIELDS only."""
    query = claim_candidates_query(miner, now, exclude_ids=exclude_ids, limit=limit)
    return [] if query is None else [_ASSIGNMENT_COLUMNS.load(row) for row in statements.fetch_all(*query)]


@cache
def _running_count_sql() -> str:
    miner, status = statements.column(Job, "miner"), statements.column(Job, "status")
    return f"SELECT COUNT(*) FROM {statements.table(Job)} WHERE {miner} = %s AND {status} = %s"


def running_count(*, miner_id: UUID) -> int:
    """How many jobs the miner is running now."""
    params = [statements.db_value(Job, "miner", miner_id), JobStatus.RUNNING]
    counted = statements.fetch_one(_running_count_sql(), params)
    return counted[0] if counted else 0


# --- leases -----------------------------------------------------------------------------------------------------


@cache
def _lapsed_leases_sql() -> str:
    status, lease = statements.column(Job, "status"), statements.column(Job, "lease_expires_at")
    return (
        f"SELECT {_LAPSED_COLUMNS.sql} FROM {statements.table(Job)} j WHERE j.{status} = %s AND j.{lease} <= %s"
        f" ORDER BY j.{lease} LIMIT %s"
    )


def lapsed_leases(*, now: datetime, batch: int | None) -> list[Job]:
    """Running jobs whose lease ended, soonest first (`id` and `miner` only), through the lease index: a poll runs
    this every time."""
    rows = statements.fetch_all(
        _lapsed_leases_sql(),
        [JobStatus.RUNNING, statements.db_value(Job, "lease_expires_at", now), batch or ALL_ROWS],
    )
    return [_LAPSED_COLUMNS.load(row) for row in rows]


# --- results ----------------------------------------------------------------------------------------------------


@cache
def _latest_attempt_sql() -> str:
    attempt, job, miner = statements.table(JobAttempt), statements.table(Job), statements.table(Miner)
    a_job, a_miner, a_number = (statements.column(JobAttempt, name) for name in ("job", "miner", "number"))
    j_id = statements.column(Job, "id")
    m_id, m_owner = statements.column(Miner, "id"), statements.column(Miner, "owner")
    return (
        f"SELECT {_JUDGED_ATTEMPT.sql}, {_JOB_COLUMNS.sql} FROM {attempt} a"
        f" JOIN {job} j ON j.{j_id} = a.{a_job} JOIN {miner} m ON m.{m_id} = a.{a_miner}"
        f" WHERE a.{a_job} = %s AND a.{a_miner} = %s AND m.{m_owner} = %s ORDER BY a.{a_number} DESC LIMIT 1"
    )


def latest_attempt_with_job(
    *, job_id: UUID | str, miner_id: UUID, owner_id: UUID
) -> tuple[JobAttempt, Job] | None:
    """The miner's latest attempt at the job, with the whole job, if the miner is the owner's: one read.
    Raises ValueError or ValidationError for a malformed id."""
    params = [
        statements.db_value(JobAttempt, "job", job_id),
        statements.db_value(JobAttempt, "miner", miner_id),
        statements.db_value(Miner, "owner", owner_id),
    ]
    row = statements.fetch_one(_latest_attempt_sql(), params)
    if row is None:
        return None
    return _JUDGED_ATTEMPT.load(row), _JOB_COLUMNS.load(row, start=_JUDGED_ATTEMPT.width)


def lock_attempt_or_give_way(*, attempt_id: int) -> None:
    """Lock the attempt's row, or raise OperationalError (LOCK_NOT_AVAILABLE) at once if another transaction holds
    it. SQLite has no row locks; its one writer already serialises the writes this orders."""
    if connection.features.has_select_for_update_nowait:
        list(JobAttempt.objects.select_for_update(nowait=True).filter(pk=attempt_id).values_list("pk"))


def record_attempt_report(*, attempt_id: int, output_chunks: int, values: Mapping[str, Any]) -> bool:
    """Write what the miner reported on its attempt, unless a report was recorded first or the attempt posted
    output chunks since it was read."""
    where = {"id": attempt_id, "reported_status": None, "output_chunks": output_chunks}
    return statements.update(JobAttempt, where=where, values=values) == 1


# --- partial output ---------------------------------------------------------------------------------------------


@cache
def _grow_output_sql(with_progress: bool) -> str:
    column = partial(statements.column, Job)
    progress = f", {column('progress')} = %s" if with_progress else ""
    return (
        f"UPDATE {statements.table(Job)} SET {column('output_bytes')} = %s{progress}"
        f" WHERE {column('id')} = %s AND {column('status')} = %s AND {column('miner')} = %s"
        f" AND {column('handouts')} = %s AND {column('lease_expires_at')} > %s AND {column('output_bytes')} = %s"
    )


def grow_output(
    *, job_id: UUID, miner_id: UUID, handouts: int, now: datetime, bytes_before: int, total: int,
    progress: float | None,
) -> bool:
    """Count the job's output as `total` bytes (and its progress, if given) if the miner still holds this hand-out
    under a live lease and the count is still `bytes_before`: the compare-and-set a post of chunks makes first."""
    params: list[Any] = [total, *([progress] if progress is not None else [])]
    params += [
        statements.db_value(Job, "id", job_id), JobStatus.RUNNING, statements.db_value(Job, "miner", miner_id),
        handouts, statements.db_value(Job, "lease_expires_at", now), bytes_before,
    ]
    return statements.execute(_grow_output_sql(progress is not None), params) == 1


def count_attempt_chunks(*, attempt_id: int, chunks_before: int, chunks: int) -> bool:
    """Count the attempt's chunks as `chunks` if it has no result and still counts `chunks_before`."""
    where = {"id": attempt_id, "reported_status": None, "output_chunks": chunks_before}
    return statements.update(JobAttempt, where=where, values={"output_chunks": chunks}) == 1


def insert_output_chunks(chunks: Sequence[JobOutputChunk]) -> None:
    statements.insert(chunks)
