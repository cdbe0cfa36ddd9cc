"""Amounts are exact on every database: the AmountField's conversion both ways, its strict parsing (ASCII digits,
8 places, ±MAX_AMOUNT), and the migration that converts the decimal columns of earlier versions exactly."""

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Sum
from django.utils import timezone

from accounts.models import AccountKind, LedgerAccount, LedgerEntry, Posting, User
from aitbc_site import amounts
from aitbc_site.amount_migrations import AmountMigrationError
from aitbc_site.exceptions import AmountOutOfRange
from exchange.models import ExchangeRate, Payment
from jobs.models import Job, JobTypePrice

MAX = Decimal("10000000000")


# --- parsing and the range ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0", "1", "-1.5", "0.00000001", "10000000000", "9999999999.99999999", "007"])
def test_a_decimal_string_of_ascii_digits_with_up_to_8_places_is_an_amount(text: str) -> None:
    assert amounts.parse(text) == Decimal(text)


@pytest.mark.parametrize(
    "text",
    [
        "\u0661",  # ARABIC-INDIC DIGIT ONE, which `\d` and Decimal() read as 1
        "\u0661\u0662.5",
        "\uff11",  # FULLWIDTH DIGIT ONE
        "1\u0969",  # DEVANAGARI DIGIT THREE
        "0.00000001\u0660",
        "1.000000001", "1e3", "NaN", "Infinity", " 1", "1 ", "+1", ".5", "1.", "", "1" * 33,
    ],
)
def test_anything_else_is_not_an_amount(text: str) -> None:
    with pytest.raises(ValueError, match="not a decimal string"):
        amounts.parse(text)


def test_the_largest_amount_is_ten_billion_in_either_sign() -> None:
    assert amounts.MAX_AMOUNT == MAX and amounts.MAX_TEXT == "10000000000.00000000"
    assert amounts.check_range(MAX) == MAX and amounts.check_range(-MAX) == -MAX
    for beyond in (MAX + Decimal("0.00000001"), -MAX - Decimal("0.00000001"), Decimal("1" * 32)):
        with pytest.raises(AmountOutOfRange):
            amounts.check_range(beyond)


# --- the model field ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["0.00000001", "0.1", "12345678.12345678", "99999999.99999999", "9999999999.99999999", "10000000000", "-7.5"],
)
def test_an_amount_reads_back_exactly(db: None, value: str) -> None:
    JobTypePrice.objects.create(job_type="llm_inference", price=abs(Decimal(value)))
    ExchangeRate.objects.create(btc_to_aitbc=abs(Decimal(value)), source="test", created_at=timezone.now())

    assert JobTypePrice.objects.get().price == abs(Decimal(value))
    assert ExchangeRate.objects.get().btc_to_aitbc == abs(Decimal(value))
    assert JobTypePrice.objects.filter(price=abs(Decimal(value))).exists()


def test_the_column_holds_whole_units(db: None) -> None:
    JobTypePrice.objects.create(job_type="llm_inference", price=Decimal("1.5"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT price FROM {JobTypePrice._meta.db_table}")
        assert cursor.fetchone() == (150000000,)


def test_a_value_with_more_than_8_places_is_refused_not_rounded(db: None) -> None:
    with pytest.raises(ValueError, match="8 decimal places"), transaction.atomic():
        JobTypePrice.objects.create(job_type="llm_inference", price=Decimal("1.000000001"))
    with pytest.raises(ValueError, match="float"), transaction.atomic():
        JobTypePrice.objects.create(job_type="llm_inference", price=0.1)
    assert not JobTypePrice.objects.exists()


def test_sums_and_comparisons_are_exact_integer_arithmetic(db: None) -> None:
    # 0.1 + 0.2 - 0.3 is not zero over SQLite's REALs; over units it is.
    for kind, balance in [(AccountKind.PLATFORM_FEES, "0.1"), (AccountKind.ADJUSTMENTS, "0.2")]:
        LedgerAccount.objects.create(kind=kind, balance=Decimal(balance))
    LedgerAccount.objects.create(kind=AccountKind.EXCHANGE_DEPOSITS, balance=Decimal("-0.3"))

    assert LedgerAccount.objects.aggregate(total=Sum("balance"))["total"] == 0
    assert LedgerAccount.objects.filter(balance__gte=Decimal("0.2")).count() == 1
    assert list(LedgerAccount.objects.order_by("balance").values_list("balance", flat=True)) == [
        Decimal("-0.3"), Decimal("0.1"), Decimal("0.2"),
    ]


# --- the migration -------------------------------------------------------------------------------------------------

BEFORE = [
    ("accounts", "0002_loginchallenge_posting_ledgeraccount_ledgerentry_and_more"),
    ("jobs", "0003_job_handouts"),
    ("exchange", "0001_initial"),
]
# Values the decimal columns of SQLite kept inexactly (the last two read back drifted); every one within the 15
# significant digits SQLite keeps of a decimal it is given, so the value written is still there to be found.
STORED = ["0.00000001", "0.1", "0.3", "2", "1234567.12345678", "12345678.12345678", "99999999.99999999", "10000000000"]


@pytest.fixture
def migrated_back() -> Iterator[MigrationExecutor]:
    """The database as it was before amounts were units; emptied and migrated forward again afterwards, whatever
    state a failed migration left it in."""
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    yield executor
    models = [LedgerEntry, Posting, LedgerAccount, Payment, ExchangeRate, Job, JobTypePrice, User]
    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)}")
    final = MigrationExecutor(connection)
    final.migrate(final.loader.graph.leaf_nodes())


