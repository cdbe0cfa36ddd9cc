"""Opening a payment request: the quote at the current rate (one amount given, the other derived and checked against
the limits), then an address to pay it to: a fresh receive index under BITCOIN_XPUB, or the shared BITCOIN_ADDRESS
with a few satoshi added to tell its payments apart."""

import logging
from collections.abc import Callable
from datetime import timedelta
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
from exchange.backends import SATOSHI, BackendError, ChainBackend, backend_from_settings
from exchange.exceptions import (
    AmountOutOfRange,
    ChainUnavailable,
    ExchangeDisabled,
    InvalidPaymentState,
    NoFreshAddress,
)
from exchange.models import Payment, SkippedAddress
from exchange.selectors import current_rate
from exchange.services.crediting import required_confirmations
from exchange.services.transitions import record_created
from exchange.wallet import receive_address

logger = logging.getLogger(__name__)

# How many satoshi at most are added to tell payments to the shared BITCOIN_ADDRESS apart.
SHARED_ADDRESS_SLOTS = 10_000
# How many receive indexes one request tries (each used one costs a look-up and is remembered as skipped, so the
# next request starts after it): a wallet with a long used prefix advances this many a request, then answers 503.
RECEIVE_INDEX_SCAN_LIMIT = 20


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
        "required_confirmations": required_confirmations(btc_amount),
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
                _record_requested(payment)
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
                _record_requested(payment)
        except IntegrityError:
            continue  # taken by a concurrent request a moment ago
        _start_watching(backend, payment)
        return payment
    raise InvalidPaymentState("Too many open payments of this amount; try again later or another amount.")


def _record_requested(payment: Payment) -> None:
    record_created(
        payment=payment,
        actor="buyer",
        reason=f"{payment.btc_amount:.8f} BTC for {payment.aitbc_amount:.8f} AITBC at {payment.rate:.8f}",
    )


def _start_watching(backend: ChainBackend, payment: Payment) -> None:
    try:
        backend.watch(payment.address, since=payment.created_at)
    except BackendError as error:
        # The payment exists and is shown to the user; the next check retries the import before asking.
        logger.warning("could not register %s with the chain backend yet: %s", payment.address, error)
