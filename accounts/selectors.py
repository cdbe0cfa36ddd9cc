from collections import defaultdict
from decimal import Decimal
from itertools import groupby
from operator import itemgetter
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import ExpressionWrapper, F, Field, QuerySet

from accounts.exceptions import ApiKeyNotFound, UserNotFound
from accounts.models import USER_ACCOUNT_KINDS, AccountKind, ApiKey, LedgerAccount, LedgerEntry, Posting, User
from aitbc_site.amounts import MAX_TEXT, from_units, in_range


def user_balance(*, user: User) -> dict[str, Any]:
    balances = dict(user.ledger_accounts.values_list("kind", "balance"))
    return {
        "user_id": user.pk,
        "currency": "AITBC",
        "available": balances.get(AccountKind.AVAILABLE, Decimal("0")),
        "held": balances.get(AccountKind.HELD, Decimal("0")),
    }


def user_profile(*, user: User) -> dict[str, Any]:
    return {
        "id": user.pk,
        "address": user.wallet_address,
        "created_at": user.date_joined,
        "last_login_at": user.last_login,
        "balance": user_balance(user=user),
    }


def user_get(*, user_id: UUID | str) -> User:
    try:
        return User.objects.get(pk=user_id)
    except (User.DoesNotExist, ValueError, ValidationError):
        raise UserNotFound() from None


def ledger_entries_for(*, user: User) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(account__user=user).select_related("posting", "account")


def api_keys_of(*, user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user)


def api_key_get_owned(*, key_id: UUID | str, user: User) -> ApiKey:
    try:
        return ApiKey.objects.get(pk=key_id, user=user)
    except (ApiKey.DoesNotExist, ValueError, ValidationError):
        raise ApiKeyNotFound() from None


def _units_of(column: str) -> ExpressionWrapper:
    """The column's stored units as they are, past AmountField's conversion, which would raise on a value it
    cannot read (a REAL or TEXT written into SQLite by hand): the check reports such a value instead."""
    # A bare Field: an IntegerField output would have Django cast each value with int(), raising on the same.
    return ExpressionWrapper(F(column), output_field=Field())


def _coins(units: int) -> str:
    return f"{from_units(units):f}"


def ledger_problems() -> list[str]:
    """Every broken ledger invariant, described; empty when the books are sound. It never raises on odd contents.

    The sums are taken here, over whole units in Python's unbounded integers, in one pass over the entries in
    posting order, rather than with SQL SUM(): SQLite's SUM of integers fails with "integer overflow" past 2⁶³,
    which the accounts' total may pass, and an odd value in a column must be reported, not stop the check.
    """
    problems: list[str] = []
    account_totals: dict[int, int] = defaultdict(int)
    grand_total = 0
    entries = (
        LedgerEntry.objects.order_by("posting_id", "id")
        .annotate(units=_units_of("amount"))
        .values_list("posting_id", "id", "account_id", "units")
    )
    for posting_id, lines in groupby(entries.iterator(chunk_size=5000), key=itemgetter(0)):
        posting_total = 0
        for _, entry_id, account_id, units in lines:
            if not isinstance(units, int):
                problems.append(f"entry {entry_id} holds {units!r}, not a whole number of 10⁻⁸ units")
                continue
            account_totals[account_id] += units
            posting_total += units
        if posting_total != 0:
            reference = Posting.objects.values_list("reference", flat=True).get(pk=posting_id)
            problems.append(f"posting {reference} does not sum to zero ({_coins(posting_total)})")
        grand_total += posting_total
    accounts = (
        LedgerAccount.objects.order_by("id")
        .annotate(units=_units_of("balance"))
        .values_list("id", "user__wallet_address", "user__username", "kind", "units")
    )
    for account_id, wallet_address, username, kind, units in accounts.iterator(chunk_size=5000):
        name = f"account {wallet_address or username or 'platform'} {kind}"
        total = account_totals.get(account_id, 0)
        if not isinstance(units, int):
            problems.append(f"{name} holds {units!r} as its balance, not a whole number of 10⁻⁸ units")
            continue
        if units != total:
            problems.append(f"{name} has balance {_coins(units)} but its entries sum to {_coins(total)}")
        if kind in USER_ACCOUNT_KINDS and units < 0:
            problems.append(f"{name} is negative")
        if kind in USER_ACCOUNT_KINDS and not in_range(from_units(units)):
            problems.append(f"{name} has balance {_coins(units)}, beyond the largest amount, {MAX_TEXT}")
    if grand_total != 0:
        problems.append(f"all entries together sum to {_coins(grand_total)}, not zero")
    return problems
