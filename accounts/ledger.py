"""The double-entry ledger: balanced, idempotent postings between accounts. Every movement of AITBC goes through
`post`; nothing else writes balances or entries."""

import uuid
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import queries
from accounts.exceptions import InsufficientFunds
from accounts.models import USER_ACCOUNT_KINDS, AccountKind, LedgerAccount, LedgerEntry, Posting, PostingKind
from accounts.queries import AccountKey
from aitbc_site import amounts
from aitbc_site.amounts import QUANTUM
from aitbc_site.exceptions import AmountOutOfRange, ApplicationError, ValidationFailed


def quantize_down(amount: Decimal) -> Decimal:
    return amount.quantize(QUANTUM, rounding=ROUND_DOWN)


def quantize_up(amount: Decimal) -> Decimal:
    return amount.quantize(QUANTUM, rounding=ROUND_UP)


def account_for(*, user_id: UUID | None, kind: str) -> LedgerAccount:
    """The account of this kind for a user (None: the platform's), created on first use."""
    account = LedgerAccount.objects.filter(user_id=user_id, kind=kind).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(user_id=user_id, kind=kind)
    except IntegrityError:
        # Created concurrently by another request.
        return LedgerAccount.objects.get(user_id=user_id, kind=kind)


def _lock_accounts(keys: list[AccountKey]) -> dict[AccountKey, LedgerAccount]:
    """The accounts for these keys, found and locked in one statement (created first if new)."""
    found = queries.lock_accounts_by_key(keys)
    if len(found) < len(set(keys)):
        for user_id, kind in keys:
            if (user_id, kind) not in found:
                account_for(user_id=user_id, kind=kind)
        return _lock_accounts(keys)
    return found


def post(
    *, reference: str, kind: str, movements: list[tuple[AccountKey, Decimal]], memo: str = "", actor: str = ""
) -> Posting | None:
    """Apply a balanced posting once. Returns None, changing nothing, if `reference` was posted before.

    Raises InsufficientFunds, applying nothing, if a user's account would go below zero, and AmountOutOfRange if
    an amount or a user's new balance would be beyond ±MAX_AMOUNT (a platform account's: beyond its column).
    """
    figures = [amount for _, amount in movements]
    for amount in figures:
        amounts.check_range(amount)
    if sum(figures) != 0 or any(amount != amount.quantize(QUANTUM) or amount == 0 for amount in figures):
        raise ValueError(f"unbalanced or malformed posting {reference}: {figures}")
    now = timezone.now()
    # No savepoint of its own: every check that can refuse the posting runs before its first write, and a refusal
    # is raised only after the block, since an exception leaving a block without a savepoint would doom the
    # caller's whole transaction, and a caller may catch the refusal and carry on (an operator adjusting many users).
    with transaction.atomic(savepoint=False):
        accounts = _lock_accounts([key for key, _ in movements])
        changes: dict[int, Decimal] = {}
        for key, amount in movements:
            changes[accounts[key].pk] = changes.get(accounts[key].pk, Decimal("0")) + amount
        refusal = _refusal(accounts, changes)
        if refusal is None:
            return _write(
                Posting(reference=reference, kind=kind, memo=memo, actor=actor, created_at=now),
                accounts=accounts,
                changes=changes,
                movements=movements,
            )
        already_posted = Posting.objects.filter(reference=reference).exists()
    if already_posted:
        return None
    raise refusal


def _refusal(accounts: dict[AccountKey, LedgerAccount], changes: dict[int, Decimal]) -> ApplicationError | None:
    """Why these changes cannot be applied (a user account would go below zero, or a balance beyond
    MAX_AMOUNT), or None when every new balance is allowed."""
    for account in accounts.values():
        change = changes[account.pk]
        if account.balance + change < 0 and account.kind in USER_ACCOUNT_KINDS:
            return InsufficientFunds(details={"account": account.kind, "needed": str(-change)})
        user_account = account.kind in USER_ACCOUNT_KINDS
        if not (amounts.in_range if user_account else amounts.fits_column)(account.balance + change):
            largest = amounts.MAX_TEXT if user_account else f"{amounts.COLUMN_MAX:f}"
            return AmountOutOfRange(
                f"The {account.kind} balance would go beyond the largest amount it may hold, {largest}.",
                details={"account": account.kind, "max": largest},
            )
    return None


