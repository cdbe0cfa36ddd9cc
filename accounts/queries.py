"""The accounts app's hand-written statements (see aitbc_site/statements.py): locking and writing the ledger's
accounts, postings and entries, and reading API keys with their owners. The ledger and the services call these and
contain no SQL."""

from decimal import Decimal
from functools import cache
from typing import Any
from uuid import UUID

from django.db import connection

from accounts.models import ApiKey, LedgerAccount, LedgerEntry, Posting, User
from aitbc_site import statements

# An account by its owner's user id (None: the platform's) and its kind.
AccountKey = tuple[UUID | None, str]

_ACCOUNT_COLUMNS = statements.Columns(LedgerAccount, ("id", "user", "kind", "balance"), alias="a")


@cache
def _accounts_sql(platform_keys: tuple[bool, ...]) -> str:
    """SELECT and lock accounts by (user, kind), one condition per key; a platform key's user is NULL."""
    user_column, kind_column = statements.column(LedgerAccount, "user"), statements.column(LedgerAccount, "kind")
    conditions = [
        f"(a.{user_column} IS NULL AND a.{kind_column} = %s)"
        if platform
        else f"(a.{user_column} = %s AND a.{kind_column} = %s)"
        for platform in platform_keys
    ]
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return (
        f"SELECT {_ACCOUNT_COLUMNS.sql} FROM {statements.table(LedgerAccount)} a WHERE {' OR '.join(conditions)}"
        f" ORDER BY a.{statements.column(LedgerAccount, 'id')}{lock}"
    )


def lock_accounts_by_key(keys: list[AccountKey]) -> dict[AccountKey, LedgerAccount]:
    """The existing accounts for these keys, found and locked in one statement; a key without an account is absent.

    They are locked in id order, so two postings over the same accounts (a hold and a release of one user) always
    lock them in the same order and never deadlock on PostgreSQL; SQLite's IMMEDIATE transaction already holds the
    database's one write lock."""
    params: list[Any] = []
    for user_id, kind in keys:
        if user_id is not None:
            params.append(statements.db_value(LedgerAccount, "user", user_id))
        params.append(kind)
    rows = statements.fetch_all(_accounts_sql(tuple(user_id is None for user_id, _ in keys)), params)
    return {(account.user_id, account.kind): account for account in map(_ACCOUNT_COLUMNS.load, rows)}


def insert_posting_once(posting: Posting) -> bool:
    """INSERT the posting and set its id; False, inserting nothing, if its reference was posted before."""
    return statements.insert_returning_pk(posting, on_conflict_do_nothing=("reference",))


@cache
def _new_balances_sql(accounts: int) -> str:
    """UPDATE `accounts` balances at once: CASE id WHEN %s THEN %s …, WHERE id IN (…)."""
    id_column = statements.column(LedgerAccount, "id")
    cases = " ".join(["WHEN %s THEN %s"] * accounts)
    return (
        f"UPDATE {statements.table(LedgerAccount)} SET {statements.column(LedgerAccount, 'balance')} ="
        f" CASE {id_column} {cases} END WHERE {id_column} IN ({', '.join(['%s'] * accounts)})"
    )


def write_balances(new_balance_by_account_id: dict[int, Decimal]) -> None:
    """Set these accounts' balances, all in one statement."""
    params: list[Any] = []
    for account_id, balance in new_balance_by_account_id.items():
        params += [account_id, statements.db_value(LedgerAccount, "balance", balance)]
    statements.execute(_new_balances_sql(len(new_balance_by_account_id)), params + list(new_balance_by_account_id))


def insert_entries(entries: list[LedgerEntry]) -> None:
    """INSERT a posting's entries in one statement."""
    statements.insert(entries)


_KEY_COLUMNS = statements.Columns(ApiKey, ("id", "user", "role", "key_hash", "last_used_at", "revoked_at"), alias="k")
_KEY_OWNER_COLUMNS = statements.Columns(User, alias="u")


@cache
def _keys_by_prefix_sql() -> str:
    """The issued keys with this prefix, each with its whole owner: every request with an issued key reads this."""
    k_user, k_prefix, u_id = (
        statements.column(ApiKey, "user"), statements.column(ApiKey, "prefix"), statements.column(User, "id")
    )
    return (
        f"SELECT {_KEY_COLUMNS.sql}, {_KEY_OWNER_COLUMNS.sql} FROM {statements.table(ApiKey)} k"
        f" JOIN {statements.table(User)} u ON u.{u_id} = k.{k_user} WHERE k.{k_prefix} = %s"
    )


def keys_with_owner_by_prefix(prefix: str) -> list[ApiKey]:
    """The issued keys (revoked ones too) with this prefix, each with its owner loaded as `api_key.user`."""
    keys = []
    for row in statements.fetch_all(_keys_by_prefix_sql(), [statements.db_value(ApiKey, "prefix", prefix)]):
        api_key = _KEY_COLUMNS.load(row)
        api_key.user = _KEY_OWNER_COLUMNS.load(row, start=_KEY_COLUMNS.width)
        keys.append(api_key)
    return keys