def _btc(value: Decimal) -> Decimal:
    """The BTC columns were decimal(16, 8): below 10⁸."""
    return min(value, Decimal("99999999.99999999"))


def _write_old_rows(executor: MigrationExecutor, values: list[str]) -> dict[str, list[int]]:
    """Rows of every amount column written as the earlier version did (its DecimalFields); their ids by model."""
    apps = executor.loader.project_state(BEFORE).apps
    now = timezone.now()
    user = apps.get_model("accounts", "User").objects.create(username="migrated")
    ids: dict[str, list[int]] = {"account": [], "entry": [], "job": [], "payment": []}
    for index, text in enumerate(values):
        value = Decimal(text)
        posting = apps.get_model("accounts", "Posting").objects.create(
            reference=f"migrated:{index}", kind="adjustment", created_at=now
        )
        account = apps.get_model("accounts", "LedgerAccount").objects.create(
            user=None if index else user, kind=AccountKind.AVAILABLE if index == 0 else f"platform-{index}",
            balance=value,
        )
        entry = apps.get_model("accounts", "LedgerEntry").objects.create(
            posting=posting, account=account, amount=-value, created_at=now
        )
        job = apps.get_model("jobs", "Job").objects.create(
            client=user, job_type="llm_inference", max_attempts=1, max_runtime_seconds=60, created_at=now,
            updated_at=now, expires_at=now + timedelta(hours=1), not_before=now, price=value,
        )
        payment = apps.get_model("exchange", "Payment").objects.create(
            user=user, btc_amount=_btc(value), aitbc_amount=value, rate=value, address=f"bc1q{index}",
            required_confirmations=1, received_btc=_btc(value), credited_aitbc=value, created_at=now, updated_at=now,
            expires_at=now, watching=False,
        )
        apps.get_model("jobs", "JobTypePrice").objects.create(job_type=f"type-{index}", price=value)
        apps.get_model("exchange", "ExchangeRate").objects.create(btc_to_aitbc=value, source=text, created_at=now)
        ids["account"].append(account.pk)
        ids["entry"].append(entry.pk)
        ids["job"].append(job.pk)
        ids["payment"].append(payment.pk)
    return ids


@pytest.mark.django_db(transaction=True)
def test_the_migration_converts_every_stored_amount_exactly(migrated_back: MigrationExecutor) -> None:
    ids = _write_old_rows(migrated_back, STORED)

    forward = MigrationExecutor(connection)
    forward.migrate(forward.loader.graph.leaf_nodes())

    expected = [Decimal(text) for text in STORED]
    assert [LedgerAccount.objects.get(pk=pk).balance for pk in ids["account"]] == expected
    assert [LedgerEntry.objects.get(pk=pk).amount for pk in ids["entry"]] == [-value for value in expected]
    assert [Job.objects.get(pk=pk).price for pk in ids["job"]] == expected
    assert [JobTypePrice.objects.get(job_type=f"type-{index}").price for index in range(len(STORED))] == expected
    assert [ExchangeRate.objects.get(source=text).btc_to_aitbc for text in STORED] == expected
    for pk, value in zip(ids["payment"], expected, strict=True):
        payment = Payment.objects.get(pk=pk)
        fields = ("btc_amount", "aitbc_amount", "rate", "received_btc", "credited_aitbc")
        assert [getattr(payment, name) for name in fields] == [_btc(value), value, value, _btc(value), value]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT balance FROM {LedgerAccount._meta.db_table} WHERE id = %s", [ids["account"][1]])
        assert cursor.fetchone() == (10000000,)


@pytest.mark.django_db(transaction=True)
def test_the_migration_stops_at_a_value_beyond_the_column_instead_of_clipping_it(
    migrated_back: MigrationExecutor,
) -> None:
    _write_old_rows(migrated_back, ["1", "1000000000000"])

    forward = MigrationExecutor(connection)
    with pytest.raises(AmountMigrationError, match=r"of row \S+ holds 1000000000000.*beyond what an amount column"):
        forward.migrate(forward.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_migration_goes_back_to_decimals_exactly(migrated_back: MigrationExecutor) -> None:
    forward = MigrationExecutor(connection)
    forward.migrate(forward.loader.graph.leaf_nodes())
    for index, text in enumerate(STORED):
        JobTypePrice.objects.create(job_type=f"type-{index}", price=Decimal(text))
        LedgerAccount.objects.create(kind=f"platform-{index}", balance=-Decimal(text))

    back = MigrationExecutor(connection)
    back.migrate(BEFORE)

    apps = back.loader.project_state(BEFORE).apps
    prices = apps.get_model("jobs", "JobTypePrice").objects.order_by("job_type").values_list("price", flat=True)
    balances = apps.get_model("accounts", "LedgerAccount").objects.order_by("kind").values_list("balance", flat=True)
    # The earlier version read SQLite's REALs to 15 significant digits: the longer values it never read exactly.
    exact = [connection.vendor != "sqlite" or len(text.replace(".", "").lstrip("0")) <= 15 for text in STORED]
    assert [price for price, kept in zip(prices, exact, strict=True) if kept] == [
        Decimal(text) for text, kept in zip(STORED, exact, strict=True) if kept
    ]
    assert [balance for balance, kept in zip(balances, exact, strict=True) if kept] == [
        -Decimal(text) for text, kept in zip(STORED, exact, strict=True) if kept
    ]
