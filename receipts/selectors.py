from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from accounts.models import User
from receipts.exceptions import ReceiptNotFound
from receipts.models import Receipt


def receipt_get_visible(*, receipt_id: UUID | str, user: User) -> Receipt:
    """A receipt for the job's client or the owner of the miner that produced it; anyone else gets 404."""
    try:
        # Parsed first: a malformed id names no receipt, while the lookup itself would raise Django's
        # ValidationError (a 500) rather than ValueError.
        return Receipt.objects.get(Q(client=user) | Q(miner__owner=user), pk=UUID(str(receipt_id)))
    except (Receipt.DoesNotExist, ValueError, ValidationError):
        raise ReceiptNotFound() from None


def receipts_for_job(*, job_id: UUID) -> QuerySet[Receipt]:
    return Receipt.objects.filter(job_id=job_id).order_by("created_at", "sequence")


def receipt_for_attempt(*, job_id: UUID, attempt: int) -> Receipt | None:
    return Receipt.objects.filter(job_id=job_id, attempt=attempt).first()


def receipts_in_chains(*, miner_id: UUID | None = None, job_id: UUID | None = None) -> QuerySet[Receipt]:
    """Receipts for the public explorer, by miner (its chain) or job; only the columns the feed shows are read."""
    receipts = Receipt.objects.only("id", "miner_id", "job_id", "sequence", "document", "document_hash", "created_at")
    if miner_id is not None:
        receipts = receipts.filter(miner_id=miner_id)
    if job_id is not None:
        receipts = receipts.filter(job_id=job_id)
    return receipts
