"""Exchange: payment requests for AITBC in bitcoin, watching the chain, and crediting each payment exactly once.

App dependencies point one way: accounts ← exchange. Only `_move` changes a payment's status, as a compare-and-set.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from accounts import ledger
from accounts.models import User
from aitbc_site import amounts
from exchange.backends import (
    BLOCK_TIME_LEEWAY,
    SATOSHI,
    BackendError,
    ChainBackend,
    ChainOutput,
    backend_from_settings,
)
from exchange.exceptions import AmountOutOfRange, ExchangeDisabled, InvalidPaymentState
from exchange.models import PAYMENT_TRANSITIONS, ExchangeRate, Payment, PaymentStatus
from exchange.selectors import current_rate
from exchange.wallet import receive_address

logger = logging.getLogger(__name__)

# How many satoshi at most are added to tell payments to the shared BITCOIN_ADDRESS apart.
SHARED_ADDRESS_SLOTS = 10_000


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
    now = timezone.now()
    fields: dict[str, Any] = {
        "user": user,
        "aitbc_amount": aitbc_amount,
        "rate": rate,
        "created_at": now,
        "updated_at": now,
        "expires_at": now + timedelta(seconds=settings.PAYMENT_EXPIRY_SECONDS),
        "required_confirmations": _required_confirmations(btc_amount),
    }
    if settings.BITCOIN_XPUB:
        return _create_with_fresh_address(fields, btc_amount)
    return _create_on_shared_address(fields, btc_amount)


def _required_confirmations(btc_amount: Decimal) -> int:
    if btc_amount > settings.BITCOIN_LARGE_PAYMENT_BTC:
        return settings.BITCOIN_LARGE_PAYMENT_CONFIRMATIONS
    return settings.BITCOIN_MIN_CONFIRMATIONS


def _create_with_fresh_address(fields: dict[str, Any], btc_amount: Decimal) -> Payment:
    """The next unused receive index; the unique index makes two concurrent requests take two indexes."""
    backend = backend_from_settings()
    for _ in range(20):
        last = Payment.objects.aggregate(last=Max("derivation_index"))["last"]
        index = 0 if last is None else last + 1
        address = receive_address(settings.BITCOIN_XPUB, index)
        try:
            with transaction.atomic():
                payment = Payment.objects.create(
                    btc_amount=btc_amount, address=address, derivation_index=index, **fields
                )
        except IntegrityError:
            continue
        _start_watching(backend, payment)
        return payment
    raise InvalidPaymentState("Could not allocate a receive address; try again.")


def _create_on_shared_address(fields: dict[str, Any], btc_amount: Decimal) -> Payment:
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
        _start_watching(backend_from_settings(), payment)
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
    credited = _aitbc_for(payment, received)
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
            watching=False,
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


@dataclass(frozen=True)
class Observation:
    outputs: list[ChainOutput]
    received: Decimal
    confirmations: int


def _observe(backend: ChainBackend, payment: Payment) -> Observation:
    outputs = backend.outputs_to(payment.address, since=payment.created_at)
    if payment.derivation_index is None:
        outputs = _own_output_on_shared_address(payment, outputs)
    outputs.sort(key=lambda output: (output.txid, output.vout))
    received = sum((output.value_btc for output in outputs), Decimal("0"))
    confirmations = min((output.confirmations for output in outputs), default=0)
    return Observation(outputs=outputs, received=received, confirmations=confirmations)


def _own_output_on_shared_address(payment: Payment, outputs: list[ChainOutput]) -> list[ChainOutput]:
    """On the shared address a payment is one output of exactly the amount asked for, mined no earlier than two
    hours (the leeway of block times) before it was asked for, and claimed by no other payment: amounts are unique
    only among watched payments, so a later payment may ask for the amount of one already paid."""
    claimed = set(
        Payment.objects.filter(address=payment.address, txid__isnull=False)
        .exclude(pk=payment.pk)
        .values_list("txid", "vout")
    )
    candidates = [
        output
        for output in outputs
        if output.value_btc == payment.btc_amount
        and (output.txid, output.vout) not in claimed
        and (output.block_time is None or output.block_time >= payment.created_at - BLOCK_TIME_LEEWAY)
    ]
    # The one it already holds, else the most confirmed. A second output of the same amount is not this payment's:
    # summed in, it would stay unclaimed and be credited again to the next payment asking for that amount.
    candidates.sort(
        key=lambda output: ((output.txid, output.vout) != (payment.txid, payment.vout), -output.confirmations,
                            output.txid, output.vout)
    )
    return candidates[:1]


def payment_check(*, payment: Payment, backend: ChainBackend | None = None) -> Payment:
    """Look at the chain once and move the payment along. Raises BackendError, changing nothing, if the chain
    cannot be read."""
    backend = backend or backend_from_settings()
    now = timezone.now()
    if payment.derivation_index is not None and payment.last_checked_at is None:
        backend.watch(payment.address, since=payment.created_at)
    seen = _observe(backend, payment)
    Payment.objects.filter(pk=payment.pk).update(last_checked_at=now)
    payment.last_checked_at = now
    grace_ends = payment.expires_at + timedelta(seconds=settings.PAYMENT_LATE_GRACE_SECONDS)

    if not seen.outputs:
        if payment.status in (PaymentStatus.PENDING, PaymentStatus.CONFIRMING) and now >= payment.expires_at:
            # Nothing arrived in time, or what was seen left the mempool (replaced, double-spent) and never returned.
            _move(payment=payment, new=PaymentStatus.EXPIRED, now=now, received_btc=Decimal("0"), confirmations=0,
                  txid=None, vout=None, seen_at=None)
        if payment.status == PaymentStatus.EXPIRED and now >= grace_ends:
            Payment.objects.filter(pk=payment.pk).update(watching=False)
        return payment

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
    }
    progress = {"received_btc": seen.received, **chain_fields}
    if payment.seen_at > grace_ends:
        _move(payment=payment, new=PaymentStatus.NEEDS_REVIEW, now=now, watching=False,
              note="paid after the late grace period", **progress)
        return payment
    if seen.received < payment.btc_amount:
        if now >= payment.expires_at:
            _move(payment=payment, new=PaymentStatus.UNDERPAID, now=now, watching=False, **progress)
        else:
            Payment.objects.filter(pk=payment.pk, status=payment.status).update(**progress)
        return payment
    if seen.confirmations >= required:
        try:
            _credit(payment=payment, received=seen.received, actor="system", now=now, **chain_fields)
        except AmountOutOfRange as refusal:
            # The credit would take the buyer's balance beyond MAX_AMOUNT. Its transaction rolled back, the move
            # included; the payment stays as it was, noted, for an operator, and the other payments go on.
            logger.warning("payment %s not credited: %s", payment.pk, refusal.message)
            payment.refresh_from_db()
            Payment.objects.filter(pk=payment.pk, status=payment.status).update(
                note=f"not credited: {refusal.message}"[:500], **progress
            )
    elif payment.status in (PaymentStatus.PENDING, PaymentStatus.EXPIRED):
        _move(payment=payment, new=PaymentStatus.CONFIRMING, now=now, **progress)
    else:
        Payment.objects.filter(pk=payment.pk, status=payment.status).update(**progress)
    return payment


def check_open_payments() -> dict[str, int]:
    """Check every watched payment once. Safe to run concurrently: each move is a compare-and-set and each credit
    has a unique ledger reference."""
    backend = backend_from_settings()
    counts = {"checked": 0, "credited": 0, "backend_errors": 0}
    for payment in Payment.objects.filter(watching=True).order_by("last_checked_at", "created_at"):
        try:
            payment_check(payment=payment, backend=backend)
        except BackendError as error:
            logger.warning("payment %s not checked: the chain backend failed: %s", payment.pk, error)
            counts["backend_errors"] += 1
            continue
        counts["checked"] += 1
        counts["credited"] += payment.status == PaymentStatus.CONFIRMED
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
    if (payment.status, PaymentStatus.EXPIRED) not in PAYMENT_TRANSITIONS or not _move(
        payment=payment, new=PaymentStatus.EXPIRED, now=timezone.now(), watching=False,
        note=f"expired by operator {operator}",
    ):
        raise InvalidPaymentState(f"A {payment.status} payment cannot be expired.")
    return payment
