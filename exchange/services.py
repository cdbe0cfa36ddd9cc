"""Exchange: payment requests for AITBC in bitcoin, watching the chain, and crediting each payment exactly once.

App dependencies point one way: accounts ← exchange. Only `_move` changes a payment's status, as a compare-and-set.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from accounts import ledger
from accounts.models import User
from aitbc_site import amounts
from exchange.backends import (
    SATOSHI,
    BackendError,
    ChainBackend,
    backend_from_settings,
)
from exchange.exceptions import (
    AmountOutOfRange,
    ChainUnavailable,
    ExchangeDisabled,
    InvalidPaymentState,
    NoFreshAddress,
)
from exchange.late_deposits import late_deposits_record
from exchange.models import PAYMENT_TRANSITIONS, ExchangeRate, Payment, PaymentStatus, SkippedAddress
from exchange.observations import Observation, late_outputs, observe
from exchange.selectors import current_rate
from exchange.wallet import receive_address

logger = logging.getLogger(__name__)

# How many satoshi at most are added to tell payments to the shared BITCOIN_ADDRESS apart.
SHARED_ADDRESS_SLOTS = 10_000
# How many receive indexes one request tries (each used one costs a look-up and is remembered as skipped, so the
# next request starts after it): a wallet with a long used prefix advances this many a request, then answers 503.
RECEIVE_INDEX_SCAN_LIMIT = 20
# A closed payment's address is looked at for late deposits at most this often: they wait for an operator anyway.
DEPOSIT_WATCH_INTERVAL = timedelta(minutes=10)


def rate_set(*, btc_to_aitbc: Decimal, source: str, force: bool = False) -> ExchangeRate:
    """Record a new rate. A change of more than RATE_MAX_CHANGE is refused unless forced."""
    if btc_to_aitbc <= 0 or not amounts.in_range(btc_to_aitbc):
        raise ValueError(f"the rate must be positive and at most {amounts.MAX_TEXT}")
    current = current_rate()
    change = abs(btc_to_aitbc - current.btc_to_aitbc) / current.btc_to_aitbc
    if change > settings.RATE_MAX_CHANGE and not force:
        raise ValueError(
            f"the rate would change by {change:.1%} (from {current.btc_to_aitbc} to {btc_to_aitbc}), more than "
            f"RATE_MAX_CHANGE {settings.RATE_MAX_CHANGE:.0%}; use --force if that is right"
        )
    return ExchangeRate.objects.create(
        btc_to_aitbc=btc_to_aitbc.quantize(SATOSHI), source=source[:500], created_at=timezone.now()
    )


# --- payment requests -------------------------------------------------------------------------------------------


def payment_create(*, user: User, aitbc_amount: Decimal | None = None, btc_amount: Decimal | None = None) -> Payment:
    """Open a payment request at the current rate, locked until it expires."""
    if not settings.BITCOIN_XPUB and not settings.BITCOIN_ADDRESS:
        raise ExchangeDisabled()
    if (aitbc_amount is None) == (btc_amount is None):
        raise ValueError("exactly one of aitbc_amount and btc_amount")
    rate = current_rate().btc_to_aitbc
    # The limits are checked before anything is rounded: an amount far outside them (10¹⁰ AITBC at a rate of 10⁻⁸
    # is 10¹⁸ BTC) may have more digits at 8 decimal places than Decimal's 28, and rounding it would raise.
    # Rounding up to the satoshi cannot carry an amount within the limits (8 places themselves) outside them.
    unrounded_btc = aitbc_amount / rate if aitbc_amount is not None else btc_amount
    if not settings.EXCHANGE_MIN_BTC <= unrounded_btc <= settings.EXCHANGE_MAX_BTC:
        raise AmountOutOfRange(
            f"Payments must be between {settings.EXCHANGE_MIN_BTC} and {settings.EXCHANGE_MAX_BTC} BTC.",
            details={"btc_amount": f"{unrounded_btc:.8f}"},
        )
    if aitbc_amount is not None:
        btc_amount = ledger.quantize_up(unrounded_btc)
    else:
        aitbc_amount = ledger.quantize_down(btc_amount * rate)
    if aitbc_amount <= 0:
        raise AmountOutOfRange("The amount buys no AITBC at the current rate.", details={"btc_amount": str(btc_amount)})
    amounts.check_range(aitbc_amount, what="aitbc_amount")
    backend = backend_from_settings()
    chain_height = _chain_call(backend.tip_height, "reading the tip height")
    now = timezone.now()
    fields: dict[str, Any] = {
        "chain_height": chain_height,
        "user": user,
        "aitbc_amount": aitbc_amount,
        "rate": rate,
        "created_at": now,
        "updated_at": now,
        "expires_at": now + timedelta(seconds=settings.PAYMENT_EXPIRY_SECONDS),
        "required_confirmations": _required_confirmations(btc_amount),
    }
    if settings.BITCOIN_XPUB:
        return _create_with_fresh_address(backend, fields, btc_amount)
    return _create_on_shared_address(backend, fields, btc_amount)


T = TypeVar("T")


def _chain_call(call: Callable[[], T], doing: str) -> T:
    """A backend call a new payment cannot do without: no address is issued unchecked, no payment lacks its height."""
    try:
        return call()
    except BackendError as error:
        logger.warning("no payment issued: the chain backend failed %s: %s", doing, error)
        raise ChainUnavailable() from None


def _required_confirmations(btc_amount: Decimal) -> int:
    if btc_amount > settings.BITCOIN_LARGE_PAYMENT_BTC:
        return settings.BITCOIN_LARGE_PAYMENT_CONFIRMATIONS
    return settings.BITCOIN_MIN_CONFIRMATIONS


def _next_receive_index() -> int:
    """One past the highest index handed out or skipped."""
    taken = [
        Payment.objects.aggregate(last=Max("derivation_index"))["last"],
        SkippedAddress.objects.aggregate(last=Max("derivation_index"))["last"],
    ]
    return max((index for index in taken if index is not None), default=-1) + 1


def _create_with_fresh_address(backend: ChainBackend, fields: dict[str, Any], btc_amount: Decimal) -> Payment:
    """The next receive index never handed out and never paid on the chain (the xpub may have been used by another
    database: a restored backup, a staging copy); the unique index makes two concurrent requests take two indexes."""
    for _ in range(RECEIVE_INDEX_SCAN_LIMIT):
        index = _next_receive_index()
        address = receive_address(settings.BITCOIN_XPUB, index)
        if _chain_call(partial(backend.address_has_history, address), f"looking up {address}"):
            logger.warning(
                "receive index 0/%d (%s) skipped: the chain already shows transactions for it, so BITCOIN_XPUB was "
                "used before (another database, a restored backup)", index, address,
            )
            SkippedAddress.objects.get_or_create(
                derivation_index=index, defaults={"address": address, "created_at": timezone.now()}
            )
            continue
        try:
            with transaction.atomic():
                payment = Payment.objects.create(
                    btc_amount=btc_amount, address=address, derivation_index=index, **fields
                )
        except IntegrityError:
            continue
        _start_watching(backend, payment)
        return payment
    next_index = _next_receive_index()
    logger.warning("no payment issued: %d receive indexes tried, the scan goes on from 0/%d at the next request",
                   RECEIVE_INDEX_SCAN_LIMIT, next_index)
    raise NoFreshAddress(
        f"The {RECEIVE_INDEX_SCAN_LIMIT} receive addresses tried were used before or taken meanwhile; try again.",
        details={"next_index": next_index},
    )


def _create_on_shared_address(backend: ChainBackend, fields: dict[str, Any], btc_amount: Decimal) -> Payment:
    """Add the fewest satoshi that no watched or recent payment to the shared address already asks for."""
    address = settings.BITCOIN_ADDRESS
    # Amounts of payments closed within the late grace stay taken too: a second or late transaction paying one of
    # them must not pay a new payment. The unique constraint guards only the watched ones (concurrent requests).
    recent = fields["created_at"] - timedelta(
        seconds=settings.PAYMENT_EXPIRY_SECONDS + settings.PAYMENT_LATE_GRACE_SECONDS
    )
    taken = set(
        Payment.objects.filter(address=address, derivation_index__isnull=True)
        .filter(Q(watching=True) | Q(created_at__gte=recent))
        .values_list("btc_amount", flat=True)
    )
    for extra in range(1, SHARED_ADDRESS_SLOTS + 1):
        amount = btc_amount + extra * SATOSHI
        if amount in taken:
            continue
        try:
            with transaction.atomic():
                payment = Payment.objects.create(btc_amount=amount, address=address, **fields)
        except IntegrityError:
            continue  # taken by a concurrent request a moment ago
        _start_watching(backend, payment)
        return payment
    raise InvalidPaymentState("Too many open payments of this amount; try again later or another amount.")


def _start_watching(backend: ChainBackend, payment: Payment) -> None:
    try:
        backend.watch(payment.address, since=payment.created_at)
    except BackendError as error:
        # The payment exists and is shown to the user; the next check retries the import before asking.
        logger.warning("could not register %s with the chain backend yet: %s", payment.address, error)


# --- watching the chain -----------------------------------------------------------------------------------------


def _move(*, payment: Payment, new: str, now: datetime, **fields: Any) -> bool:
    """Compare-and-set a payment's status; False if another check moved it first."""
    if (payment.status, new) not in PAYMENT_TRANSITIONS:
        raise ValueError(f"illegal payment transition {payment.status} → {new}")
    moved = Payment.objects.filter(pk=payment.pk, status=payment.status).update(status=new, updated_at=now, **fields)
    if moved:
        payment.status = new
        for name, value in fields.items():
            setattr(payment, name, value)
    return bool(moved)


