"""The one place that changes a payment's status: a compare-and-set on the status it was read in."""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from exchange.models import PAYMENT_TRANSITIONS, Payment


def move(*, payment: Payment, new: str, now: datetime, **fields: Any) -> bool:
    """Compare-and-set a payment's status; False if another check moved it first."""
    if (payment.status, new) not in PAYMENT_TRANSITIONS:
        raise ValueError(f"illegal payment transition {payment.status} → {new}")
    moved = Payment.objects.filter(pk=payment.pk, status=payment.status).update(status=new, updated_at=now, **fields)
    if moved:
        payment.status = new
        for name, value in fields.items():
            setattr(payment, name, value)
    return bool(moved)


def record_progress(*, payment: Payment, **fields: Any) -> bool:
    """What the chain shows so far, if the payment is still in the status it was read in; False otherwise."""
    recorded = Payment.objects.filter(pk=payment.pk, status=payment.status).update(**fields)
    if recorded:
        for name, value in fields.items():
            setattr(payment, name, value)
    return bool(recorded)


def closing_fields(payment: Payment, now: datetime) -> dict[str, Any]:
    """What every move that stops watching a payment writes: its address is still looked at for late deposits, on
    the shared address only while its amount is reserved (after that an output of it pays the next payment)."""
    if payment.derivation_index is None:
        reserved = settings.PAYMENT_EXPIRY_SECONDS + settings.PAYMENT_LATE_GRACE_SECONDS
        until = min(payment.created_at + timedelta(seconds=reserved),
                    now + timedelta(seconds=settings.PAYMENT_DEPOSIT_WATCH_SECONDS))
    else:
        until = now + timedelta(seconds=settings.PAYMENT_DEPOSIT_WATCH_SECONDS)
    return {"watching": False, "deposit_watch_until": until if until > now else None}
