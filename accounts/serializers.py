import re
from decimal import Decimal
from typing import Any

from rest_framework import serializers

from accounts.addresses import canonical_address
from accounts.models import ApiKey, ApiKeyRole
from aitbc_site import amounts
from aitbc_site.strict import StrictSerializer

_SIGNATURE = re.compile(r"^0x[0-9a-fA-F]{130}$")


class AmountField(serializers.CharField):
    """An AITBC (or BTC) amount: a JSON string holding a decimal with ASCII digits and at most 8 places. Numbers are
    refused, since a JSON number may already have lost digits on its way. Beyond ±MAX_AMOUNT is 400
    AMOUNT_OUT_OF_RANGE, raised from here since DRF would fold a ValidationError into VALIDATION_ERROR."""

    checks_own_json_type = True

    def __init__(self, *, positive: bool = True, **kwargs: Any) -> None:
        self.positive = positive
        # No max_length: its validator would run on the Decimal this field returns (len() of a Decimal is a
        # TypeError, a 500); the pattern below already bounds the length.
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:  # type: ignore[override]
        try:
            amount = amounts.parse(data)
        except ValueError:
            raise serializers.ValidationError(
                'Must be a decimal string with at most 8 decimal places, e.g. "1.5".'
            ) from None
        if self.positive and amount <= 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return amounts.check_range(amount, what=self.field_name or "amount")

    def to_representation(self, value: Any) -> str:
        return f"{Decimal(value):.8f}"


class WalletAddressField(serializers.CharField):
    """A wallet address as clients may spell it (0x…, ait1… or aitbc1… and 40 hex digits), read as its canonical
    spelling; anything else is 400 INVALID_ADDRESS. The OpenAPI schema gives its pattern."""

    checks_own_json_type = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=100, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        return canonical_address(super().to_internal_value(data))


class AddressSerializer(StrictSerializer):
    address = WalletAddressField(help_text="0x…, ait1… or aitbc1… followed by 40 hex digits.")


class ChallengeSerializer(serializers.Serializer):
    address = serializers.CharField(help_text="Canonical spelling: ait1 + 40 lowercase hex.")
    nonce = serializers.CharField()
    message = serializers.CharField(help_text="EIP-4361 message to sign with personal_sign (EIP-191).")
    expires_at = serializers.DateTimeField()


class LoginSerializer(AddressSerializer):
    nonce = serializers.CharField(max_length=64)
    signature = serializers.RegexField(
        _SIGNATURE,
        max_length=132,
        error_messages={"invalid": "Must be 0x followed by 130 hex digits (65 bytes)."},
        help_text="0x + 130 hex: r, s and v (0, 1, 27 or 28).",
    )

    def validate_signature(self, value: str) -> bytes:
        raw = bytes.fromhex(value[2:])
        if raw[64] not in (0, 1, 27, 28):
            raise serializers.ValidationError("The recovery byte v must be 0, 1, 27 or 28.")
        return raw


class BalanceSerializer(serializers.Serializer):
    user_id = serializers.UUIDField()
    currency = serializers.ChoiceField(choices=["AITBC"])
    available = AmountField(positive=False)
    held = AmountField(positive=False)


class UserSerializer(serializers.Serializer):
    """A wallet user, with their balance."""

    # Serializes accounts.selectors.user_profile.

    id = serializers.UUIDField()
    address = serializers.CharField(allow_null=True, help_text="Canonical ait1 spelling.")
    created_at = serializers.DateTimeField()
    last_login_at = serializers.DateTimeField(allow_null=True)
    balance = BalanceSerializer()


class LoginResponseSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as X-Session-Token.")
    expires_at = serializers.DateTimeField()
    created = serializers.BooleanField(help_text="True when this login registered the wallet.")
    user = UserSerializer()


class ApiKeyCreateSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=[ApiKeyRole.CLIENT, ApiKeyRole.MINER])
    name = serializers.CharField(max_length=100)


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "prefix", "role", "name", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class IssuedApiKeySerializer(serializers.ModelSerializer):
    key = serializers.CharField(help_text="Shown only here, once.")

    class Meta:
        model = ApiKey
        fields = ["id", "key", "prefix", "role", "name", "created_at"]
        read_only_fields = fields


class LedgerEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField(source="posting.kind")
    account = serializers.ChoiceField(source="account.kind", choices=["available", "held"])
    amount = AmountField(positive=False, help_text="Signed: negative leaves the account.")
    reference = serializers.CharField(source="posting.reference")
    created_at = serializers.DateTimeField()


class JobTypeSerializer(serializers.Serializer):
    job_type = serializers.CharField()
    price = AmountField(positive=False, help_text="AITBC per job.")


class JobTypeListSerializer(serializers.Serializer):
    results = JobTypeSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Always null: every job type fits on one page.")
    previous = serializers.CharField(allow_null=True, help_text="Always null.")
