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
    # The chain's tip when the payment was asked for: an output confirmed at or below it was on the chain before
    # and never counts. Null with the manual backend (it reads no chain) and on payments older than this field.
    chain_height = models.PositiveIntegerField(null=True, blank=True)
    # "txid:vout" of every output summed into received_btc, so that any other output to the address is told apart
    # as a late deposit once the payment is closed.
    counted_outputs = models.JSONField(default=list, blank=True)
    # After it closes (credited, expired, held for review), the address is still looked at until then, so bitcoin
    # sent to it again is recorded as a LateDeposit instead of being lost. On the shared address the amount stays
    # reserved that long, so a later payment never asks for it.
    deposit_watch_until = models.DateTimeField(null=True, blank=True)
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
            models.Index(
                fields=["deposit_watch_until"],
                condition=Q(deposit_watch_until__isnull=False),
                name="payment_deposit_watch_queue",
            ),
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



class PaymentEvent(models.Model):
    """A status change of a payment, its creation included: the payment's timeline for operators, and what a buyer
    may be told of (stored in the change's transaction, handed to `aitbc_site.committed` once it commits)."""

    id = models.BigAutoField(primary_key=True)
    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    # Null for the payment's creation: it had no status before.
    from_status = models.CharField(max_length=16, choices=PaymentStatus.choices, null=True, blank=True)
    to_status = models.CharField(max_length=16, choices=PaymentStatus.choices)
    # "buyer", "system" or "operator:<name>".
    actor = models.CharField(max_length=200)
    reason = models.CharField(max_length=500)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["payment", "at", "id"], name="payment_event_timeline")]
        constraints = [
            models.CheckConstraint(
                condition=Q(to_status__in=PaymentStatus.values)
                & (Q(from_status__isnull=True) | Q(from_status__in=PaymentStatus.values)),
                name="payment_event_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id}: {self.from_status or 'created'} → {self.to_status}"

class SkippedAddress(models.Model):
    """A receive index under BITCOIN_XPUB never handed out because the chain already showed history for its address
    (the xpub was used before: a restored backup, a staging database sharing production's key). Kept so that the
    next request starts after it instead of asking about the same used addresses again."""

    derivation_index = models.PositiveIntegerField(primary_key=True)
    address = models.CharField(max_length=100)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["derivation_index"]

    def __str__(self) -> str:
        return f"0/{self.derivation_index} {self.address}"


class LateDepositStatus(models.TextChoices):
    OPEN = "open", "Open"
    CREDITED = "credited", "Credited"
    REFUNDED = "refunded", "Refunded"
    IGNORED = "ignored", "Ignored"


class LateDeposit(models.Model):
    """Bitcoin that reached a payment's address after the payment was closed (credited, expired, held for review):
    never credited by itself, held for an operator to credit, refund or ignore."""

    id = models.BigAutoField(primary_key=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="late_deposits")
    txid = models.CharField(max_length=64)
    vout = models.PositiveIntegerField()
    amount_btc = AmountField()
    block_height = models.PositiveIntegerField(null=True, blank=True)
    confirmations = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=LateDepositStatus.choices, default=LateDepositStatus.OPEN)
    seen_at = models.DateTimeField()
    resolved_by = models.CharField(max_length=150, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_note = models.CharField(max_length=500, blank=True)
    credited_aitbc = AmountField(null=True, blank=True)

    class Meta:
        ordering = ["-seen_at", "-id"]
        indexes = [models.Index(fields=["seen_at"], condition=Q(status="open"), name="late_deposit_open")]
        constraints = [
            # One output is one deposit however often the address is checked, by however many checkers at once.
            models.UniqueConstraint(fields=["txid", "vout"], name="late_deposit_output_unique"),
            models.CheckConstraint(condition=Q(amount_btc__gt=0), name="late_deposit_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=LateDepositStatus.values), name="late_deposit_status_valid"),
            models.CheckConstraint(
                condition=Q(status="open", resolved_at__isnull=True)
                | (~Q(status="open") & Q(resolved_at__isnull=False)),
                name="late_deposit_resolved_when_closed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount_btc} BTC in {self.txid[:12]}…:{self.vout} ({self.status})"
