from collections import defaultdict
from decimal import Decimal
from itertools import groupby
from operator import itemgetter
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from accounts.exceptions import ApiKeyNotFound, UserNotFound
from accounts.models import USER_ACCOUNT_KINDS, AccountKind, ApiKey, LedgerAccount, LedgerEntry, Posting, User


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


def ledger_problems() -> list[str]:
    """Every broken ledger invariant, described; empty when the books are sound.

    The sums are taken here over exact Decimals, in one pass over the entries in posting order, rather than with
    SQL SUM(): SQLite keeps decimals as binary floats, and its SUM of 0.1, 0.2 and -0.3 is not zero.
    """
    problems: list[str] = []
    account_totals: dict[int, Decimal] = defaultdict(Decimal)
    grand_total = Decimal("0")
    entries = LedgerEntry.objects.order_by("posting_id").values_list("posting_id", "account_id", "amount")
    for posting_id, lines in groupby(entries.iterator(chunk_size=5000), key=itemgetter(0)):
        posting_total = Decimal("0")
        for _, account_id, amount in lines:
            account_totals[account_id] += amount
            posting_total += amount
        if posting_total != 0:
            reference = Posting.objects.values_list("reference", flat=True).get(pk=posting_id)
            problems.append(f"posting {reference} does not sum to zero ({posting_total})")
        grand_total += posting_total
    for account in LedgerAccount.objects.select_related("user").order_by("id"):
        total = account_totals.get(account.pk, Decimal("0"))
        if account.balance != total:
            problems.append(f"account {account} has balance {account.balance} but its entries sum to {total}")
        if account.kind in USER_ACCOUNT_KINDS and account.balance < 0:
            problems.append(f"account {account} is negative")
    if grand_total != 0:
        problems.append(f"all entries together sum to {grand_total}, not zero")
    return problems