def _write(
    posting: Posting,
    *,
    accounts: dict[AccountKey, LedgerAccount],
    changes: dict[int, Decimal],
    movements: list[tuple[AccountKey, Decimal]],
) -> Posting | None:
    """Record the posting, its new balances and its entries; None, writing nothing, if its reference was posted."""
    if not queries.insert_posting_once(posting):
        return None
    # Each balance is computed in Decimal and written whole, so the range check above holds for what is written.
    queries.write_balances({account.pk: account.balance + changes[account.pk] for account in accounts.values()})
    queries.insert_entries(
        [
            LedgerEntry(
                posting_id=posting.pk, account_id=accounts[key].pk, amount=amount, created_at=posting.created_at
            )
            for key, amount in movements
        ]
    )
    return posting


def hold(*, user_id: UUID, amount: Decimal, reference: str, memo: str) -> Posting | None:
    """Set aside part of the user's available balance (available → held)."""
    movements = [((user_id, AccountKind.AVAILABLE), -amount), ((user_id, AccountKind.HELD), amount)]
    return post(reference=reference, kind=PostingKind.JOB_HOLD, movements=movements, memo=memo)


def release(*, user_id: UUID, amount: Decimal, reference: str, memo: str) -> Posting | None:
    """Give a hold back (held → available)."""
    movements = [((user_id, AccountKind.HELD), -amount), ((user_id, AccountKind.AVAILABLE), amount)]
    return post(reference=reference, kind=PostingKind.JOB_RELEASE, movements=movements, memo=memo)


def capture(
    *, payer_id: UUID, payee_id: UUID | None, amount: Decimal, fee: Decimal, reference: str, memo: str
) -> Posting | None:
    """Pay a hold out: the fee to the platform, the rest to the payee's available balance (with no payee, the fee
    must be the whole amount)."""
    movements: list[tuple[AccountKey, Decimal]] = [((payer_id, AccountKind.HELD), -amount)]
    if fee:
        movements.append(((None, AccountKind.PLATFORM_FEES), fee))
    if amount - fee:
        if payee_id is None:
            raise ValueError("a capture that pays a miner needs its payee")
        movements.append(((payee_id, AccountKind.AVAILABLE), amount - fee))
    return post(reference=reference, kind=PostingKind.JOB_CAPTURE, movements=movements, memo=memo)


def deposit(*, user_id: UUID, amount: Decimal, reference: str, memo: str) -> Posting | None:
    """Credit bought AITBC (exchange deposits → user available)."""
    movements = [((None, AccountKind.EXCHANGE_DEPOSITS), -amount), ((user_id, AccountKind.AVAILABLE), amount)]
    return post(reference=reference, kind=PostingKind.DEPOSIT, movements=movements, memo=memo)


def adjust(
    *, user_id: UUID, amount: Decimal, reason: str, operator: str, reference: str | None = None
) -> Posting | None:
    """An operator's correction of a user's available balance, positive or negative, with its reason."""
    if not reason.strip() or not operator.strip():
        raise ValidationFailed("An adjustment needs a reason and the operator's name.")
    return post(
        reference=reference or f"adjustment:{uuid.uuid4()}",
        kind=PostingKind.ADJUSTMENT,
        movements=[((None, AccountKind.ADJUSTMENTS), -amount), ((user_id, AccountKind.AVAILABLE), amount)],
        memo=reason,
        actor=f"operator:{operator}",
    )
