"""The double-entry ledger: every movement balanced, applied once per reference, never overdrawing a user, and
check_ledger proving the books (and naming what is wrong when someone edited them behind the ledger's back)."""

from collections.abc import Callable
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction

from accounts import ledger
from accounts.exceptions import InsufficientFunds
from accounts.models import AccountKind, LedgerAccount, LedgerEntry, Posting, PostingKind, User
from accounts.selectors import ledger_problems
from accounts.services import wallet_user_for
from aitbc_site.amounts import to_units
from aitbc_site.exceptions import ValidationFailed
from aitbc_site.testing import run_concurrently

ALICE = "ait1" + "a1" * 20
BOB = "ait1" + "b0" * 20


@pytest.fixture
def alice(db: None) -> User:
    return wallet_user_for(address=ALICE)


@pytest.fixture
def bob(db: None) -> User:
    return wallet_user_for(address=BOB)


def balance(user: User | None, kind: str) -> Decimal:
    account = LedgerAccount.objects.filter(user=user, kind=kind).first()
    return account.balance if account else Decimal("0")


def available(user: User) -> Decimal:
    return balance(user, AccountKind.AVAILABLE)


def held(user: User) -> Decimal:
    return balance(user, AccountKind.HELD)


def entries_of(posting: Posting) -> dict[tuple[str | None, str], Decimal]:
    return {
        (entry.account.user.wallet_address if entry.account.user else None, entry.account.kind): entry.amount
        for entry in posting.entries.select_related("account__user")
    }


def fund(user: User, amount: str, reference: str = "deposit:seed") -> None:
    ledger.deposit(user_id=user.pk, amount=Decimal(amount), reference=reference, memo="bought on the exchange")


def assert_books_sound() -> None:
    assert ledger_problems() == []
    # Summed in Python: SQLite's SUM() over its float-stored decimals is not exact.
    assert sum(LedgerAccount.objects.values_list("balance", flat=True), Decimal("0")) == 0


def check_ledger() -> str:
    out = StringIO()
    call_command("check_ledger", stdout=out)
    return out.getvalue()


