import binascii
from base64 import b64decode, b64encode
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.serializers import AmountField
from aitbc_site.strict import JSONObjectField, ObjectIdField, StrictSerializer
from aitbc_site.timestamps import iso_utc
from jobs.exceptions import JobNotFound
from jobs.models import Job, JobOutputChunk, JobStatus, OutputEncoding
from jobs.selectors import effective_status
from jobs.services.output import OutputChunk
from miners.exceptions import MinerNotFound
from miners.serializers import JobTypeField, validate_job_types
from receipts.serializers import ReceiptSerializer, validate_canonicalizable


class JobRequirementsSerializer(StrictSerializer):
    min_gpu_memory_gb = serializers.FloatField(max_value=1_000_000, required=False)
    gpu_model = serializers.CharField(max_length=200, required=False)
    models = serializers.ListField(child=serializers.CharField(max_length=200), max_length=100, required=False)
    region = serializers.CharField(max_length=100, required=False)

    def validate_min_gpu_memory_gb(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return value


class JobCreateSerializer(StrictSerializer):
    job_type = JobTypeField(help_text="One of the job types listed by GET /v1/job-types.")
    parameters = JSONObjectField(help_text="Input for the job, passed to the miner as is.")
    requirements = JobRequirementsSerializer(required=False)
    priority = serializers.IntegerField(min_value=0, max_value=9, default=0, help_text="9 is handed out first.")
    ttl_seconds = serializers.IntegerField(
        min_value=10,
        max_value=86400,
        required=False,
        help_text="A job still pending this long after submission expires.",
    )
    max_attempts = serializers.IntegerField(min_value=1, max_value=10, required=False)
    max_runtime_seconds = serializers.IntegerField(min_value=10, max_value=86400, required=False)
    max_price = AmountField(positive=False, required=False, help_text="Refuse the job if its price is higher.")

    def validate_job_type(self, value: str) -> str:
        return validate_job_types([value])[0]


# Made once and shared: it only formats values, so the fast documents below write exactly what DRF would.
_AMOUNT = AmountField(positive=False)


# The declared fields of the two serializers below document the shape (OpenAPI); `to_representation` writes the
# same document directly, since DRF building the fields anew for every response cost as much as the rest of a
# read. A test holds both ways to the same output.


class JobSerializer(serializers.Serializer):
    """A job as its client reads it."""

    id = serializers.UUIDField(read_only=True)
    client_id = serializers.UUIDField(read_only=True)
    job_type = serializers.CharField(read_only=True)
    parameters = JSONObjectField()
    requirements = JSONObjectField()
    priority = serializers.IntegerField(read_only=True)
    status = serializers.SerializerMethodField()
    miner_id = serializers.UUIDField(read_only=True, allow_null=True)
    attempts = serializers.IntegerField(read_only=True)
    max_attempts = serializers.IntegerField(read_only=True)
    price = AmountField(positive=False, help_text="AITBC, fixed at submission (not charged to service users).")
    progress = serializers.FloatField(read_only=True, allow_null=True)
    result = JSONObjectField(allow_null=True)
    error = JSONObjectField(allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    started_at = serializers.DateTimeField(read_only=True, allow_null=True)
    completed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    expires_at = serializers.DateTimeField(read_only=True)
    lease_expires_at = serializers.DateTimeField(read_only=True, allow_null=True)

    @extend_schema_field(serializers.ChoiceField(choices=JobStatus.choices))
    def get_status(self, job: Job) -> str:
        return effective_status(job)

    def to_representation(self, job: Job) -> dict[str, Any]:
        return {
            "id": str(job.pk),
            "client_id": str(job.client_id),
            "job_type": job.job_type,
            "parameters": job.parameters,
            "requirements": job.requirements,
            "priority": job.priority,
            "status": effective_status(job),
            "miner_id": None if job.miner_id is None else str(job.miner_id),
            "attempts": job.attempts,
            "max_attempts": job.max_attempts,
            "price": _AMOUNT.to_representation(job.price),
            "progress": None if job.progress is None else float(job.progress),
            "result": job.result,
            "error": job.error,
            "created_at": iso_utc(job.created_at),
            "updated_at": iso_utc(job.updated_at),
            "started_at": iso_utc(job.started_at),
            "completed_at": iso_utc(job.completed_at),
            "expires_at": iso_utc(job.expires_at),
            "lease_expires_at": iso_utc(job.lease_expires_at),
        }


class AssignmentSerializer(serializers.Serializer):
    """A job handed to a miner: what it needs to run it."""

    id = serializers.UUIDField(read_only=True)
    job_type = serializers.CharField(read_only=True)
    parameters = JSONObjectField()
    requirements = JSONObjectField()
    priority = serializers.IntegerField(read_only=True)
    attempt = serializers.IntegerField(source="handouts", help_text="This hand-out's number; receipts name it.")
    lease_expires_at = serializers.DateTimeField(read_only=True, allow_null=True)
    max_runtime_seconds = serializers.IntegerField(read_only=True)

    def to_representation(self, job: Job) -> dict[str, Any]:
        return {
            "id": str(job.pk),
            "job_type": job.job_type,
            "parameters": job.parameters,
            "requirements": job.requirements,
            "priority": job.priority,
            "attempt": job.handouts,
            "lease_expires_at": iso_utc(job.lease_expires_at),
            "max_runtime_seconds": job.max_runtime_seconds,
        }


# The longest wait a request may ask for; the server may wait less (LONG_POLL_MAX_SECONDS).
MAX_WAIT_SECONDS = 30


def wait_field(what: str) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=0, max_value=MAX_WAIT_SECONDS, default=0,
        help_text=f"Seconds to wait {what}, at most {MAX_WAIT_SECONDS}; 0 answers at once.",
    )


class PollQuerySerializer(StrictSerializer):
    miner_id = ObjectIdField(not_found=MinerNotFound)
    limit = serializers.IntegerField(min_value=1, max_value=10, default=1)
    wait = wait_field("for a job this miner may take when none is pending (long-poll)")


class JobWaitQuerySerializer(serializers.Serializer):
    wait = wait_field("for the job to end (or change, with `wait_for=change`) before answering")
    wait_for = serializers.ChoiceField(
        choices=["end", "change"], default="end",
        help_text="`end`: until the job reaches an end state; `change`: until its status is no longer what it was.",
    )


class PollResponseSerializer(serializers.Serializer):
    results = AssignmentSerializer(many=True)
    retry_after = serializers.IntegerField(required=False, help_text="Only when empty: seconds until polling again.")
    reason = serializers.ChoiceField(
        choices=["no_matching_jobs", "at_capacity", "draining"], required=False, help_text="Only when empty."
    )


class JobErrorSerializer(StrictSerializer):
    code = serializers.CharField(max_length=100)
    message = serializers.CharField(max_length=10_000, allow_blank=True)


class ResultSerializer(StrictSerializer):
    miner_id = ObjectIdField(not_found=MinerNotFound)
    job_id = ObjectIdField(not_found=JobNotFound)
    status = serializers.ChoiceField(choices=[JobStatus.COMPLETED, JobStatus.FAILED])
    result = JSONObjectField(required=False, allow_null=True, help_text="Required when status is completed.")
    error = JobErrorSerializer(required=False, allow_null=True, help_text="Required when status is failed.")
    metrics = JSONObjectField(required=False, allow_null=True)
    retryable = serializers.BooleanField(default=True, help_text="With failed: may another attempt succeed?")

    def validate_result(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return validate_canonicalizable(value)

    def validate_metrics(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return validate_canonicalizable(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["status"] == JobStatus.COMPLETED:
            if attrs.get("result") is None:
                raise serializers.ValidationError({"result": ["Required when status is completed."]})
            if attrs.get("error") is not None:
                raise serializers.ValidationError({"error": ["Not allowed when status is completed."]})
        else:
            if attrs.get("error") is None:
                raise serializers.ValidationError({"error": ["Required when status is failed."]})
            if attrs.get("result") is not None:
                raise serializers.ValidationError({"result": ["Not allowed when status is failed."]})
        return attrs


class ResultResponseSerializer(serializers.Serializer):
    job = JobSerializer()
    receipt = ReceiptSerializer()


class JobListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    job_type = serializers.ChoiceField(choices=[], required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["job_type"].choices = settings.JOB_TYPES


class JobEventSerializer(serializers.Serializer):
    """A change of the job's status: when, from which status to which, by whom and why."""

    # `from` and `to` are Python keywords, so the fields are built here rather than declared.

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "position": serializers.IntegerField(
                read_only=True, help_text="The event's place in the job's timeline, from 1: its id in the event stream."
            ),
            "at": serializers.DateTimeField(read_only=True),
            "from": serializers.ChoiceField(source="from_status", choices=JobStatus.choices, read_only=True),
            "to": serializers.ChoiceField(source="to_status", choices=JobStatus.choices, read_only=True),
            "actor": serializers.CharField(read_only=True),
            "reason": serializers.CharField(read_only=True),
        }


# At most this many chunks in one post: the body's 1 MiB bounds their bytes, this their rows.
MAX_CHUNKS_PER_POST = 100


class OutputChunkSerializer(StrictSerializer):
    seq = serializers.IntegerField(min_value=0, max_value=2**31 - 1, help_text="From 0 within each attempt.")
    # Not trimmed: a chunk's whitespace is output too.
    data = serializers.CharField(trim_whitespace=False, help_text="Text, or base64 (RFC 4648) of the bytes.")
    encoding = serializers.ChoiceField(choices=OutputEncoding.choices, default=OutputEncoding.TEXT)
    progress = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> OutputChunk:
        if attrs["encoding"] == OutputEncoding.BASE64:
            try:
                data = b64decode(attrs["data"].encode("ascii"), validate=True)
            except (UnicodeError, binascii.Error):
                raise serializers.ValidationError({"data": ["Not valid base64."]}) from None
        else:
            data = attrs["data"].encode("utf-8")
        return OutputChunk(seq=attrs["seq"], data=data, encoding=attrs["encoding"], progress=attrs.get("progress"))


class JobOutputSerializer(StrictSerializer):
    miner_id = ObjectIdField(not_found=MinerNotFound)
    chunks = OutputChunkSerializer(
        many=True, allow_empty=False, max_length=MAX_CHUNKS_PER_POST, help_text="Consecutive seqs, in order."
    )

    def validate_chunks(self, chunks: list[OutputChunk]) -> list[OutputChunk]:
        if any(chunk.seq != chunks[0].seq + index for index, chunk in enumerate(chunks)):
            raise serializers.ValidationError("The chunks' seqs must be consecutive and in order.")
        return chunks


class OutputPostedSerializer(serializers.Serializer):
    job_id = serializers.UUIDField()
    attempt = serializers.IntegerField()
    next_seq = serializers.IntegerField(help_text="The seq the attempt's next chunk must have.")
    bytes = serializers.IntegerField(help_text="The job's output so far, all attempts: what JOB_OUTPUT_MAX_BYTES caps.")


class JobOutputChunkSerializer(serializers.Serializer):
    """A chunk of a job's partial output, as its attempt posted it."""

    position = serializers.IntegerField(
        source="pk", help_text="The chunk's place in the job's output, increasing: attempt, then seq."
    )
    attempt = serializers.IntegerField()
    seq = serializers.IntegerField()
    data = serializers.SerializerMethodField()
    encoding = serializers.ChoiceField(choices=OutputEncoding.choices)
    progress = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_data(self, chunk: JobOutputChunk) -> str:
        """Text as text, base64 chunks as base64."""
        raw = bytes(chunk.data)
        return b64encode(raw).decode("ascii") if chunk.encoding == OutputEncoding.BASE64 else raw.decode("utf-8")
