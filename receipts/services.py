"""Receipts: signed, chained records of results. Depends on accounts and miners; jobs calls it, never the reverse."""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from django.db import connection, transaction
from django.utils import timezone

from aitbc_site import statements
from aitbc_site.timestamps import iso_utc
from miners.models import Miner
from receipts.canonical import CanonicalizationError, canonical_bytes, sha256_tag
from receipts.keys import ALGORITHM, published_keys, signing_key
from receipts.models import Receipt


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
    extra: dict[str, Any] | None = None,
) -> Receipt:
    """Sign a receipt for one posted result and append it to the miner's chain. Call inside the result's transaction."""
    with transaction.atomic(savepoint=False):
        if connection.features.has_select_for_update:
            # Lock this miner's row, so its receipts chain one after another; other miners' receipts go on in
            # parallel. (SQLite has no row locks: its immediate transactions already serialise all writers.)
            statements.fetch_one(_lock_miner_sql(), [statements.db_value(Miner, "id", miner_id)])
        previous = statements.fetch_one(_chain_head_sql(), [statements.db_value(Receipt, "miner", miner_id)])
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
            "error": error,
            "metrics": metrics,
            "started_at": iso_utc(started_at),
            "completed_at": iso_utc(completed_at),
            "created_at": iso_utc(now),
            "prev_hash": previous[1] if previous else None,
            "key_id": key_id,
            "alg": ALGORITHM,
            **(extra or {}),
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
        statements.insert([receipt])
        return receipt


@cache
def _lock_miner_sql() -> str:
    return f"SELECT 1 FROM {statements.table(Miner)} WHERE {statements.column(Miner, 'id')} = %s FOR UPDATE"


@cache
def _chain_head_sql() -> str:
    """The sequence and hash of the miner's last receipt."""
    sequence, document_hash = statements.column(Receipt, "sequence"), statements.column(Receipt, "document_hash")
    miner = statements.column(Receipt, "miner")
    return (
        f"SELECT {sequence}, {document_hash} FROM {statements.table(Receipt)} WHERE {miner} = %s"
        f" ORDER BY {sequence} DESC LIMIT 1"
    )


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
