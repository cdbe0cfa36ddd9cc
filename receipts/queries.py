"""The receipts app's hand-written statements: every SQL text and `statements` call of the app lives here."""

from functools import cache
from uuid import UUID

from django.db import connection

from aitbc_site import statements
from miners.models import Miner
from receipts.models import Receipt


@cache
def _lock_miner_sql() -> str:
    return f"SELECT 1 FROM {statements.table(Miner)} WHERE {statements.column(Miner, 'id')} = %s FOR UPDATE"


def lock_chain_of(*, miner_id: UUID) -> None:
    """Lock the miner's row, so its receipts chain one after another while other miners' go on in parallel.
    SQLite has no row locks and needs none: its immediate transactions already serialise all writers."""
    if connection.features.has_select_for_update:
        statements.fetch_one(_lock_miner_sql(), [statements.db_value(Miner, "id", miner_id)])


@cache
def _chain_head_sql() -> str:
    sequence, document_hash = statements.column(Receipt, "sequence"), statements.column(Receipt, "document_hash")
    miner = statements.column(Receipt, "miner")
    return (
        f"SELECT {sequence}, {document_hash} FROM {statements.table(Receipt)} WHERE {miner} = %s"
        f" ORDER BY {sequence} DESC LIMIT 1"
    )


def chain_head(*, miner_id: UUID) -> tuple[int, str] | None:
    """The sequence and document hash of the miner's last receipt; None before its first."""
    row = statements.fetch_one(_chain_head_sql(), [statements.db_value(Receipt, "miner", miner_id)])
    return None if row is None else (row[0], row[1])


def insert_receipt(receipt: Receipt) -> None:
    statements.insert([receipt])