def _record_progress(*, payment: Payment, **fields: Any) -> bool:
    """What the chain shows so far, if the payment is still in the status it was read in; False otherwise."""
    recorded = Payment.objects.filter(pk=payment.pk, status=payment.status).update(**fields)
    if recorded:
        for name, value in fields.items():
            setattr(payment, name, value)
    return bool(recorded)


def _closed(payment: Payment, now: datetime) -> dict[str, Any]:
    """What every move that stops watching a payment writes: its address is still looked at for late deposits, on
    the shared address only while its amount is reserved (after that an output of it pays the next payment)."""
    if payment.derivation_index is None:
        reserved = settings.PAYMENT_EXPIRY_SECONDS + settings.PAYMENT_LATE_GRACE_SECONDS
        until = min(payment.created_at + timedelta(seconds=reserved),
                    now + timedelta(seconds=settings.PAYMENT_DEPOSIT_WATCH_SECONDS))
    else:
        until = now + timedelta(seconds=settings.PAYMENT_DEPOSIT_WATCH_SECONDS)
    return {"watching": False, "deposit_watch_until": until if until > now else None}


def _aitbc_for(payment: Payment, received: Decimal) -> Decimal:
    """What `received` BTC buys at the payment's locked rate. The amount asked for buys exactly the AITBC asked for
    (its BTC was rounded up to the satoshi, or had a few satoshi added on the shared address); more buys all of it
    at the locked rate; less (an operator resolving an underpayment) buys what arrived."""
    if received == payment.btc_amount:
        return payment.aitbc_amount
    at_rate = ledger.quantize_down(received * payment.rate)
    return max(at_rate, payment.aitbc_amount) if received > payment.btc_amount else at_rate


