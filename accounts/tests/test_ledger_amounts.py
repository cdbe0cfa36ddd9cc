"""Large amounts in the ledger: exact up to the largest amount on every database, refused beyond it, and
check_ledger reporting (never crashing on) whatever odd values someone wrote into the tables."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from rest_framework.test import APIClient

from accounts import ledger
from accounts.models import AccountKind, LedgerAccount, LedgerEntry, Posting, User
from accounts.selectors import ledger_problems, user_balance
from accounts.services import wallet_user_for
from aitbc_site.amounts import MAX_AMOUNT, to_units
from aitbc_site.exceptions import AmountOutOfRange

ALICE = "ait1" + "a1" * 20
UNIT = Decimal("0.00000001")


@pytest.fixture
def alice(db: None) -> User:
    return wallet_user_for(address=ALICE)


def available(user: User) -> Decimal:
    return LedgerAccount.objects.get(user=user, kind=AccountKind.AVAILABLE).balance


def check_ledger() -> str:
    out = StringIO()
    call_command("check_ledger", stdout=out)
    return out.getvalue()


def failed_check() -> str:
    """check_ledger's report of a broken ledger: a CommandError (exit status 1, no traceback), nothing else."""
    with pytest.raises(CommandError) as failed:
        check_ledger()
    return str(failed.value)


def raw_set(model: type, column: str, pk: int, value: object) -> None:
    """Write a column behind the ledger's back, as someone with database access could."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {model._meta.db_table} SET {column} = %s WHERE id = %s", [value, pk])


def test_a_balance_just_under_ten_billion_reads_back_exactly(alice: User, admin_api: APIClient) -> None:
    amount = MAX_AMOUNT - UNIT

    ledger.deposit(user_id=alice.pk, amount=amount, reference="deposit:big", memo="bought")

    assert available(alice) == Decimal("9999999999.99999999")
    assert user_balance(user=alice)["available"] == Decimal("9999999999.99999999")
    assert LedgerEntry.objects.get(account__user=alice).amount == Decimal("9999999999.99999999")
    response = admin_api.get(f"/v1/users/{alice.pk}/balance")
    assert response.json()["available"] == "9999999999.99999999"
    assert check_ledger().strip() == "ledger OK"


def test_the_largest_amount_itself_is_a_balance(alice: User) -> None:
    ledger.deposit(user_id=alice.pk, amount=MAX_AMOUNT, reference="deposit:max", memo="bought")

    assert available(alice) == Decimal("10000000000")
    ledger.hold(user_id=alice.pk, amount=MAX_AMOUNT, reference="hold:max", memo="job")
    assert LedgerAccount.objects.get(user=alice, kind=AccountKind.HELD).balance == MAX_AMOUNT
    assert ledger_problems() == []


def test_many_postings_summing_past_ten_million_stay_exact(alice: User) -> None:
    # 123456.78901234 two hundred times is 24691357.80246800: 16 significant digits, one more than SQLite's REALs
    # kept, so the running balance used to drift away from its entries.
    for number in range(200):
        ledger.deposit(user_id=alice.pk, amount=Decimal("123456.78901234"), reference=f"d:{number}", memo="bought")
    for number in range(3):
        ledger.hold(user_id=alice.pk, amount=Decimal("0.00000001"), reference=f"h:{number}", memo="job")

    assert available(alice) == Decimal("24691357.80246797")
    assert ledger_problems() == []


def test_a_deposit_taking_a_balance_beyond_the_largest_amount_is_refused_and_changes_nothing(alice: User) -> None:
    ledger.deposit(user_id=alice.pk, amount=MAX_AMOUNT - 1, reference="deposit:1", memo="bought")

    with pytest.raises(AmountOutOfRange) as refused:
        ledger.deposit(user_id=alice.pk, amount=Decimal("1.00000001"), reference="deposit:2", memo="bought")

    assert refused.value.details == {"account": "available", "max": "10000000000.00000000"}
    assert available(alice) == MAX_AMOUNT - 1
    assert not Posting.objects.filter(reference="deposit:2").exists()
    # Exactly up to the largest amount is still taken.
    ledger.deposit(user_id=alice.pk, amount=Decimal(1), reference="deposit:3", memo="bought")
    assert available(alice) == MAX_AMOUNT
    assert ledger_problems() == []


def test_an_amount_beyond_the_largest_is_refused_before_anything_is_looked_at(alice: User) -> None:
    for amount in (MAX_AMOUNT + UNIT, Decimal("1" * 40)):
        with pytest.raises(AmountOutOfRange):
            ledger.adjust(user_id=alice.pk, amount=amount, reason="typo", operator="ops")
    assert not Posting.objects.exists()


# --- check_ledger on odd contents ----------------------------------------------------------------------------------


def test_check_ledger_reports_balances_whose_total_is_beyond_64_bits(alice: User) -> None:
    ledger.deposit(user_id=alice.pk, amount=Decimal(5), reference="deposit:a", memo="bought")
    accounts = [
        LedgerAccount.objects.create(kind=kind)
        for kind in (AccountKind.PLATFORM_FEES, AccountKind.ADJUSTMENTS)
    ]
    accounts.append(LedgerAccount.objects.get(user=alice, kind=AccountKind.AVAILABLE))
    near_the_column_max = 2**63 - 2
    for account in accounts:
        raw_set(LedgerAccount, "balance", account.pk, near_the_column_max)

    report = failed_check()

    assert "ledger check FAILED" in report
    assert "account platform platform_fees has balance 92233720368.54775806 but its entries sum to 0" in report
    assert f"account {ALICE} available has balance 92233720368.54775806 but its entries sum to 5.00000000" in report
    assert f"account {ALICE} available has balance 92233720368.54775806, beyond the largest amount" in report


def test_check_ledger_reports_a_mismatch_in_exact_units(alice: User) -> None:
    ledger.deposit(user_id=alice.pk, amount=Decimal("9999999999.99999999"), reference="deposit:a", memo="bought")
    account = LedgerAccount.objects.get(user=alice, kind=AccountKind.AVAILABLE)
    raw_set(LedgerAccount, "balance", account.pk, to_units(Decimal("9999999999.99999998")))

    report = failed_check()

    assert f"account {ALICE} available has balance 9999999999.99999998 but its entries sum to 9999999999.99999999" in (
        report
    )


@pytest.mark.skipif(connection.vendor != "sqlite", reason="only SQLite lets a REAL or TEXT into an integer column")
@pytest.mark.parametrize("odd", [1.5, "ten"], ids=["a REAL", "TEXT"])
def test_check_ledger_reports_a_value_that_is_not_whole_units(alice: User, odd: object) -> None:
    ledger.deposit(user_id=alice.pk, amount=Decimal(5), reference="deposit:a", memo="bought")
    account = LedgerAccount.objects.get(user=alice, kind=AccountKind.AVAILABLE)
    entry = LedgerEntry.objects.get(account=account)
    raw_set(LedgerAccount, "balance", account.pk, odd)
    raw_set(LedgerEntry, "amount", entry.pk, odd)

    report = failed_check()

    assert f"account {ALICE} available holds {odd!r} as its balance, not a whole number of 10⁻⁸ units" in report
    assert f"entry {entry.pk} holds {odd!r}, not a whole number of 10⁻⁸ units" in report
