"""When a payment expires: nothing (or too little, then nothing) arrived by `expires_at`, the late grace after it
runs out, or an operator closes it without crediting it."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from exchange.exceptions import InvalidPaymentState
from exchange.models import PAYMENT_TRANSITIONS, Payment, PaymentStatus
from exchange.services.transitions import closing_fields, move, record_progress


def late_grace_end(payment: Payment) -> datetime:
    """Until then an expired payment is still watched, and bitcoin reaching it still moves it on."""
    return payment.expires_at + timedelta(seconds=settings.PAYMENT_LATE_GRACE_SECONDS)


def expire_unpaid(*, payment: Payment, now: datetime) -> bool:
    """Nothing arrived in time, or what was seen left the mempool (replaced, double-spent) and never returned: the
    payment expires and forgets what was seen. False if another check moved it first."""
    if payment.status == PaymentStatus.CONFIRMING:
        reason = "the transaction seen left the mempool and nothing replaced it by expiry"
    else:
        reason = "no bitcoin arrived before it expired"
    return move(payment=payment, new=PaymentStatus.EXPIRED, now=now, actor="system", reason=reason,
                received_btc=Decimal("0"), confirmations=0, txid=None, vout=None, seen_at=None, counted_outputs=[])


def end_late_grace(*, payment: Payment, now: datetime) -> bool:
    """Stop watching an expired payment nothing reached within the late grace; its address stays under deposit
    watch. False if another check moved it first."""
    return record_progress(payment=payment, **closing_fields(payment, now))


def payment_expire_by_operator(*, payment: Payment, operator: str) -> Payment:
    """An operator closes a payment without crediting it."""
    now = timezone.now()
    if (payment.status, PaymentStatus.EXPIRED) not in PAYMENT_TRANSITIONS or not move(
        payment=payment, new=PaymentStatus.EXPIRED, now=now, actor=f"operator:{operator}",
        reason="closed by an operator, nothing credited", note=f"expired by operator {operator}",
        **closing_fields(payment, now),
    ):
        raise InvalidPaymentState(f"A {payment.status} payment cannot be expired.")
    return payment