def _credit(*, payment: Payment, received: Decimal, actor: str, now: datetime, **chain_fields: Any) -> bool:
    """Confirm and credit, exactly once: the posting's unique reference is the payment itself."""
    # Refused before anything is written: beyond the largest amount the column itself may not hold it.
    credited = amounts.check_range(_aitbc_for(payment, received), what="credited_aitbc")
    paid_by = f", output {chain_fields['txid']}:{chain_fields['vout']}" if chain_fields.get("txid") else ""
    confirmed_by = f", confirmed by {actor}" if actor != "system" else ""
    with transaction.atomic():
        if not _move(
            payment=payment,
            new=PaymentStatus.CONFIRMED,
            now=now,
            confirmed_at=now,
            credited_aitbc=credited,
            received_btc=received,
            **_closed(payment, now),
            **chain_fields,
        ):
            return False
        ledger.deposit(
            user_id=payment.user_id,
            amount=credited,
            reference=f"exchange-payment:{payment.pk}",
            memo=f"{received} BTC at {payment.rate}{paid_by}{confirmed_by}",
        )
    return True


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
    grace_ends = payment.expires_at + timedelta(seconds=settings.PAYMENT_LATE_GRACE_SECONDS)
    if not seen.outputs:
        if payment.status in (PaymentStatus.PENDING, PaymentStatus.CONFIRMING) and now >= payment.expires_at:
            # Nothing arrived in time, or what was seen left the mempool (replaced, double-spent) and never returned.
            if not _move(payment=payment, new=PaymentStatus.EXPIRED, now=now, received_btc=Decimal("0"),
                         confirmations=0, txid=None, vout=None, seen_at=None, counted_outputs=[]):
                return LOST
        if payment.status == PaymentStatus.EXPIRED and now >= grace_ends:
            return _outcome(_record_progress(payment=payment, **_closed(payment, now)))
        return MOVED

    if payment.seen_at is None:
        Payment.objects.filter(pk=payment.pk, seen_at__isnull=True).update(seen_at=now)
        payment.seen_at = now
    first = seen.outputs[0]
    # What arrived decides the confirmations: an overpayment can make a small request a large payment.
    required = max(payment.required_confirmations, _required_confirmations(seen.received))
    chain_fields = {
        "confirmations": seen.confirmations,
        "required_confirmations": required,
        "txid": first.txid,
        "vout": first.vout,
        "counted_outputs": [f"{output.txid}:{output.vout}" for output in seen.outputs],
    }
    progress = {"received_btc": seen.received, **chain_fields}
    if payment.seen_at > grace_ends:
        return _outcome(_move(payment=payment, new=PaymentStatus.NEEDS_REVIEW, now=now,
                              note="paid after the late grace period", **_closed(payment, now), **progress))
    if seen.received < payment.btc_amount:
        if now >= payment.expires_at:
            return _outcome(_move(payment=payment, new=PaymentStatus.UNDERPAID, now=now, **_closed(payment, now),
                                  **progress))
        return _outcome(_record_progress(payment=payment, **progress))
    if seen.confirmations >= required:
        try:
            credited = _credit(payment=payment, received=seen.received, actor="system", now=now, **chain_fields)
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
        return _outcome(_move(payment=payment, new=PaymentStatus.CONFIRMING, now=now, **progress))
    return _outcome(_record_progress(payment=payment, **progress))


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


