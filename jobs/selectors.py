from datetime import datetime
from decimal import Decimal
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import User
from jobs import queries
from jobs.exceptions import JobNotFound
from jobs.models import Job, JobAttempt, JobEvent, JobOutputChunk, JobStatus, JobTypePrice
from miners.models import Miner


def effective_status(job: Job) -> str:
    """The status as it reads now: a pending job past its deadline is expired even before maintenance stores it."""
    if job.status == JobStatus.PENDING and job.expires_at <= timezone.now():
        return JobStatus.EXPIRED
    return job.status


def job_get_for_client(*, job_id: UUID | str, client: User) -> Job:
    """The caller's own job; another owner's job, or a malformed id, is JOB_NOT_FOUND."""
    try:
        job = queries.job_of_client(job_id=job_id, client_id=client.pk)
    except (ValueError, ValidationError):
        job = None
    if job is None:
        raise JobNotFound()
    return job


# The one home of the rule "a pending job past `expires_at` is expired, and never handed out, before maintenance
# stores it": the API, admin, dashboard, metrics and maintenance all read it from here.


def waiting(*, now: datetime) -> Q:
    """Jobs waiting for a miner now: pending and within their deadline."""
    return Q(status=JobStatus.PENDING, expires_at__gt=now)


def overdue(*, now: datetime) -> Q:
    """Jobs stored as pending that read as expired now."""
    return Q(status=JobStatus.PENDING, expires_at__lte=now)


def reads_expired(*, now: datetime) -> Q:
    """Jobs that read as expired now: stored so, or overdue."""
    return Q(status=JobStatus.EXPIRED) | overdue(now=now)


def oldest_waiting_since(*, now: datetime) -> datetime | None:
    """When the oldest job still waiting for a miner was submitted; None when none waits."""
    return Job.objects.filter(waiting(now=now)).order_by("created_at").values_list("created_at", flat=True).first()


def jobs_for_client(*, client: User, status: str | None = None, job_type: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.filter(client=client)
    now = timezone.now()
    if status == JobStatus.EXPIRED:
        jobs = jobs.filter(reads_expired(now=now))
    elif status == JobStatus.PENDING:
        jobs = jobs.filter(waiting(now=now))
    elif status:
        jobs = jobs.filter(status=status)
    if job_type:
        jobs = jobs.filter(job_type=job_type)
    return jobs


def job_events(*, job: Job) -> QuerySet[JobEvent]:
    return JobEvent.objects.filter(job=job)


def job_status(*, job_id: UUID) -> str:
    """The job's status as it reads now (`effective_status`)."""
    return job_status_and_handouts(job_id=job_id)[0]


def job_status_and_handouts(*, job_id: UUID) -> tuple[str, int]:
    """The job's status as it reads now, and the number of its latest hand-out (its current attempt)."""
    status, expires_at, handouts = (
        Job.objects.filter(pk=job_id).values_list("status", "expires_at", "handouts").get()
    )
    return (JobStatus.EXPIRED if status == JobStatus.PENDING and expires_at <= timezone.now() else status), handouts


def with_timeline_positions(events: list[JobEvent]) -> list[JobEvent]:
    """A page of one job's timeline, each event given its `position` in the whole timeline (from 1)."""
    if events:
        first = events[0]
        earlier = Q(at__lt=first.at) | Q(at=first.at, id__lt=first.pk)
        before = JobEvent.objects.filter(earlier, job_id=first.job_id).count()
        for offset, event in enumerate(events, start=1):
            event.position = before + offset
    return events


def attempt_outcome(*, job_id: UUID, number: int) -> str | None:
    """The outcome of the job's attempt `number` (None while it runs)."""
    return JobAttempt.objects.filter(job_id=job_id, number=number).values_list("outcome", flat=True).first()


def output_chunk_attempt(*, job: Job, position: int) -> int | None:
    """The attempt of the job's chunk at `position`, or None if the job has no such chunk."""
    return JobOutputChunk.objects.filter(job=job, pk=position).values_list("attempt", flat=True).first()


def output_chunks(*, job: Job) -> QuerySet[JobOutputChunk]:
    """The job's partial output, every attempt's, in the order it was kept (the chunks' ids: attempt, then seq)."""
    return JobOutputChunk.objects.filter(job=job)


def output_kept(*, job_id: UUID, attempt: int, seqs: range) -> dict[int, bytes]:
    """The bytes of the attempt's chunks with these seqs, by seq."""
    kept = JobOutputChunk.objects.filter(job_id=job_id, attempt=attempt, seq__gte=seqs.start, seq__lt=seqs.stop)
    return {seq: bytes(data) for seq, data in kept.values_list("seq", "data")}


def attempt_output(*, job_id: UUID, attempt: int) -> bytes:
    """The attempt's partial output: its chunks' bytes joined in seq order."""
    chunks = JobOutputChunk.objects.filter(job_id=job_id, attempt=attempt).order_by("seq").values_list("data")
    return b"".join(bytes(data) for (data,) in chunks)


def job_type_prices() -> list[JobTypePrice]:
    """The configured job types with their current prices; a type operators never priced gets its JOB_PRICES seed."""
    stored = {price.job_type: price for price in JobTypePrice.objects.filter(job_type__in=settings.JOB_TYPES)}
    missing = [
        JobTypePrice(job_type=job_type, price=settings.JOB_PRICES.get(job_type, settings.DEFAULT_JOB_PRICE))
        for job_type in settings.JOB_TYPES
        if job_type not in stored
    ]
    if missing:
        JobTypePrice.objects.bulk_create(missing, ignore_conflicts=True)
        stored |= {price.job_type: price for price in missing}
    return [stored[job_type] for job_type in settings.JOB_TYPES]


def job_type_price(*, job_type: str) -> Decimal:
    stored = queries.stored_price(job_type=job_type)
    if stored is not None:
        return stored
    return next(price.price for price in job_type_prices() if price.job_type == job_type)


def attempt_miner_of_owner(*, job_id: UUID | str, owner: User) -> UUID | None:
    """The miner of the job's latest hand-out to one of the owner's miners: who posts a result for a caller that
    names only the job (the original dialect). None when none of them ever held it, or the id is malformed."""
    try:
        return (
            JobAttempt.objects.filter(job_id=job_id, miner__owner=owner)
            .order_by("-number")
            .values_list("miner_id", flat=True)
            .first()
        )
    except (ValueError, ValidationError):
        return None


def miner_names(*, miner_ids: set[UUID]) -> dict[UUID, str]:
    """The names of these miners, in one read (the original dialect names the assigned miner by its name)."""
    if not miner_ids:
        return {}
    return dict(Miner.objects.filter(pk__in=miner_ids).values_list("pk", "name"))
