from typing import Any

from rest_framework import serializers

from aitbc_site.strict import JSONObjectField, StrictSerializer
from receipts.canonical import CanonicalizationError, canonical_bytes


def validate_canonicalizable(value: Any) -> Any:
    """Refuse what RFC 8785 cannot represent exactly (integers beyond ±(2^53-1)), since receipts must be signed."""
    try:
        canonical_bytes(value)
    except CanonicalizationError as error:
        raise serializers.ValidationError(f"Cannot be represented exactly in a signed receipt: {error}") from None
    return value


class ReceiptSerializer(serializers.Serializer):
    """A receipt exactly as signed."""

    # Documentation only: receipts are served from their stored document, never through this serializer.

    id = serializers.UUIDField()
    job_id = serializers.UUIDField()
    miner_id = serializers.UUIDField()
    client_id = serializers.UUIDField()
    attempt = serializers.IntegerField()
    job_type = serializers.CharField()
    status = serializers.ChoiceField(choices=["completed", "failed"])
    result = JSONObjectField(allow_null=True)
    result_hash = serializers.CharField(allow_null=True, help_text='"sha256:" + hex of the RFC 8785 bytes of result.')
    output_hash = serializers.CharField(
        allow_null=True,
        help_text='"sha256:" + hex of the partial output the attempt posted (its chunks\' bytes joined in seq '
        "order); null if it posted none.",
    )
    error = JSONObjectField(allow_null=True)
    metrics = JSONObjectField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    prev_hash = serializers.CharField(
        allow_null=True, help_text="sha256 of the miner's previous receipt's canonical bytes; null for its first."
    )
    price = serializers.CharField(help_text="The job's price in AITBC, a decimal string with 8 places.")
    miner_earnings = serializers.CharField(help_text="What the miner was paid for this result (0 unless completed).")
    key_id = serializers.CharField()
    alg = serializers.ChoiceField(choices=["ed25519"])
    proof = serializers.CharField(
        help_text="Hex Ed25519 signature over the RFC 8785 bytes of the receipt without proof."
    )


class ReceiptListSerializer(serializers.Serializer):
    results = ReceiptSerializer(many=True)


class VerifyRequestSerializer(StrictSerializer):
    """A whole receipt, as received: fields beyond the ones listed are accepted, since they are signed content."""

    # Only the fields verification needs are checked here; the rest is passed on to be verified as signed.

    refuses_unknown_fields = False

    key_id = serializers.CharField()
    proof = serializers.CharField()


class VerificationSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    key_id = serializers.CharField()
    reason = serializers.ChoiceField(choices=["UNKNOWN_KEY", "BAD_SIGNATURE"], allow_null=True)


class PublishedKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    alg = serializers.ChoiceField(choices=["ed25519"])
    public_key = serializers.CharField(help_text="Raw 32-byte Ed25519 public key, hex.")
    status = serializers.ChoiceField(choices=["active", "retired"])


class KeyListSerializer(serializers.Serializer):
    keys = PublishedKeySerializer(many=True)
