"""The double-entry ledger: balanced, idempotent postings between accounts. Every movement of AITBC goes through
`post`; nothing else writes balances or entries."""

import uuid
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from django.db import IntegrityError, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from accounts.exceptions import InsufficientFunds
from accounts.models import USER_ACCOUNT_KINDS, AccountKind, LedgerAccount, LedgerEntry, Posting, PostingKind, User
from aitbc_site.exceptions import ValidationFailed

QUANTUM = Decimal("0.00000001")


def quantize_down(amount: Decimal) -> Decimal:
    return amount.quantize(QUANTUM, rounding=ROUND_DOWN)


def quantize_up(amount: Decimal) -> Decimal:
    return amount.quantize(QUANTUM, rounding=ROUND_UP)


def account_for(*, user: User | None, kind: str) -> LedgerAccount:
    """The account of this kind for a user (None: the platform's), created on first use."""
    account = LedgerAccount.objects.filter(user=user, kind=kind).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(user=user, kind=kind)
    except IntegrityError:
        # Created concurrently by another request.
        return LedgerAccount.objects.get(user=user, kind=kind)


def accounts_for(*keys: tuple[User | None, str]) -> list[LedgerAccount]:
    """The accounts for these (user, or None for the platform's; kind) pairs, in their order: one query, and
    `account_for` only for an account used for the first time."""
    if not keys:
        return []  # An empty Q() would match every account.
    wanted = Q()
    for user, kind in keys:
        wanted |= Q(user=user, kind=kind)
    found = {(account.user_id, account.kind): account for account in LedgerAccount.objects.filter(wanted)}
    return [found.get((user.pk if user else None, kind)) or account_for(user=user, kind=kind) for user, kind in keys]


def post(
    *, reference: str, kind: str, movements: list[tuple[LedgerAccount, Decimal]], memo: str = "", actor: str = ""
) -> Posting | None:
    """Apply a balanced posting once. Returns None, changing nothing, if `reference` was posted before.

    Raises InsufficientFunds, applying nothing, if a user's account would go below zero.
    """
    amounts = [amount for _, amount in movements]
    if sum(amounts) != 0 or any(amount != amount.quantize(QUANTUM) or amount == 0 for amount in amounts):
        raise ValueError(f"unbalanced or malformed posting {reference}: {amounts}")
    now = timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                posting = Posting.objects.create(reference=reference, kind=kind, memo=memo, actor=actor, created_at=now)
        except IntegrityError:
            return None
        # All the posting's balances are locked in one statement, in id order, so two postings over the same
        # accounts (a hold and a release of one user) always lock them in the same order and never deadlock on
        # PostgreSQL; SQLite's IMMEDIATE transaction already holds the database's one write lock. Each balance is
        # computed in Decimal and checked before any is written, then written whole: SQLite keeps decimals as
        # binary floats, so `balance + amount` in SQL drifts (0.3 - 0.1 leaves 0.19999999999999998, which then
        # cannot pay 0.2), while a value written from its exact decimal reads back exact. One UPDATE writes them all.
        accounts = {account.pk: account for account, _ in movements}
        changes: dict[int, Decimal] = dict.fromkeys(accounts, Decimal("0"))
        for account, amount in movements:
            changes[account.pk] += amount
        balances = dict(
            LedgerAccount.objects.select_for_update()
            .filter(pk__in=accounts)
            .order_by("pk")
            .values_list("pk", "balance")
        )
        for account_id, change in changes.items():
            if balances[account_id] + change < 0 and accounts[account_id].kind in USER_ACCOUNT_KINDS:
                raise InsufficientFunds(details={"account": accounts[account_id].kind, "needed": str(-change)})
        new_balances = [
            When(pk=account_id, then=Value(balances[account_id] + change)) for account_id, change in changes.items()
        ]
        LedgerAccount.objects.filter(pk__in=changes).update(balance=Case(*new_balances))
        LedgerEntry.objects.bulk_create(
            LedgerEntry(posting=posting, account=account, amount=amount, created_at=now)
            for account, amount in movements
        )
    return posting


def hold(*, user: User, amount: Decimal, reference: str, memo: str) -> Posting | None:
    """Set aside part of the user's available balance (available → held)."""
    available, held = accounts_for((user, AccountKind.AVAILABLE), (user, AccountKind.HELD))
    return post(
        reference=reference, kind=PostingKind.JOB_HOLD, movements=[(available, -amount), (held, amount)], memo=memo
    )


def release(*, user: User, amount: Decimal, reference: str, memo: str) -> Posting | None:
    """Give a hold back (held → available)."""
    held, available = accounts_for((user, AccountKind.HELD), (user, AccountKind.AVAILABLE))
    return post(
        reference=reference, kind=PostingKind.JOB_RELEASE, movements=[(held, -amount), (available, amount)], memo=memo
    )


def capture(*, payer: User, payee: User, amount: Decimal, fee: Decimal, reference: str, memo: str) -> Posting | None:
    """Pay a hold out: the fee to the platform, the rest to the payee's available balance."""
    shares = [((payer, AccountKind.HELD), -amount)]
    if fee:
        shares.append(((None, AccountKind.PLATFORM_FEES), fee))
    if amount - fee:
        shares.append(((payee, AccountKind.AVAILABLE), amount - fee))
    accounts = accounts_for(*(key for key, _ in shares))
    movements = [(account, share) for account, (_, share) in zip(accounts, shares, strict=True)]
    return post(reference=reference, kind=PostingKind.JOB_CAPTURE, movements=movements, memo=memo)


def deposit(*, user: User, amount: Decimal, reference: str, memo: str) -> Posting | None:
    """Credit bought AITBC (exchange deposits → user available)."""
    deposits, available = accounts_for((None, AccountKind.EXCHANGE_DEPOSITS), (user, AccountKind.AVAILABLE))
    return post(
        reference=reference, kind=PostingKind.DEPOSIT, movements=[(deposits, -amount), (available, amount)], memo=memo
    )


def adjust(*, user: User, amount: Decimal, reason: str, operator: str, reference: str | None = None) -> Posting | None:
    """An operator's correction of a user's available balance, positive or negative, with its reason."""
    if not reason.strip() or not operator.strip():
        raise ValidationFailed("An adjustment needs a reason and the operator's name.")
    adjustments, available = accounts_for((None, AccountKind.ADJUSTMENTS), (user, AccountKind.AVAILABLE))
    return post(
        reference=reference or f"adjustment:{uuid.uuid4()}",
        kind=PostingKind.ADJUSTMENT,
        movements=[(adjustments, -amount), (available, amount)],
        memo=reason,
        actor=f"operator:{operator}",
    )
