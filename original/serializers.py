"""The original dialect's request bodies, and the documents it answers with.

Requests are read into the arguments of our own services; the documents are built from our models. The declared
fields of the response serializers document the shapes (OpenAPI); the `*_document` functions write them."""

import json
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.serializers import AmountField
from aitbc_site.strict import JSONObjectField, StrictSerializer
from aitbc_site.timestamps import iso_utc
from jobs.models import Job
from jobs.selectors import effective_status
from miners.serializers import MinerNameField
from original.translation import (
    MINER_STATUS_OF_STATE,
    STATE_OF_STATUS,
    accepted_type_names,
    constraints_of,
    original_type_name,
)
from receipts.models import Receipt
from receipts.serializers import validate_canonicalizable

STATES = list(dict.fromkeys(STATE_OF_STATUS.values()))


class ConstraintsSerializer(StrictSerializer):
    gpu = serializers.CharField(max_length=200, required=False, help_text="GPU model, e.g. RTX 4090.")
    min_vram_gb = serializers.FloatField(min_value=0.001, max_value=1_000_000, required=False)
    models = serializers.ListField(child=serializers.CharField(max_length=200), max_length=100, required=False)
    region = serializers.CharField(max_length=100, required=False)
    max_price = AmountField(positive=False, required=False, help_text="Refuse the job if its price is higher.")


@extend_schema_field(
    {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"type": "string", "enum": accepted_type_names()}},
        "additionalProperties": True,
    }
)
class PayloadField(JSONObjectField):
    """A job's `type` and input: the schema names the types, so a client generated from it sends one."""


class JobSubmitSerializer(StrictSerializer):
    payload = PayloadField(
        help_text="`type` (see the README's table of types) and the job's input, passed to the miner as is."
    )
    ttl_seconds = serializers.IntegerField(min_value=10, max_value=86400, required=False)
    constraints = ConstraintsSerializer(required=False)

    def validate_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        job_type = payload.get("type")
        if not isinstance(job_type, str) or not job_type:
            raise serializers.ValidationError("Needs `type`, the job's type, as a string.")
        return validate_canonicalizable(payload)


class JobDocumentSerializer(serializers.Serializer):
    """A job as the original dialect shows it."""

    job_id = serializers.UUIDField()
    state = serializers.ChoiceField(choices=STATES)
    payload = JSONObjectField(help_text="`type` and the job's input, as submitted.")
    constraints = JSONObjectField()
    assigned_miner_id = serializers.CharField(allow_null=True, help_text="The name of the miner running it.")
    requested_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)
    price = AmountField(positive=False)
    result = JSONObjectField(allow_null=True)
    error = serializers.CharField(allow_null=True, help_text="`CODE: message` of a failed job.")


def state_of(job: Job) -> str:
    return STATE_OF_STATUS[effective_status(job)]


def job_document(job: Job, *, miner_name: str | None) -> dict[str, Any]:
    error = job.error
    return {
        "job_id": str(job.pk),
        "state": state_of(job),
        "payload": {
            "type": original_type_name(job_type=job.job_type, original_type=job.original_type),
            **job.parameters,
        },
        "constraints": constraints_of(job.requirements),
        "assigned_miner_id": miner_name,
        "requested_at": iso_utc(job.created_at),
        "expires_at": iso_utc(job.expires_at),
        "completed_at": iso_utc(job.completed_at),
        "price": f"{job.price:.8f}",
        "result": job.result,
        "error": None if error is None else f"{error.get('code', 'ERROR')}: {error.get('message', '')}",
    }


class PageQuerySerializer(StrictSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, required=False, help_text="Items per page (20).")
    cursor = serializers.CharField(max_length=1000, required=False, help_text="From the previous page's `next`.")


class ResultAndReceiptSerializer(serializers.Serializer):
    result = JSONObjectField(allow_null=True)
    receipt = JSONObjectField(allow_null=True, help_text="The latest signed receipt, as in /v1/receipts.")


class ReceiptListSerializer(serializers.Serializer):
    items = serializers.ListField(child=JSONObjectField(), help_text="Signed receipts, oldest first.")


# --- miners -----------------------------------------------------------------------------------------------------


class MinerQuerySerializer(StrictSerializer):
    miner_id = MinerNameField(help_text="The miner's name, chosen by its owner.")


class GpuSerializer(serializers.Serializer):
    # Not strict: the original tools send more than these, and what they send is kept as reported.
    model = serializers.CharField(max_length=200, required=False)
    memory_gb = serializers.FloatField(min_value=0, max_value=1_000_000, required=False)


class ComputeSerializer(serializers.Serializer):
    supported_tasks = serializers.ListField(child=serializers.CharField(max_length=64), max_length=64, required=False)
    max_concurrent_jobs = serializers.IntegerField(min_value=1, max_value=64, required=False)


class CapabilitiesSerializer(serializers.Serializer):
    gpu = GpuSerializer(required=False)
    compute = ComputeSerializer(required=False)
    models = serializers.ListField(child=serializers.CharField(max_length=200), max_length=200, required=False)
    region = serializers.CharField(max_length=100, required=False)


class OriginalMinerRegisterSerializer(StrictSerializer):
    capabilities = JSONObjectField(
        help_text="`gpu: {model, memory_gb}`, `compute: {supported_tasks, max_concurrent_jobs}`, `models`, "
        "`region`; other keys are kept as reported."
    )
    concurrency = serializers.IntegerField(min_value=1, max_value=64, required=False)
    region = serializers.CharField(max_length=100, required=False)

    def validate_capabilities(self, capabilities: dict[str, Any]) -> dict[str, Any]:
        known = CapabilitiesSerializer(data=capabilities)
        if not known.is_valid():
            raise serializers.ValidationError(known.errors)
        validate_canonicalizable(capabilities)
        return {"reported": capabilities, "known": known.validated_data}


class MinerRegisteredSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok"])
    miner_id = serializers.CharField(help_text="The miner's name.")
    id = serializers.UUIDField(help_text="The miner's id in our own API and in receipts.")
    job_types = serializers.ListField(child=serializers.CharField())
    created = serializers.BooleanField(help_text="False when an earlier registration of this name was updated.")


class OriginalHeartbeatSerializer(StrictSerializer):
    status = serializers.ChoiceField(
        choices=list(MINER_STATUS_OF_STATE),
        default="ONLINE",
        help_text="DRAINING and OFFLINE take no new jobs; ONLINE and BUSY do.",
    )
    inflight = serializers.IntegerField(
        min_value=0, max_value=1000, required=False, help_text="0 releases every job the coordinator thinks it holds."
    )
    metadata = JSONObjectField(required=False, help_text="Kept as the miner's last report.")

    def validate_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        return validate_canonicalizable(metadata)


class HeartbeatAnswerSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok"])
    held_jobs = serializers.ListField(child=serializers.UUIDField())
    cancelled_jobs = serializers.ListField(child=serializers.UUIDField(), help_text="Stop working on these.")
    heartbeat_interval = serializers.IntegerField()


class PollSerializer(StrictSerializer):
    max_wait_seconds = serializers.IntegerField(
        min_value=0,
        max_value=60,
        required=False,
        help_text="Seconds to wait for a job when none is pending; this server waits at most "
        "ORIGINAL_POLL_MAX_WAIT_SECONDS (4), inside the original tools' 5-second timeout.",
    )


class OriginalAssignmentSerializer(serializers.Serializer):
    job_id = serializers.UUIDField()
    payload = JSONObjectField(help_text="`type` and the job's input.")
    constraints = JSONObjectField()
    attempt = serializers.IntegerField(help_text="This hand-out's number; receipts name it.")
    lease_expires_at = serializers.DateTimeField(help_text="Post the result before this.")

    def to_representation(self, job: Job) -> dict[str, Any]:
        return {
            "job_id": str(job.pk),
            "payload": {
                "type": original_type_name(job_type=job.job_type, original_type=job.original_type),
                **job.parameters,
            },
            "constraints": constraints_of(job.requirements),
            "attempt": job.handouts,
            "lease_expires_at": iso_utc(job.lease_expires_at),
        }


class OriginalResultSerializer(StrictSerializer):
    result = JSONObjectField()
    metrics = JSONObjectField(
        required=False, help_text="Recorded in the receipt; money figures in it (aitbc_earned …) decide nothing."
    )

    def validate_result(self, value: dict[str, Any]) -> dict[str, Any]:
        return validate_canonicalizable(value)

    def validate_metrics(self, value: dict[str, Any]) -> dict[str, Any]:
        return validate_canonicalizable(value)


class FailSerializer(StrictSerializer):
    error_code = serializers.CharField(max_length=100)
    error_message = serializers.CharField(max_length=10_000, allow_blank=True, required=False, default="")
    metrics = JSONObjectField(required=False)

    def validate_metrics(self, value: dict[str, Any]) -> dict[str, Any]:
        return validate_canonicalizable(value)


class ResultAnswerSerializer(serializers.Serializer):
    job_id = serializers.UUIDField()
    state = serializers.ChoiceField(choices=STATES, help_text="QUEUED after a failure another attempt may fix.")
    receipt = JSONObjectField(help_text="The signed receipt of this result.")


# --- explorer ---------------------------------------------------------------------------------------------------


class ExplorerQuerySerializer(PageQuerySerializer):
    miner_id = serializers.UUIDField(required=False, help_text="One miner's chain (its id, as in receipts).")
    job_id = serializers.UUIDField(required=False, help_text="The receipts of one job.")


class ExplorerReceiptSerializer(serializers.Serializer):
    """A receipt's public facts: enough to check a miner's chain, nothing of the client's."""

    receipt_id = serializers.UUIDField()
    job_id = serializers.UUIDField()
    miner_id = serializers.UUIDField()
    sequence = serializers.IntegerField(help_text="Position in the miner's chain, from 1.")
    job_type = serializers.CharField()
    status = serializers.CharField(help_text="completed or failed: what the miner reported.")
    time = serializers.DateTimeField(help_text="When the receipt was signed.")
    price = AmountField(positive=False)
    result_hash = serializers.CharField(allow_null=True)
    prev_hash = serializers.CharField(allow_null=True, help_text="The hash of the miner's previous receipt.")
    hash = serializers.CharField(help_text="sha256 of the receipt's canonical bytes, as the next one names it.")

    def to_representation(self, receipt: Receipt) -> dict[str, Any]:
        signed = json.loads(receipt.document)
        return {
            "receipt_id": str(receipt.pk),
            "job_id": str(receipt.job_id),
            "miner_id": str(receipt.miner_id),
            "sequence": receipt.sequence,
            "job_type": signed["job_type"],
            "status": signed["status"],
            "time": signed["created_at"],
            "price": signed["price"],
            "result_hash": signed["result_hash"],
            "prev_hash": signed["prev_hash"],
            "hash": receipt.document_hash,
        }


class EmptyFeedSerializer(serializers.Serializer):
    items = serializers.ListField(child=JSONObjectField(), max_length=0)
    note = serializers.CharField()
