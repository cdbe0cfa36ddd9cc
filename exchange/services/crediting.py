"""Confirming a payment and crediting its AITBC, exactly once: how many confirmations it needs, what the bitcoin
received buys at the locked rate, and an operator's confirmation (the manual backend, or a payment held for review)."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import ledger
from aitbc_site import amounts
from exchange.exceptions import InvalidPaymentState
from exchange.models import Payment, PaymentStatus
from exchange.services.transitions import closing_fields, move


def required_confirmations(btc_amount: Decimal) -> int:
    """How many confirmations a payment of `btc_amount` needs before it is credited."""
    if btc_amount > settings.BITCOIN_LARGE_PAYMENT_BTC:
        return settings.BITCOIN_LARGE_PAYMENT_CONFIRMATIONS
    return settings.BITCOIN_MIN_CONFIRMATIONS


def _aitbc_for(payment: Payment, received: Decimal) -> Decimal:
    """What `received` BTC buys at the payment's locked rate. The amount asked for buys exactly the AITBC asked for
    (its BTC was rounded up to the satoshi, or had a few satoshi added on the shared address); more buys all of it
    at the locked rate; less (an operator resolving an underpayment) buys what arrived."""
    if received == payment.btc_amount:
        return payment.aitbc_amount
    at_rate = ledger.quantize_down(received * payment.rate)
    return max(at_rate, payment.aitbc_amount) if received > payment.btc_amount else at_rate


def credit(*, payment: Payment, received: Decimal, actor: str, now: datetime, **chain_fields: Any) -> bool:
    """Confirm and credit, exactly once: the posting's unique reference is the payment itself."""
    # Refused before anything is written: beyond the largest amount the column itself may not hold it.
    credited = amounts.check_range(_aitbc_for(payment, received), what="credited_aitbc")
    paid_by = f", output {chain_fields['txid']}:{chain_fields['vout']}" if chain_fields.get("txid") else ""
    confirmed_by = f", confirmed by {actor}" if actor != "system" else ""
    with transaction.atomic():
        if not move(
            payment=payment,
            new=PaymentStatus.CONFIRMED,
            now=now,
            actor=actor,
            reason=f"credited {credited:.8f} AITBC for {received:.8f} BTC",
            confirmed_at=now,
            credited_aitbc=credited,
            received_btc=received,
            **closing_fields(payment, now),
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


def payment_confirm_by_operator(*, payment: Payment, operator: str, received_btc: Decimal | None = None) -> Payment:
    """An operator confirms a payment (manual backend, or resolving one held for review) and it is credited."""
    now = timezone.now()
    received = received_btc if received_btc is not None else max(payment.received_btc, payment.btc_amount)
    if received <= 0:
        raise InvalidPaymentState("Nothing to credit: the received amount must be positive.")
    if payment.status == PaymentStatus.CONFIRMED or not credit(
        payment=payment, received=received, actor=f"operator:{operator}", now=now
    ):
        raise InvalidPaymentState(f"A {payment.status} payment cannot be confirmed.")
    Payment.objects.filter(pk=payment.pk).update(note=f"confirmed by operator {operator}")
    return payment
