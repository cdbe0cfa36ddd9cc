from typing import Any

from rest_framework import serializers

from accounts.serializers import AmountField
from aitbc_site.strict import StrictSerializer
from exchange.models import Payment, PaymentStatus
from exchange.wallet import bip21_uri


class RateSerializer(serializers.Serializer):
    btc_to_aitbc = AmountField(help_text="AITBC per BTC.")
    updated_at = serializers.DateTimeField(source="created_at")


class CreatePaymentSerializer(StrictSerializer):
    aitbc_amount = AmountField(required=False, help_text="AITBC to buy; the BTC to pay is rounded up to the satoshi.")
    btc_amount = AmountField(required=False, help_text="BTC to pay; the AITBC is rounded down.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("aitbc_amount" in attrs) == ("btc_amount" in attrs):
            raise serializers.ValidationError(
                {"non_field_errors": ["Send exactly one of aitbc_amount and btc_amount."]}
            )
        return attrs


class PaymentSerializer(serializers.ModelSerializer):
    btc_amount = AmountField()
    aitbc_amount = AmountField()
    rate = AmountField(help_text="Locked for the request's lifetime.")
    received_btc = AmountField(positive=False)
    credited_aitbc = AmountField(allow_null=True)
    payment_uri = serializers.SerializerMethodField(help_text="BIP 21 URI for wallets.")
    status = serializers.ChoiceField(choices=PaymentStatus.choices)

    class Meta:
        model = Payment
        fields = [
            "id", "status", "btc_amount", "aitbc_amount", "rate", "address", "payment_uri", "expires_at",
            "created_at", "confirmations", "required_confirmations", "txid", "received_btc", "credited_aitbc",
        ]
        read_only_fields = fields

    def get_payment_uri(self, payment: Payment) -> str:
        return bip21_uri(payment.address, payment.btc_amount, label=f"AITBC payment {payment.pk}")
