"""Settlement: a job's end moves the hold placed on its price at submission.

A completed job's hold is paid out, the platform's fee to the platform and the rest to the miner's wallet; any
other end gives it back to the client. The fee is computed here once and travels as a `Payment` to the receipt.
Jobs of service clients (API_KEYS) are not billed: they hold nothing, and settle to a payment of nothing earned.
"""

from decimal import Decimal

from django.conf import settings

from accounts import ledger
from jobs.models import TERMINAL_STATUSES, Job, JobStatus
from miners.services import payee_of
from receipts.services import Payment

NOTHING = Decimal("0")


def payment_for(job: Job, *, end: str, miner_paid: bool = True) -> Payment:
    """What a job ending so pays: its fee and the miner's share on completion of a billed job, else nothing. A miner
    that is paid no one (a service user's miner without a payout wallet) leaves the whole price to the platform."""
    if end != JobStatus.COMPLETED or not job.billed:
        return Payment(price=job.price, fee=NOTHING, miner_earnings=NOTHING)
    fee = ledger.quantize_down(job.price * settings.PLATFORM_FEE_RATE) if miner_paid else job.price
    return Payment(price=job.price, fee=fee, miner_earnings=job.price - fee)


def settle(*, job: Job, end: str) -> Payment:
    """Move the job's hold as its `end` (a terminal status) says, and return what it paid. Call in the transaction
    that ended the job; postings are idempotent, so settling an end twice moves the money once."""
    if end not in TERMINAL_STATUSES:
        raise ValueError(f"a {end} job has not ended")
    if not job.billed or not job.price:
        return payment_for(job, end=end)
    if end == JobStatus.COMPLETED:
        payee_id = payee_of(miner_id=job.miner_id)
        payment = payment_for(job, end=end, miner_paid=payee_id is not None)
        ledger.capture(
            payer_id=job.client_id,
            payee_id=payee_id,
            amount=job.price,
            fee=payment.fee,
            reference=f"job:{job.pk}:capture",
            memo=f"{job.job_type} job {job.pk} completed by miner {job.miner_id}",
        )
        return payment
    ledger.release(
        user_id=job.client_id,
        amount=job.price,
        reference=f"job:{job.pk}:release",
        memo=f"{job.job_type} job {job.pk} {end}",
    )
    return payment_for(job, end=end)
