import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from aitbc_site.amounts import AmountField


class ExchangeRate(models.Model):
    """One value of the BTC→AITBC rate; the newest row is the current rate, the others its history."""

    id = models.BigAutoField(primary_key=True)
    # AITBC for one whole BTC: the price of a bitcoin, an AITBC amount with 8 places like any other (rate_set rounds
    # it to them), so it is stored exactly like one and bounded by the same MAX_AMOUNT.
    btc_to_aitbc = AmountField()
    source = models.CharField(max_length=500)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(btc_to_aitbc__gt=0), name="exchange_rate_positive")]

    def __str__(self) -> str:
        return f"1 BTC = {self.btc_to_aitbc} AITBC ({self.created_at:%Y-%m-%d %H:%M})"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CONFIRMING = "confirming", "Confirming"
    CONFIRMED = "confirmed", "Confirmed"
    EXPIRED = "expired", "Expired"
    UNDERPAID = "underpaid", "Underpaid"
    NEEDS_REVIEW = "needs_review", "Needs review"


# The legal moves of a payment. An expired payment still moves on if its bitcoin arrives within the late grace.
PAYMENT_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        (PaymentStatus.PENDING, PaymentStatus.CONFIRMING),
        (PaymentStatus.PENDING, PaymentStatus.CONFIRMED),
        (PaymentStatus.PENDING, PaymentStatus.EXPIRED),
        (PaymentStatus.PENDING, PaymentStatus.UNDERPAID),
        (PaymentStatus.PENDING, PaymentStatus.NEEDS_REVIEW),
        (PaymentStatus.CONFIRMING, PaymentStatus.CONFIRMED),
        # What was seen in the mempool was replaced or double-spent: by less, or by nothing at all.
        (PaymentStatus.CONFIRMING, PaymentStatus.UNDERPAID),
        (PaymentStatus.CONFIRMING, PaymentStatus.EXPIRED),
        (PaymentStatus.EXPIRED, PaymentStatus.CONFIRMING),
        (PaymentStatus.EXPIRED, PaymentStatus.CONFIRMED),
        (PaymentStatus.EXPIRED, PaymentStatus.UNDERPAID),
        (PaymentStatus.EXPIRED, PaymentStatus.NEEDS_REVIEW),
        # An operator resolves what was held for review.
        (PaymentStatus.UNDERPAID, PaymentStatus.CONFIRMED),
        (PaymentStatus.UNDERPAID, PaymentStatus.EXPIRED),
        (PaymentStatus.NEEDS_REVIEW, PaymentStatus.CONFIRMED),
        (PaymentStatus.NEEDS_REVIEW, PaymentStatus.EXPIRED),
    }
)
OPEN_PAYMENT_STATUSES = (PaymentStatus.PENDING, PaymentStatus.CONFIRMING, PaymentStatus.EXPIRED)


class Payment(models.Model):
    """A request to pay bitcoin for AITBC at a rate locked until `expires_at`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payments")
    status = models.CharField(max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING)
    btc_amount = AmountField()
    aitbc_amount = AmountField()
    rate = AmountField()
    address = models.CharField(max_length=100)
    # Receive index 0/i under BITCOIN_XPUB; null for the shared BITCOIN_ADDRESS.
    derivation_index = models.PositiveIntegerField(null=True, blank=True, unique=True)
    # True while the chain is watched for this payment (open, or expired but within the late grace). On a shared
    # address no two watched payments may ask for the same amount, or one payment could not be told from another.
    watching = models.BooleanField(default=True)
    required_confirmations = models.PositiveSmallIntegerField()
    confirmations = models.PositiveIntegerField(default=0)
    received_btc = AmountField(default=Decimal("0"))
    txid = models.CharField(max_length=64, null=True, blank=True)
    vout = models.PositiveIntegerField(null=True, blank=True)
    credited_aitbc = AmountField(null=True, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    seen_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="payment_user_recent"),
            models.Index(fields=["last_checked_at"], condition=Q(watching=True), name="payment_watch_queue"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["address", "btc_amount"],
                condition=Q(watching=True, derivation_index__isnull=True),
                name="payment_shared_address_amount_unique",
            ),
            models.CheckConstraint(condition=Q(btc_amount__gt=0, aitbc_amount__gt=0), name="payment_amounts_positive"),
            models.CheckConstraint(condition=Q(status__in=PaymentStatus.values), name="payment_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.btc_amount} BTC → {self.aitbc_amount} AITBC ({self.status})"
