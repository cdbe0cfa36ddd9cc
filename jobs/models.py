import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from aitbc_site.amounts import AmountField


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED})

# The only legal moves of a job, and what each one means. jobs.services.transition refuses anything else.
JOB_TRANSITIONS: dict[tuple[str, str], str] = {
    (JobStatus.PENDING, JobStatus.RUNNING): "handed to a miner",
    (JobStatus.PENDING, JobStatus.CANCELLED): "cancelled before it ran",
    (JobStatus.PENDING, JobStatus.EXPIRED): "its time to live ran out before it ran",
    # A miner whose lease lapsed may still post the result of the last attempt while nobody else has the job.
    (JobStatus.PENDING, JobStatus.COMPLETED): "late result of the last attempt accepted",
    (JobStatus.PENDING, JobStatus.FAILED): "late failure of the last attempt, or failed by an operator",
    (JobStatus.RUNNING, JobStatus.COMPLETED): "the miner posted its result",
    (JobStatus.RUNNING, JobStatus.FAILED): "the miner reported a failure that ends the job",
    (JobStatus.RUNNING, JobStatus.PENDING): "back in the queue for another attempt",
    (JobStatus.RUNNING, JobStatus.CANCELLED): "cancelled while it ran",
}


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs")
    job_type = models.CharField(max_length=64)
    # The `payload.type` an original-dialect client sent (`inference`, `image` …), so its job reads back as sent;
    # empty for jobs submitted in our own API.
    original_type = models.CharField(max_length=64, blank=True, default="")
    parameters = models.JSONField(default=dict)
    requirements = models.JSONField(default=dict)
    # The scalar requirements again as columns, so the claim query can filter them in SQL.
    req_min_gpu_memory_gb = models.FloatField(null=True, blank=True)
    req_gpu_model = models.CharField(max_length=200, null=True, blank=True)
    req_region = models.CharField(max_length=100, null=True, blank=True)
    priority = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    miner = models.ForeignKey("miners.Miner", on_delete=models.PROTECT, null=True, blank=True, related_name="jobs")
    # Attempts that count towards max_attempts; a hand-out the miner released (or an operator requeued) does not.
    attempts = models.PositiveSmallIntegerField(default=0)
    # Every hand-out, counted or not: the number of the current JobAttempt.
    handouts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField()
    max_runtime_seconds = models.PositiveIntegerField()
    progress = models.FloatField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    # Earliest time the job may be handed out again (retry back-off).
    not_before = models.DateTimeField()
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Fixed at submission. Jobs of service users (API_KEYS, keys without an owner) show a price but are not billed.
    # Bytes of partial output the job's attempts posted and still kept (JobOutputChunk): what JOB_OUTPUT_MAX_BYTES
    # caps. An output post changes it by compare-and-set, which is also what orders the post against the job's end.
    output_bytes = models.PositiveBigIntegerField(default=0)
    price = AmountField(default=Decimal("0"))
    billed = models.BooleanField(default=False)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    idempotency_request = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The claim walks this index in hand-out order and stops after a few rows, however long the queue.
            models.Index(
                F("priority").desc(), "created_at", "id", condition=Q(status="pending"), name="job_claim_queue"
            ),
            models.Index(fields=["client", "-created_at"], name="job_client_recent"),
            models.Index(fields=["miner", "status"], name="job_miner_status"),
            models.Index(fields=["lease_expires_at"], condition=Q(status="running"), name="job_running_lease"),
            models.Index(fields=["expires_at"], condition=Q(status="pending"), name="job_pending_deadline"),
            # Maintenance finds the ended jobs whose output outlived JOB_OUTPUT_RETENTION_SECONDS: only jobs that
            # still keep output are in it.
            models.Index(fields=["completed_at"], condition=Q(output_bytes__gt=0), name="job_output_kept"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="job_idempotency_key_per_client",
            ),
            models.CheckConstraint(condition=Q(priority__lte=9), name="job_priority_range"),
            models.CheckConstraint(condition=Q(status__in=JobStatus.values), name="job_status_valid"),
            models.CheckConstraint(
                condition=~Q(status="running") | Q(miner__isnull=False, lease_expires_at__isnull=False),
                name="job_running_has_miner_and_lease",
            ),
            models.CheckConstraint(condition=Q(attempts__lte=F("max_attempts")), name="job_attempts_within_max"),
            models.CheckConstraint(condition=Q(price__gte=0), name="job_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.job_type} {self.id} ({self.status})"


class AttemptOutcome(models.TextChoices):
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    LEASE_EXPIRED = "lease_expired", "Lease expired"
    RELEASED = "released", "Released by the miner"
    CANCELLED = "cancelled", "Cancelled"


class JobAttempt(models.Model):
    """One hand-out of a job to a miner: who held which attempt decides whose result counts."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_set")
    # The hand-out's number (Job.handouts when it started); receipts name it as their `attempt`.
    number = models.PositiveSmallIntegerField()
    miner = models.ForeignKey("miners.Miner", on_delete=models.PROTECT, related_name="attempts")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices, null=True, blank=True)
    # What the miner posted for this attempt, kept to recognise an identical replay.
    reported_status = models.CharField(max_length=16, null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    metrics = models.JSONField(null=True, blank=True)
    # How many partial output chunks the attempt posted: the next chunk's seq. Its result is recorded only if this
    # is still what the result was judged with, so the receipt's output_hash covers every chunk kept.
    output_chunks = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="job_attempt_number_unique")]
        indexes = [models.Index(fields=["miner", "job"], name="job_attempt_miner")]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.number}"


class OutputEncoding(models.TextChoices):
    TEXT = "text", "Text"
    BASE64 = "base64", "Base64"


class JobOutputChunk(models.Model):
    """A piece of partial output an attempt posted while it ran. The id is the chunk's position in the job's output:
    chunks are only written by the attempt holding the job, in seq order, so ids follow (attempt, seq)."""

    id = models.BigAutoField(primary_key=True)
    # Both indexes below lead with the job, so the foreign key needs none of its own.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="output_chunks", db_index=False)
    # The hand-out's number (JobAttempt.number).
    attempt = models.PositiveSmallIntegerField()
    # From 0 within each attempt.
    seq = models.PositiveIntegerField()
    # The bytes themselves, so a base64 chunk is kept exactly; `encoding` is how it was sent and is read back.
    data = models.BinaryField()
    encoding = models.CharField(max_length=8, choices=OutputEncoding.choices, default=OutputEncoding.TEXT)
    size = models.PositiveIntegerField()
    progress = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "attempt", "seq"], name="job_output_chunk_unique"),
            models.CheckConstraint(condition=Q(encoding__in=OutputEncoding.values), name="job_output_encoding_valid"),
        ]
        indexes = [models.Index(fields=["job", "id"], name="job_output_in_order")]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.attempt}.{self.seq}"


class JobEvent(models.Model):
    """A status change of a job: the job's timeline for its client and the audit trail for operators."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    from_status = models.CharField(max_length=16, choices=JobStatus.choices)
    to_status = models.CharField(max_length=16, choices=JobStatus.choices)
    # "client", "miner:<id>", "system" or "operator:<name>".
    actor = models.CharField(max_length=200)
    reason = models.CharField(max_length=500)

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["job", "at", "id"], name="job_event_timeline"),
            models.Index(fields=["to_status", "at"], name="job_event_by_status"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id}: {self.from_status} → {self.to_status}"


class JobTypePrice(models.Model):
    """What a job of this type costs, set by operators; seeded from JOB_PRICES (default 1 AITBC)."""

    job_type = models.CharField(max_length=64, primary_key=True)
    price = AmountField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["job_type"]
        constraints = [models.CheckConstraint(condition=Q(price__gte=0), name="job_type_price_not_negative")]

    def __str__(self) -> str:
        return f"{self.job_type}: {self.price} AITBC"
