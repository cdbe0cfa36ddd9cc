from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.validators import URLValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.serializers import WalletAddressField
from aitbc_site.exceptions import InvalidJobType
from aitbc_site.strict import ObjectIdField, StrictSerializer
from miners.exceptions import MinerNotFound
from miners.models import Miner, MinerStatus
from miners.selectors import effective_miner_status


def validate_job_types(job_types: list[str]) -> list[str]:
    unknown = [job_type for job_type in job_types if job_type not in settings.JOB_TYPES]
    if unknown:
        raise InvalidJobType(
            f"Unsupported job type(s): {', '.join(unknown[:10])}.",
            details={"unsupported": unknown[:10], "supported": settings.JOB_TYPES},
        )
    return list(dict.fromkeys(job_types))


class JobTypeField(serializers.CharField):
    """The name of a job type; `validate_job_types` checks it is configured (INVALID_JOB_TYPE), and the OpenAPI
    schema lists the configured ones."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=64, **kwargs)


class MinerEndpointField(serializers.URLField):
    """Where the miner can be reached: an http(s) URL without credentials, since the URL is stored and shown to
    operators as it is, and only those schemes are ever called."""

    default_error_messages = {"invalid": "Enter an http:// or https:// URL."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # DRF's own URL validator takes ftp too; its length validator stays.
        self.validators = [validator for validator in self.validators if not isinstance(validator, URLValidator)]
        self.validators.append(URLValidator(schemes=["http", "https"], message=self.error_messages["invalid"]))

    def to_internal_value(self, data: Any) -> str:
        url: str = super().to_internal_value(data)
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise serializers.ValidationError("The URL must not carry a user name or password.")
        return url


class MinerNameField(serializers.RegexField):
    """A miner's name: letters, digits and `. _ : @ -`, starting with a letter or digit (it appears in URLs)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$",
            max_length=100,
            error_messages={"invalid": "Letters, digits and . _ : @ - only, starting with a letter or digit."},
            **kwargs,
        )


class MinerResourcesSerializer(StrictSerializer):
    gpu_model = serializers.CharField(max_length=200, required=False)
    gpu_memory_gb = serializers.FloatField(min_value=0, max_value=1_000_000, required=False)
    models = serializers.ListField(child=serializers.CharField(max_length=200), max_length=200, required=False)
    region = serializers.CharField(max_length=100, required=False)


class MinerRegisterSerializer(StrictSerializer):
    miner_id = ObjectIdField(
        not_found=MinerNotFound, required=False, help_text="Update this earlier registration instead."
    )
    name = MinerNameField(
        required=False,
        help_text="Tells the owner's miners apart; registering again under the same name updates that miner. "
        "A new miner without one is named by its id.",
    )
    address = WalletAddressField(
        required=False,
        allow_null=True,
        help_text="Wallet paid for the miner's work (0x…, ait1… or aitbc1…). Without one the miner earns to its "
        "owner's wallet, or nothing when its owner is a service user (API_KEYS).",
    )
    endpoint = MinerEndpointField(max_length=500, required=False, allow_null=True)
    capabilities = serializers.ListField(
        child=JobTypeField(), min_length=1, max_length=64, help_text="Job types it can run."
    )
    resources = MinerResourcesSerializer(required=False)
    max_concurrent_jobs = serializers.IntegerField(min_value=1, max_value=64, default=1)

    def validate_capabilities(self, value: list[str]) -> list[str]:
        return validate_job_types(value)


class MinerSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = Miner
        fields = [
            "id", "name", "address", "endpoint", "capabilities", "resources", "max_concurrent_jobs", "status",
            "last_heartbeat", "registered_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=MinerStatus.choices))
    def get_status(self, miner: Miner) -> str:
        return effective_miner_status(miner)


class HeartbeatJobSerializer(StrictSerializer):
    job_id = serializers.UUIDField()
    progress = serializers.FloatField(min_value=0, max_value=1, required=False)


class HeartbeatSerializer(StrictSerializer):
    miner_id = ObjectIdField(not_found=MinerNotFound)
    status = serializers.ChoiceField(choices=[MinerStatus.ACTIVE, MinerStatus.DRAINING], required=False)
    jobs = HeartbeatJobSerializer(many=True, required=False, max_length=1000)


class HeartbeatResponseSerializer(MinerSerializer):
    held_jobs = serializers.ListField(child=serializers.UUIDField())
    cancelled_jobs = serializers.ListField(child=serializers.UUIDField(), help_text="Stop working on these.")
    heartbeat_interval = serializers.IntegerField(help_text="Seconds between heartbeats the server expects.")

    class Meta(MinerSerializer.Meta):
        fields = [*MinerSerializer.Meta.fields, "held_jobs", "cancelled_jobs", "heartbeat_interval"]
        read_only_fields = fields

    def to_representation(self, instance: Any) -> dict[str, Any]:
        miner, extra = instance
        return {**MinerSerializer(miner).data, **extra}
