"""Receipts: signed, chained records of results. Depends on accounts and miners; jobs calls it, never the reverse."""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from django.db import transaction
from django.utils import timezone

from aitbc_site.timestamps import iso_utc
from receipts import queries
from receipts.canonical import CanonicalizationError, canonical_bytes, sha256_tag
from receipts.keys import ALGORITHM, published_keys, signing_key
from receipts.models import Receipt


@dataclass(frozen=True)
class Payment:
    """What a result's job cost its client and earned its miner, as settlement moved it; signed into the receipt."""

    price: Decimal
    fee: Decimal
    miner_earnings: Decimal


def receipt_issue(
    *,
    job_id: UUID,
    client_id: UUID,
    job_type: str,
    attempt: int,
    miner_id: UUID,
    status: str,
    result: dict[str, Any] | None,
    error: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
    started_at: datetime | None,
    completed_at: datetime,
    payment: Payment,
    output_hash: str | None = None,
) -> Receipt:
    """Sign a receipt for one posted result and append it to the miner's chain. Call inside the result's transaction.
    `output_hash` binds the partial output the attempt posted ("sha256:" + hex of its bytes), None if it posted none."""
    with transaction.atomic(savepoint=False):
        queries.lock_chain_of(miner_id=miner_id)
        previous = queries.chain_head(miner_id=miner_id)
        key_id, signer = signing_key()
        now = timezone.now()
        receipt_id = uuid.uuid4()
        body: dict[str, Any] = {
            "id": str(receipt_id),
            "job_id": str(job_id),
            "miner_id": str(miner_id),
            "client_id": str(client_id),
            "attempt": attempt,
            "job_type": job_type,
            "status": status,
            "result": result,
            "result_hash": sha256_tag(canonical_bytes(result)) if result is not None else None,
            "output_hash": output_hash,
            "error": error,
            "metrics": metrics,
            "started_at": iso_utc(started_at),
            "completed_at": iso_utc(completed_at),
            "created_at": iso_utc(now),
            "prev_hash": previous[1] if previous else None,
            "key_id": key_id,
            "alg": ALGORITHM,
            "price": f"{payment.price:.8f}",
            "miner_earnings": f"{payment.miner_earnings:.8f}",
        }
        signed = {**body, "proof": signer.sign(canonical_bytes(body)).hex()}
        document = canonical_bytes(signed)
        receipt = Receipt(
            id=receipt_id,
            job_id=job_id,
            attempt=attempt,
            miner_id=miner_id,
            client_id=client_id,
            sequence=previous[0] + 1 if previous else 1,
            document=document.decode(),
            document_hash=sha256_tag(document),
            key_id=key_id,
            created_at=now,
        )
        queries.insert_receipt(receipt)
        return receipt


def receipt_document(receipt: Receipt) -> dict[str, Any]:
    """The receipt as it was signed."""
    return json.loads(receipt.document)


@dataclass(frozen=True)
class Verification:
    valid: bool
    key_id: str
    reason: str | None


def receipt_verify(*, document: dict[str, Any]) -> Verification:
    """Check a receipt against our published keys: valid only if its key is ours and the proof matches."""
    key_id, proof = str(document["key_id"]), document["proof"]
    key = published_keys().get(key_id)
    if key is None:
        return Verification(valid=False, key_id=key_id, reason="UNKNOWN_KEY")
    body = {name: value for name, value in document.items() if name != "proof"}
    try:
        key.verifier.verify(bytes.fromhex(proof) if isinstance(proof, str) else b"", canonical_bytes(body))
    except (InvalidSignature, ValueError, CanonicalizationError):
        return Verification(valid=False, key_id=key_id, reason="BAD_SIGNATURE")
    return Verification(valid=True, key_id=key_id, reason=None)