def raw_update(table: str, assignment: str, where: str, params: list[object]) -> None:
    """Edit rows behind the ledger's back, as someone with database access could."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {assignment} WHERE {where}", params)


# --- deposit ---------------------------------------------------------------------------------------------------


def test_a_deposit_moves_money_from_the_exchange_to_the_users_available_balance(alice: User) -> None:
    posting = ledger.deposit(user_id=alice.pk, amount=Decimal("12.34567891"), reference="deposit:1", memo="bought")

    assert posting is not None and posting.kind == PostingKind.DEPOSIT
    assert entries_of(posting) == {
        (None, AccountKind.EXCHANGE_DEPOSITS): Decimal("-12.34567891"),
        (ALICE, AccountKind.AVAILABLE): Decimal("12.34567891"),
    }
    assert available(alice) == Decimal("12.34567891")
    assert balance(None, AccountKind.EXCHANGE_DEPOSITS) == Decimal("-12.34567891")
    assert_books_sound()


def test_a_deposit_retried_with_its_reference_is_applied_once(alice: User) -> None:
    first = ledger.deposit(user_id=alice.pk, amount=Decimal("5"), reference="deposit:once", memo="bought")

    again = ledger.deposit(user_id=alice.pk, amount=Decimal("5"), reference="deposit:once", memo="bought")

    assert first is not None and again is None
    assert available(alice) == Decimal("5")
    assert Posting.objects.filter(reference="deposit:once").count() == 1
    assert LedgerEntry.objects.count() == 2
    assert_books_sound()


def test_a_reference_names_one_movement_whatever_the_retry_claims(alice: User) -> None:
    ledger.deposit(user_id=alice.pk, amount=Decimal("5"), reference="deposit:once", memo="bought")

    assert ledger.deposit(user_id=alice.pk, amount=Decimal("500"), reference="deposit:once", memo="bought") is None

    assert available(alice) == Decimal("5")


# --- hold and release ------------------------------------------------------------------------------------------


def test_a_hold_moves_money_from_available_to_held(alice: User) -> None:
    fund(alice, "10")

    posting = ledger.hold(user_id=alice.pk, amount=Decimal("2.5"), reference="job:1:hold", memo="a job")

    assert posting is not None and posting.kind == PostingKind.JOB_HOLD
    assert entries_of(posting) == {
        (ALICE, AccountKind.AVAILABLE): Decimal("-2.5"),
        (ALICE, AccountKind.HELD): Decimal("2.5"),
    }
    assert (available(alice), held(alice)) == (Decimal("7.5"), Decimal("2.5"))
    assert_books_sound()


def test_a_hold_of_exactly_the_available_balance_leaves_zero(alice: User) -> None:
    fund(alice, "2.5")

    ledger.hold(user_id=alice.pk, amount=Decimal("2.5"), reference="job:1:hold", memo="a job")

    assert (available(alice), held(alice)) == (Decimal("0"), Decimal("2.5"))


def test_a_balance_left_by_decimal_steps_pays_exactly_that_amount(alice: User) -> None:
    # 0.3 - 0.1 is 0.19999999999999998 in binary floating point, which is how SQLite stores decimals.
    fund(alice, "0.3")
    ledger.hold(user_id=alice.pk, amount=Decimal("0.1"), reference="job:1:hold", memo="a job")

    ledger.hold(user_id=alice.pk, amount=Decimal("0.2"), reference="job:2:hold", memo="a job")

    assert (available(alice), held(alice)) == (Decimal("0"), Decimal("0.3"))
    assert_books_sound()


def test_many_small_movements_keep_every_balance_exact(alice: User, bob: User) -> None:
    fund(alice, "1")
    for number in range(10):
        ledger.hold(user_id=alice.pk, amount=Decimal("0.1"), reference=f"job:{number}:hold", memo="a job")
        ledger.capture(
            payer_id=alice.pk,
            payee_id=bob.pk,
            amount=Decimal("0.1"),
            fee=Decimal("0.00333333"),
            reference=f"job:{number}:capture",
            memo="done",
        )

    assert (available(alice), held(alice)) == (Decimal("0"), Decimal("0"))
    assert available(bob) == Decimal("0.9666667")
    assert balance(None, AccountKind.PLATFORM_FEES) == Decimal("0.0333333")
    assert_books_sound()


# Funds of 3 leave nothing for the retry: it must still answer "already applied", not "insufficient funds".
@pytest.mark.parametrize(("funds", "left"), [("10", "7"), ("3", "0")])
def test_a_hold_retried_with_its_reference_is_applied_once(alice: User, funds: str, left: str) -> None:
    fund(alice, funds)
    ledger.hold(user_id=alice.pk, amount=Decimal("3"), reference="job:1:hold", memo="a job")

    assert ledger.hold(user_id=alice.pk, amount=Decimal("3"), reference="job:1:hold", memo="a job") is None

    assert (available(alice), held(alice)) == (Decimal(left), Decimal("3"))


def test_a_hold_beyond_the_available_balance_is_insufficient_funds_and_applies_nothing(alice: User) -> None:
    fund(alice, "1")
    entries_before = LedgerEntry.objects.count()

    with pytest.raises(InsufficientFunds):
        ledger.hold(user_id=alice.pk, amount=Decimal("1.00000001"), reference="job:1:hold", memo="a job")

    assert (available(alice), held(alice)) == (Decimal("1"), Decimal("0"))
    assert not Posting.objects.filter(reference="job:1:hold").exists()
    assert LedgerEntry.objects.count() == entries_before
    assert_books_sound()


def test_a_caller_that_catches_a_refusal_can_go_on_in_its_transaction(alice: User) -> None:
    fund(alice, "1")

    with transaction.atomic():
        with pytest.raises(InsufficientFunds):
            ledger.hold(user_id=alice.pk, amount=Decimal("2"), reference="job:1:hold", memo="a job")
        ledger.hold(user_id=alice.pk, amount=Decimal("1"), reference="job:2:hold", memo="a job")

    assert (available(alice), held(alice)) == (Decimal("0"), Decimal("1"))
    assert list(Posting.objects.values_list("reference", flat=True).filter(kind=PostingKind.JOB_HOLD)) == ["job:2:hold"]
    assert_books_sound()


def test_a_user_who_never_had_money_cannot_hold_any(alice: User) -> None:
    with pytest.raises(InsufficientFunds):
        ledger.hold(user_id=alice.pk, amount=Decimal("0.00000001"), reference="job:1:hold", memo="a job")

    assert (available(alice), held(alice)) == (Decimal("0"), Decimal("0"))
    assert_books_sound()


def test_a_refused_hold_can_be_retried_with_its_reference_once_the_money_is_there(alice: User) -> None:
    with pytest.raises(InsufficientFunds):
        ledger.hold(user_id=alice.pk, amount=Decimal("2"), reference="job:1:hold", memo="a job")
    fund(alice, "2")

    assert ledger.hold(user_id=alice.pk, amount=Decimal("2"), reference="job:1:hold", memo="a job") is not None

    assert (available(alice), held(alice)) == (Decimal("0"), Decimal("2"))


def test_a_refused_hold_inside_a_larger_transaction_applies_nothing_of_it(alice: User) -> None:
    fund(alice, "1")

    with pytest.raises(InsufficientFunds), transaction.atomic():
        ledger.hold(user_id=alice.pk, amount=Decimal("0.5"), reference="job:1:hold", memo="a job")
        ledger.hold(user_id=alice.pk, amount=Decimal("0.6"), reference="job:2:hold", memo="a job")

    assert (available(alice), held(alice)) == (Decimal("1"), Decimal("0"))
    assert Posting.objects.filter(kind=PostingKind.JOB_HOLD).count() == 0
    assert_books_sound()


def test_a_release_gives_a_hold_back(alice: User) -> None:
    fund(alice, "10")
    ledger.hold(user_id=alice.pk, amount=Decimal("4"), reference="job:1:hold", memo="a job")

    posting = ledger.release(user_id=alice.pk, amount=Decimal("4"), reference="job:1:release", memo="a job failed")

    assert posting is not None and posting.kind == PostingKind.JOB_RELEASE
    assert entries_of(posting) == {
        (ALICE, AccountKind.HELD): Decimal("-4"),
        (ALICE, AccountKind.AVAILABLE): Decimal("4"),
    }
    assert (available(alice), held(alice)) == (Decimal("10"), Decimal("0"))
    assert_books_sound()


def test_a_release_retried_with_its_reference_is_applied_once(alice: User) -> None:
    fund(alice, "10")
    ledger.hold(user_id=alice.pk, amount=Decimal("4"), reference="job:1:hold", memo="a job")
    ledger.hold(user_id=alice.pk, amount=Decimal("4"), reference="job:2:hold", memo="a job")
    ledger.release(user_id=alice.pk, amount=Decimal("4"), reference="job:1:release", memo="a job failed")

    assert ledger.release(user_id=alice.pk, amount=Decimal("4"), reference="job:1:release", memo="a job failed") is None

    assert (available(alice), held(alice)) == (Decimal("6"), Decimal("4"))


def test_releasing_more_than_is_held_is_insufficient_funds_and_applies_nothing(alice: User) -> None:
    fund(alice, "10")
    ledger.hold(user_id=alice.pk, amount=Decimal("1"), reference="job:1:hold", memo="a job")

    with pytest.raises(InsufficientFunds):
        ledger.release(user_id=alice.pk, amount=Decimal("2"), reference="job:1:release", memo="a job failed")

    assert (available(alice), held(alice)) == (Decimal("9"), Decimal("1"))
    assert not Posting.objects.filter(reference="job:1:release").exists()
    assert_books_sound()


# --- capture ---------------------------------------------------------------------------------------------------


def test_a_capture_pays_the_fee_to_the_platform_and_the_rest_to_the_payee(alice: User, bob: User) -> None:
    fund(alice, "10")
    ledger.hold(user_id=alice.pk, amount=Decimal("3"), reference="job:1:hold", memo="a job")

    posting = ledger.capture(
        payer_id=alice.pk,
        payee_id=bob.pk,
        amount=Decimal("3"),
        fee=Decimal("0.15"),
        reference="job:1:capture",
        memo="done",
    )

    assert posting is not None and posting.kind == PostingKind.JOB_CAPTURE
    assert entries_of(posting) == {
        (ALICE, AccountKind.HELD): Decimal("-3"),
        (None, AccountKind.PLATFORM_FEES): Decimal("0.15"),
        (BOB, AccountKind.AVAILABLE): Decimal("2.85"),
    }
    assert (available(alice), held(alice)) == (Decimal("7"), Decimal("0"))
    assert available(bob) == Decimal("2.85")
    assert balance(None, AccountKind.PLATFORM_FEES) == Decimal("0.15")
    assert_books_sound()


def test_a_capture_retried_with_its_reference_pays_once(alice: User, bob: User) -> None:
    fund(alice, "10")
    ledger.hold(user_id=alice.pk, amount=Decimal("3"), reference="job:1:hold", memo="a job")
    ledger.hold(user_id=alice.pk, amount=Decimal("3"), reference="job:2:hold", memo="a job")
    ledger.capture(
        payer_id=alice.pk, payee_id=bob.pk, amount=Decimal("3"), fee=Decimal("0.15"), reference="job:1:capture", memo=""
    )

    again = ledger.capture(
        payer_id=alice.pk, payee_id=bob.pk, amount=Decimal("3"), fee=Decimal("0.15"), reference="job:1:capture", memo=""
    )

    assert again is None
    assert held(alice) == Decimal("3") and available(bob) == Decimal("2.85")


def test_a_capture_without_a_fee_pays_the_payee_everything(alice: User, bob: User) -> None:
    fund(alice, "1")
    ledger.hold(user_id=alice.pk, amount=Decimal("1"), reference="job:1:hold", memo="a job")

    posting = ledger.capture(
        payer_id=alice.pk, payee_id=bob.pk, amount=Decimal("1"), fee=Decimal("0"), reference="c", memo=""
    )

    assert posting is not None
    assert entries_of(posting) == {(ALICE, AccountKind.HELD): Decimal("-1"), (BOB, AccountKind.AVAILABLE): Decimal("1")}
    assert_books_sound()


def test_a_capture_whose_fee_is_the_whole_amount_pays_only_the_platform(alice: User, bob: User) -> None:
    fund(alice, "1")
    ledger.hold(user_id=alice.pk, amount=Decimal("1"), reference="job:1:hold", memo="a job")

    posting = ledger.capture(
        payer_id=alice.pk, payee_id=bob.pk, amount=Decimal("1"), fee=Decimal("1"), reference="c", memo=""
    )

    assert posting is not None
    assert entries_of(posting) == {
        (ALICE, AccountKind.HELD): Decimal("-1"),
        (None, AccountKind.PLATFORM_FEES): Decimal("1"),
    }
    assert_books_sound()


@pytest.mark.django_db(transaction=True)
def test_holds_and_releases_of_one_user_at_once_never_deadlock() -> None:
    alice = wallet_user_for(address=ALICE)
    # Enough on both sides for any interleaving: one thread may well finish before the other starts (SQLite's busy
    # handler lets a waiting writer sleep while the other commits again and again).
    fund(alice, "120")
    ledger.hold(user_id=alice.pk, amount=Decimal("60"), reference="seed-hold", memo="")

    def repeatedly(move: Callable[..., object], prefix: str) -> Callable[[], None]:
        def run() -> None:
            for n in range(60):
                move(user_id=alice.pk, amount=Decimal("1"), reference=f"{prefix}:{n}", memo="")

        return run

    run_concurrently(repeatedly(ledger.hold, "hold"), repeatedly(ledger.release, "release"))

    assert (available(alice), held(alice)) == (Decimal("60"), Decimal("60"))
    assert_books_sound()


def test_a_user_may_pay_themself(alice: User) -> None:
    fund(alice, "2")
    ledger.hold(user_id=alice.pk, amount=Decimal("2"), reference="job:1:hold", memo="a job")

    ledger.capture(
        payer_id=alice.pk, payee_id=alice.pk, amount=Decimal("2"), fee=Decimal("0.1"), reference="c", memo=""
    )

    assert (available(alice), held(alice)) == (Decimal("1.9"), Decimal("0"))
    assert_books_sound()


def test_capturing_more_than_is_held_is_insufficient_funds_and_pays_nobody(alice: User, bob: User) -> None:
    fund(alice, "10")
    ledger.hold(user_id=alice.pk, amount=Decimal("1"), reference="job:1:hold", memo="a job")

    with pytest.raises(InsufficientFunds):
        ledger.capture(
            payer_id=alice.pk, payee_id=bob.pk, amount=Decimal("2"), fee=Decimal("0.1"), reference="c", memo=""
        )

    assert held(alice) == Decimal("1") and available(bob) == Decimal("0")
    assert balance(None, AccountKind.PLATFORM_FEES) == Decimal("0")
    assert not Posting.objects.filter(reference="c").exists()
    assert_books_sound()


# --- adjust ----------------------------------------------------------------------------------------------------


def test_an_operator_credits_a_user_with_a_reason_and_their_name(alice: User) -> None:
    posting = ledger.adjust(user_id=alice.pk, amount=Decimal("4.2"), reason="refund for ticket 17", operator="dana")

    assert posting is not None and posting.kind == PostingKind.ADJUSTMENT
    assert posting.memo == "refund for ticket 17"
    assert posting.actor == "operator:dana"
    assert entries_of(posting) == {
        (None, AccountKind.ADJUSTMENTS): Decimal("-4.2"),
        (ALICE, AccountKind.AVAILABLE): Decimal("4.2"),
    }
    assert available(alice) == Decimal("4.2")
    assert_books_sound()


def test_an_operator_debits_a_user_down_to_zero_but_not_below(alice: User) -> None:
    fund(alice, "3")

    ledger.adjust(user_id=alice.pk, amount=Decimal("-3"), reason="chargeback", operator="dana")

    assert available(alice) == Decimal("0")
    with pytest.raises(InsufficientFunds):
        ledger.adjust(user_id=alice.pk, amount=Decimal("-0.00000001"), reason="chargeback", operator="dana")
    assert available(alice) == Decimal("0")
    assert Posting.objects.filter(kind=PostingKind.ADJUSTMENT).count() == 1
    assert_books_sound()


def test_an_adjustment_retried_with_its_reference_is_applied_once(alice: User) -> None:
    ledger.adjust(
        user_id=alice.pk, amount=Decimal("1"), reason="goodwill", operator="dana", reference="adjustment:t-17"
    )

    again = ledger.adjust(
        user_id=alice.pk, amount=Decimal("1"), reason="goodwill", operator="dana", reference="adjustment:t-17"
    )

    assert again is None
    assert available(alice) == Decimal("1")


@pytest.mark.parametrize(
    ("reason", "operator"),
    [("", "dana"), ("   ", "dana"), ("goodwill", ""), ("goodwill", " \t")],
    ids=["no reason", "blank reason", "no operator", "blank operator"],
)
def test_an_adjustment_needs_a_reason_and_an_operators_name(alice: User, reason: str, operator: str) -> None:
    with pytest.raises(ValidationFailed):
        ledger.adjust(user_id=alice.pk, amount=Decimal("1"), reason=reason, operator=operator)

    assert not Posting.objects.exists()
    assert available(alice) == Decimal("0")


# --- post: the one way to move money -------------------------------------------------------------------------


def test_an_unbalanced_posting_is_refused_and_applies_nothing(alice: User) -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        ledger.post(
            reference="bad",
            kind=PostingKind.ADJUSTMENT,
            movements=[
                ((None, AccountKind.ADJUSTMENTS), Decimal("-1")),
                ((alice.pk, AccountKind.AVAILABLE), Decimal("2")),
            ],
        )

    assert not Posting.objects.exists()
    assert available(alice) == Decimal("0")


@pytest.mark.parametrize("amount", ["0.000000001", "0"], ids=["9 places", "zero"])
def test_a_posting_line_with_more_than_8_places_or_zero_is_refused(alice: User, amount: str) -> None:
    with pytest.raises(ValueError):
        ledger.post(
            reference="bad",
            kind=PostingKind.ADJUSTMENT,
            movements=[
                ((None, AccountKind.ADJUSTMENTS), -Decimal(amount)),
                ((alice.pk, AccountKind.AVAILABLE), Decimal(amount)),
            ],
        )

    assert not Posting.objects.exists()


def test_a_users_balance_below_zero_is_refused_by_the_database(alice: User) -> None:
    account = ledger.account_for(user_id=alice.pk, kind=AccountKind.AVAILABLE)

    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(pk=account.pk).update(balance=Decimal("-0.00000001"))


def test_platform_accounts_may_go_below_zero(alice: User) -> None:
    fund(alice, "1")

    assert balance(None, AccountKind.EXCHANGE_DEPOSITS) == Decimal("-1")


def test_each_user_has_one_account_of_each_kind(alice: User) -> None:
    first = ledger.account_for(user_id=alice.pk, kind=AccountKind.AVAILABLE)

    assert ledger.account_for(user_id=alice.pk, kind=AccountKind.AVAILABLE) == first
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.create(user=alice, kind=AccountKind.AVAILABLE)


def test_a_user_cannot_own_a_platform_kind_of_account(alice: User) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.create(user=alice, kind=AccountKind.PLATFORM_FEES)


def test_an_entry_of_zero_is_refused_by_the_database(alice: User) -> None:
    posting = ledger.deposit(user_id=alice.pk, amount=Decimal("1"), reference="deposit:1", memo="")
    assert posting is not None

    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            posting=posting,
            account=ledger.account_for(user_id=alice.pk, kind=AccountKind.AVAILABLE),
            amount=0,
            created_at=posting.created_at,
        )


# --- check_ledger ----------------------------------------------------------------------------------------------


def test_check_ledger_passes_sound_books(alice: User, bob: User) -> None:
    fund(alice, "10")
    # 0.3 = 0.1 + 0.2 exactly, though not in binary floating point: the check must not cry wolf on SQLite.
    ledger.hold(user_id=alice.pk, amount=Decimal("0.3"), reference="job:1:hold", memo="")
    ledger.capture(
        payer_id=alice.pk,
        payee_id=bob.pk,
        amount=Decimal("0.3"),
        fee=Decimal("0.1"),
        reference="job:1:capture",
        memo="",
    )
    ledger.hold(user_id=alice.pk, amount=Decimal("2"), reference="job:2:hold", memo="")
    ledger.release(user_id=alice.pk, amount=Decimal("2"), reference="job:2:release", memo="")
    ledger.adjust(user_id=bob.pk, amount=Decimal("-0.2"), reason="chargeback", operator="dana")

    assert check_ledger().strip() == "ledger OK"


def test_check_ledger_passes_an_empty_ledger(db: None) -> None:
    assert check_ledger().strip() == "ledger OK"


def test_check_ledger_fails_with_a_report_when_a_balance_was_edited_in_place(alice: User) -> None:
    fund(alice, "10")
    account = ledger.account_for(user_id=alice.pk, kind=AccountKind.AVAILABLE)
    raw_update(LedgerAccount._meta.db_table, "balance = %s", "id = %s", [to_units(Decimal("15")), account.pk])

    with pytest.raises(CommandError) as failed:
        check_ledger()

    report = str(failed.value)
    assert "ledger check FAILED" in report
    assert f"account {ALICE} available" in report
    assert "balance 15" in report and "entries sum to 10" in report


def test_check_ledger_fails_with_a_report_when_an_entry_was_edited(alice: User) -> None:
    fund(alice, "10", reference="deposit:tampered")
    entry = LedgerEntry.objects.get(account__user=alice)
    raw_update(LedgerEntry._meta.db_table, "amount = %s", "id = %s", [to_units(Decimal("11")), entry.pk])

    with pytest.raises(CommandError) as failed:
        check_ledger()

    report = str(failed.value)
    assert "posting deposit:tampered does not sum to zero (1" in report
    assert "all entries together sum to 1" in report
    assert f"account {ALICE} available" in report


def test_check_ledger_reports_every_problem_not_just_the_first(alice: User, bob: User) -> None:
    fund(alice, "10", reference="deposit:a")
    fund(bob, "10", reference="deposit:b")
    accounts = [ledger.account_for(user_id=user.pk, kind=AccountKind.AVAILABLE).pk for user in (alice, bob)]
    raw_update(LedgerAccount._meta.db_table, f"balance = balance + {to_units(Decimal(1))}", "id IN (%s, %s)", accounts)

    with pytest.raises(CommandError) as failed:
        check_ledger()

    report = str(failed.value)
    assert f"account {ALICE} available" in report and f"account {BOB} available" in report
