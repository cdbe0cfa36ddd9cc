"""The one place that changes a payment's status: a compare-and-set on the status it was read in, and the event of
each change (its creation included), written in the change's transaction and handed to `aitbc_site.committed`."""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from aitbc_site import committed
from exchange.models import PAYMENT_TRANSITIONS, Payment, PaymentEvent


def record_created(*, payment: Payment, actor: str, reason: str) -> PaymentEvent:
    """The creation event of a payment just inserted: called inside the transaction that inserted it."""
    event = PaymentEvent.objects.create(
        payment=payment, at=payment.created_at, from_status=None, to_status=payment.status, actor=actor, reason=reason
    )
    committed.stored([event])
    return event


def move(*, payment: Payment, new: str, now: datetime, actor: str, reason: str, **fields: Any) -> bool:
    """Compare-and-set a payment's status and record the event; False if another check moved it first."""
    old = payment.status
    if (old, new) not in PAYMENT_TRANSITIONS:
        raise ValueError(f"illegal payment transition {old} → {new}")
    # No savepoint of its own: a failed statement here must end the caller's whole transaction anyway, and outside
    # one this is the transaction that keeps the change and its event together.
    with transaction.atomic(savepoint=False):
        moved = Payment.objects.filter(pk=payment.pk, status=old).update(status=new, updated_at=now, **fields)
        if not moved:
            return False
        event = PaymentEvent.objects.create(
            payment_id=payment.pk, at=now, from_status=old, to_status=new, actor=actor, reason=reason[:500]
        )
        committed.stored([event])
    payment.status = new
    for name, value in fields.items():
        setattr(payment, name, value)
    return True


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
