"""What the chain shows for a payment: which outputs count toward it and which reached it late. Reads only (the
chain backend and the payments table); `exchange.services.watching` acts on what these answer."""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from exchange.backends import BLOCK_TIME_LEEWAY, ChainBackend, ChainOutput
from exchange.models import LateDeposit, Payment


def is_newer_than_request(payment: Payment, output: ChainOutput) -> bool:
    """Whether an output may count toward a payment: in the mempool, or confirmed above the tip recorded when the
    payment was asked for. Heights, not block times, which may be hours off. A confirmed output of unknown height
    cannot be shown to be newer, so it does not count. Payments without a recorded height (the manual backend, or
    asked for before heights were recorded) keep the older rules."""
    if payment.chain_height is None or output.confirmations <= 0:
        return True
    return output.block_height is not None and output.block_height > payment.chain_height


@dataclass(frozen=True)
class Observation:
    outputs: list[ChainOutput]
    received: Decimal
    confirmations: int


def _outputs(backend: ChainBackend, payment: Payment) -> list[ChainOutput]:
    return backend.outputs_to(payment.address, since=payment.created_at, after_height=payment.chain_height)


def observe(backend: ChainBackend, payment: Payment) -> Observation:
    outputs = [output for output in _outputs(backend, payment) if is_newer_than_request(payment, output)]
    if payment.derivation_index is None:
        outputs = _own_output_on_shared_address(payment, outputs)
    outputs.sort(key=lambda output: (output.txid, output.vout))
    received = sum((output.value_btc for output in outputs), Decimal("0"))
    confirmations = min((output.confirmations for output in outputs), default=0)
    return Observation(outputs=outputs, received=received, confirmations=confirmations)


def _claimed_on_shared_address(payment: Payment) -> set[tuple[str, int]]:
    """Outputs to the shared address that belong to other payments: paid them, or held as their late deposits."""
    paid = Payment.objects.filter(address=payment.address, txid__isnull=False).exclude(pk=payment.pk)
    late = LateDeposit.objects.filter(payment__address=payment.address).exclude(payment=payment)
    return set(paid.values_list("txid", "vout")) | set(late.values_list("txid", "vout"))


def _shared_amount_matches(payment: Payment, output: ChainOutput) -> bool:
    """On the shared address an output is a payment's if it is of exactly its amount; a payment without a recorded
    height also needs it mined no earlier than the leeway of block times before it was asked for."""
    if output.value_btc != payment.btc_amount:
        return False
    return payment.chain_height is not None or (
        output.block_time is None or output.block_time >= payment.created_at - BLOCK_TIME_LEEWAY
    )


def _own_output_on_shared_address(payment: Payment, outputs: list[ChainOutput]) -> list[ChainOutput]:
    """On the shared address a payment is one output of its exact amount that is newer than the request and claimed
    by no other payment: amounts are unique only among watched payments, so a later payment may ask for the amount
    of one already paid."""
    claimed = _claimed_on_shared_address(payment)
    candidates = [
        output
        for output in outputs
        if _shared_amount_matches(payment, output) and (output.txid, output.vout) not in claimed
    ]
    # The one it already holds, else the most confirmed. A second output of the same amount is not this payment's:
    # summed in, it would stay unclaimed and be credited again to the next payment asking for that amount.
    candidates.sort(
        key=lambda output: ((output.txid, output.vout) != (payment.txid, payment.vout), -output.confirmations,
                            output.txid, output.vout)
    )
    return candidates[:1]


def late_outputs(backend: ChainBackend, payment: Payment) -> list[ChainOutput]:
    """Outputs to a closed payment's address that it did not count: newer than its request, confirmed (a mempool
    transaction may still be replaced; BITCOIN_MIN_CONFIRMATIONS 0 is about crediting, not about recording), and on
    the shared address of its exact amount and no other payment's."""
    least = max(settings.BITCOIN_MIN_CONFIRMATIONS, 1)
    outputs = [output for output in _outputs(backend, payment)
               if is_newer_than_request(payment, output) and output.confirmations >= least]
    if payment.derivation_index is None:
        claimed = _claimed_on_shared_address(payment)
        outputs = [output for output in outputs
                   if _shared_amount_matches(payment, output) and (output.txid, output.vout) not in claimed]
    counted = set(payment.counted_outputs)
    return [output for output in outputs if f"{output.txid}:{output.vout}" not in counted]
