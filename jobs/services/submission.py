"""Submission: a client's job is created and its price held, once per Idempotency-Key."""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import ledger
from accounts.models import User
from jobs import queries, topics
from jobs.exceptions import IdempotencyKeyReused, PriceAboveMax
from jobs.models import Job, JobStatus
from jobs.selectors import job_type_price

IDEMPOTENCY_WINDOW = timedelta(hours=24)


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
    original_type: str = "",
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
        original_type=original_type,
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
            queries.insert_job(job)
            topics.publish_submitted(job_type=job_type)
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
