"""Watching the chain for payments: each check reads what reached a payment's address and moves it along (seen,
credited, underpaid, expired, held for review); a closed payment's address is still looked at for late deposits."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from exchange.backends import BackendError, ChainBackend, backend_from_settings
from exchange.exceptions import AmountOutOfRange
from exchange.models import Payment, PaymentStatus
from exchange.observations import Observation, late_outputs, observe
from exchange.services.crediting import credit, required_confirmations
from exchange.services.expiry import end_late_grace, expire_unpaid, late_grace_end
from exchange.services.late_deposits import late_deposits_record
from exchange.services.transitions import closing_fields, move, record_progress

logger = logging.getLogger(__name__)

# A closed payment's address is looked at for late deposits at most this often: they wait for an operator anyway.
DEPOSIT_WATCH_INTERVAL = timedelta(minutes=10)

# What one check did: moved the payment along (or found nothing to do), credited it, or found it moved by another.
MOVED, CREDITED, LOST = "moved", "credited", "lost"


def payment_check(*, payment: Payment, backend: ChainBackend | None = None) -> Payment:
    """Look at the chain once and move the payment along; for a closed payment, record its late deposits. Raises
    BackendError, changing nothing, if the chain cannot be read. If another check moved the payment meanwhile (a
    compare-and-set lost), answers the payment as stored now, never the stale copy it was called with."""
    _check(payment, backend or backend_from_settings())
    return payment


def _check(payment: Payment, backend: ChainBackend) -> str:
    now = timezone.now()
    if payment.derivation_index is not None and payment.last_checked_at is None:
        backend.watch(payment.address, since=payment.created_at)
    if not payment.watching:
        _check_closed(backend, payment, now)
        return MOVED
    seen = observe(backend, payment)
    Payment.objects.filter(pk=payment.pk).update(last_checked_at=now)
    payment.last_checked_at = now
    outcome = _advance(payment, seen, now)
    if outcome == LOST:
        payment.refresh_from_db()
    return outcome


def _advance(payment: Payment, seen: Observation, now: datetime) -> str:
    """Act on what the chain shows; LOST if the payment was no longer in the status it was read in."""
    grace_ends = late_grace_end(payment)
    if not seen.outputs:
        if payment.status in (PaymentStatus.PENDING, PaymentStatus.CONFIRMING) and now >= payment.expires_at:
            if not expire_unpaid(payment=payment, now=now):
                return LOST
        if payment.status == PaymentStatus.EXPIRED and now >= grace_ends:
            return _outcome(end_late_grace(payment=payment, now=now))
        return MOVED

    if payment.seen_at is None:
        Payment.objects.filter(pk=payment.pk, seen_at__isnull=True).update(seen_at=now)
        payment.seen_at = now
    first = seen.outputs[0]
    # What arrived decides the confirmations: an overpayment can make a small request a large payment.
    required = max(payment.required_confirmations, required_confirmations(seen.received))
    chain_fields = {
        "confirmations": seen.confirmations,
        "required_confirmations": required,
        "txid": first.txid,
        "vout": first.vout,
        "counted_outputs": [f"{output.txid}:{output.vout}" for output in seen.outputs],
    }
    progress = {"received_btc": seen.received, **chain_fields}
    if payment.seen_at > grace_ends:
        return _outcome(move(payment=payment, new=PaymentStatus.NEEDS_REVIEW, now=now, actor="system",
                             reason=f"{seen.received:.8f} BTC arrived after the late grace period",
                             note="paid after the late grace period", **closing_fields(payment, now), **progress))
    if seen.received < payment.btc_amount:
        if now >= payment.expires_at:
            return _outcome(move(payment=payment, new=PaymentStatus.UNDERPAID, now=now, actor="system",
                                 reason=f"{seen.received:.8f} of {payment.btc_amount:.8f} BTC arrived by expiry",
                                 **closing_fields(payment, now), **progress))
        return _outcome(record_progress(payment=payment, **progress))
    if seen.confirmations >= required:
        try:
            credited = credit(payment=payment, received=seen.received, actor="system", now=now, **chain_fields)
        except AmountOutOfRange as refusal:
            # The credit would take the buyer's balance beyond MAX_AMOUNT. Its transaction rolled back, the move
            # included; the payment stays as it was, noted, for an operator, and the other payments go on.
            logger.warning("payment %s not credited: %s", payment.pk, refusal.message)
            payment.refresh_from_db()
            Payment.objects.filter(pk=payment.pk, status=payment.status).update(
                note=f"not credited: {refusal.message}"[:500], **progress
            )
            return LOST  # the caller reads the payment as it is now
        return CREDITED if credited else LOST
    if payment.status in (PaymentStatus.PENDING, PaymentStatus.EXPIRED):
        return _outcome(move(payment=payment, new=PaymentStatus.CONFIRMING, now=now, actor="system",
                             reason=f"{seen.received:.8f} BTC seen, {seen.confirmations} of {required} confirmations",
                             **progress))
    return _outcome(record_progress(payment=payment, **progress))


def _outcome(changed: bool) -> str:
    return MOVED if changed else LOST


def _check_closed(backend: ChainBackend, payment: Payment, now: datetime) -> Payment:
    """Record what reached a closed payment's address since; stop looking once its deposit watch is over."""
    late = late_outputs(backend, payment)
    Payment.objects.filter(pk=payment.pk).update(last_checked_at=now)
    payment.last_checked_at = now
    late_deposits_record(payment=payment, outputs=late, now=now)
    if payment.deposit_watch_until is not None and now >= payment.deposit_watch_until:
        Payment.objects.filter(pk=payment.pk).update(deposit_watch_until=None)
        payment.deposit_watch_until = None
    return payment


def check_open_payments() -> dict[str, int]:
    """Check every watched payment once, and every closed one under deposit watch not looked at for
    DEPOSIT_WATCH_INTERVAL. Safe to run concurrently: each move is a compare-and-set, each credit has a unique
    ledger reference and each late deposit a unique output."""
    backend = backend_from_settings()
    counts = {"checked": 0, "credited": 0, "backend_errors": 0}
    due = timezone.now() - DEPOSIT_WATCH_INTERVAL
    watched = Payment.objects.filter(watching=True).order_by("last_checked_at", "created_at")
    closed = (
        Payment.objects.filter(watching=False, deposit_watch_until__isnull=False)
        .filter(Q(last_checked_at__isnull=True) | Q(last_checked_at__lte=due))
        .order_by("last_checked_at", "created_at")
    )
    for queue in (watched, closed):
        for payment in queue:
            try:
                outcome = _check(payment, backend)
            except BackendError as error:
                logger.warning("payment %s not checked: the chain backend failed: %s", payment.pk, error)
                counts["backend_errors"] += 1
                continue
            counts["checked"] += 1
            # Only what this run credited: a payment another run credited meanwhile is that run's.
            counts["credited"] += outcome == CREDITED
    return counts


def payment_refresh_if_stale(*, payment: Payment) -> Payment:
    """Check a watched payment on read, at most once per PAYMENT_CHECK_INTERVAL; a chain outage only logs."""
    interval = timedelta(seconds=settings.PAYMENT_CHECK_INTERVAL)
    if not payment.watching or (payment.last_checked_at and timezone.now() - payment.last_checked_at < interval):
        return payment
    try:
        return payment_check(payment=payment)
    except BackendError as error:
        logger.warning("payment %s not refreshed: the chain backend failed: %s", payment.pk, error)
        return payment
