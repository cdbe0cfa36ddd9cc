"""Late deposits: bitcoin that reached a payment's address after the payment was closed. The services of the life
stage after a payment; `exchange.services.watching` finds them on the chain and calls `late_deposits_record`.

Nothing here credits by itself: a late deposit waits for an operator, who credits it through the ledger at the
current rate (the payment's rate lock is over), or marks it refunded or ignored, always with a reason.
"""

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts import ledger
from aitbc_site import amounts
from exchange.backends import ChainOutput
from exchange.exceptions import InvalidPaymentState
from exchange.models import LateDeposit, LateDepositStatus, Payment
from exchange.selectors import current_rate

logger = logging.getLogger(__name__)


def late_deposits_record(*, payment: Payment, outputs: list[ChainOutput], now: datetime) -> list[LateDeposit]:
    """Record each output once (the unique txid+vout makes repeated and concurrent checks idempotent); returns the
    ones recorded now, each also logged as a warning for the operators."""
    if not outputs:
        return []
    known = set(
        LateDeposit.objects.filter(txid__in={output.txid for output in outputs}).values_list("txid", "vout")
    )
    fresh = [
        LateDeposit(
            payment=payment,
            txid=output.txid,
            vout=output.vout,
            amount_btc=output.value_btc,
            block_height=output.block_height,
            confirmations=output.confirmations,
            seen_at=now,
        )
        for output in outputs
        if (output.txid, output.vout) not in known
    ]
    # A checker racing this one may insert the same output between the read above and here: the conflict is
    # skipped, and only what this checker actually inserted is reported.
    LateDeposit.objects.bulk_create(fresh, ignore_conflicts=True)
    recorded = list(
        LateDeposit.objects.filter(payment=payment, seen_at=now, txid__in={deposit.txid for deposit in fresh})
    )
    for deposit in recorded:
        logger.warning(
            "late deposit held for review: %s BTC in %s:%s to %s, after payment %s was closed (%s)",
            deposit.amount_btc, deposit.txid, deposit.vout, payment.address, payment.pk, payment.status,
        )
    return recorded


def _resolve(*, deposit: LateDeposit, status: str, operator: str, reason: str, **fields: object) -> bool:
    """Compare-and-set an open deposit to its resolution; False if another operator resolved it first."""
    now = timezone.now()
    resolved = LateDeposit.objects.filter(pk=deposit.pk, status=LateDepositStatus.OPEN).update(
        status=status, resolved_by=operator, resolved_at=now, resolution_note=reason[:500], **fields
    )
    if resolved:
        deposit.status, deposit.resolved_by, deposit.resolved_at, deposit.resolution_note = (
            status, operator, now, reason[:500]
        )
        for name, value in fields.items():
            setattr(deposit, name, value)
    return bool(resolved)


def _require(*, deposit: LateDeposit, operator: str, reason: str) -> None:
    if not reason.strip() or not operator.strip():
        raise InvalidPaymentState("Resolving a late deposit needs a reason and the operator's name.")
    if deposit.status != LateDepositStatus.OPEN:
        raise InvalidPaymentState(f"This late deposit is already {deposit.status}.")


def late_deposit_credit(*, deposit: LateDeposit, operator: str, reason: str) -> LateDeposit:
    """An operator credits a late deposit to the payment's buyer at the current rate, once."""
    _require(deposit=deposit, operator=operator, reason=reason)
    rate = current_rate().btc_to_aitbc
    amount = amounts.check_range(ledger.quantize_down(deposit.amount_btc * rate), what="credited_aitbc")
    if amount <= 0:
        raise InvalidPaymentState("The deposit buys no AITBC at the current rate; mark it refunded or ignored.")
    with transaction.atomic():
        if not _resolve(
            deposit=deposit, status=LateDepositStatus.CREDITED, operator=operator, reason=reason, credited_aitbc=amount
        ):
            raise InvalidPaymentState("This late deposit was resolved meanwhile.")
        user_id = Payment.objects.values_list("user_id", flat=True).get(pk=deposit.payment_id)
        ledger.deposit(
            user_id=user_id,
            amount=amount,
            # The output itself is the reference: whatever happens, one output is credited at most once.
            reference=f"exchange-late-deposit:{deposit.txid}:{deposit.vout}",
            memo=f"late deposit {deposit.amount_btc} BTC at {rate}, output {deposit.txid}:{deposit.vout}, "
            f"credited by operator:{operator}: {reason}"[:500],
        )
    return deposit


def late_deposit_close(*, deposit: LateDeposit, operator: str, reason: str, status: str) -> LateDeposit:
    """An operator closes a late deposit without crediting it: refunded to the sender, or ignored."""
    if status not in (LateDepositStatus.REFUNDED, LateDepositStatus.IGNORED):
        raise ValueError(f"a late deposit is closed as refunded or ignored, not {status}")
    _require(deposit=deposit, operator=operator, reason=reason)
    if not _resolve(deposit=deposit, status=status, operator=operator, reason=reason):
        raise InvalidPaymentState("This late deposit was resolved meanwhile.")
    return deposit
