from decimal import Decimal
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import QuerySet, Sum

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
    """Every broken ledger invariant, described; empty when the books are sound."""
    problems = [
        f"posting {reference} does not sum to zero ({total})"
        for reference, total in Posting.objects.annotate(total=Sum("entries__amount"))
        .exclude(total=0)
        .values_list("reference", "total")
    ]
    for account in LedgerAccount.objects.annotate(total=Sum("entries__amount")).select_related("user"):
        total = account.total or Decimal("0")
        if account.balance != total:
            problems.append(f"account {account} has balance {account.balance} but its entries sum to {total}")
        if account.kind in USER_ACCOUNT_KINDS and account.balance < 0:
            problems.append(f"account {account} is negative")
    grand_total = LedgerEntry.objects.aggregate(total=Sum("amount"))["total"] or Decimal("0")
    if grand_total != 0:
        problems.append(f"all entries together sum to {grand_total}, not zero")
    return problems