# --- operators --------------------------------------------------------------------------------------------------


def payment_confirm_by_operator(*, payment: Payment, operator: str, received_btc: Decimal | None = None) -> Payment:
    """An operator confirms a payment (manual backend, or resolving one held for review) and it is credited."""
    now = timezone.now()
    received = received_btc if received_btc is not None else max(payment.received_btc, payment.btc_amount)
    if received <= 0:
        raise InvalidPaymentState("Nothing to credit: the received amount must be positive.")
    if payment.status == PaymentStatus.CONFIRMED or not _credit(
        payment=payment, received=received, actor=f"operator:{operator}", now=now
    ):
        raise InvalidPaymentState(f"A {payment.status} payment cannot be confirmed.")
    Payment.objects.filter(pk=payment.pk).update(note=f"confirmed by operator {operator}")
    return payment


def payment_expire_by_operator(*, payment: Payment, operator: str) -> Payment:
    """An operator closes a payment without crediting it."""
    now = timezone.now()
    if (payment.status, PaymentStatus.EXPIRED) not in PAYMENT_TRANSITIONS or not _move(
        payment=payment, new=PaymentStatus.EXPIRED, now=now, note=f"expired by operator {operator}",
        **_closed(payment, now),
    ):
        raise InvalidPaymentState(f"A {payment.status} payment cannot be expired.")
    return payment
