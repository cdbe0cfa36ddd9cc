"""`manage.py create_api_key` prints a working key once and stores only its hash; `manage.py credit` funds a user in
development through the ledger's operator adjustment."""

import hashlib
import subprocess
import sys
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AccountKind, ApiKey, Posting, PostingKind, User
from accounts.selectors import ledger_problems, user_balance
from aitbc_site.settings import BASE_DIR
from aitbc_site.testing import assert_api_error
from conftest import ADDRESS, OTHER_ADDRESS, api_with_key, live_env, register_miner, submit_job
from miners.models import Miner


def create_api_key(*args: str) -> str:
    stdout, stderr = StringIO(), StringIO()
    call_command("create_api_key", *args, stdout=stdout, stderr=stderr)
    printed = stdout.getvalue().splitlines()
    assert len(printed) == 1, printed
    return printed[0]


def test_it_prints_a_client_key_that_submits_jobs(db: None) -> None:
    raw_key = create_api_key("--role", "client", "--name", "shop frontend")

    job = submit_job(api_with_key(raw_key))

    stored = ApiKey.objects.get()
    assert (stored.role, stored.name) == ("client", "shop frontend")
    assert stored.key_hash == hashlib.sha256(raw_key.encode()).hexdigest()
    assert job["client_id"] == str(stored.user_id)
    assert stored.user.is_service


def test_it_prints_a_miner_key_that_works_only_on_miner_endpoints(db: None) -> None:
    api = api_with_key(create_api_key("--role", "miner", "--name", "rig 7"))

    register_miner(api)
    assert_api_error(api.get("/v1/client/jobs"), status=403, code="PERMISSION_DENIED")


def test_an_admin_key_is_no_client_or_miner_key(db: None) -> None:
    api = api_with_key(create_api_key("--role", "admin", "--name", "ops"))

    assert_api_error(api.get("/v1/client/jobs"), status=403, code="PERMISSION_DENIED")
    assert_api_error(api.get("/v1/miner/jobs"), status=403, code="PERMISSION_DENIED")


def test_each_printed_key_is_new(db: None) -> None:
    first = create_api_key("--role", "client", "--name", "a")
    second = create_api_key("--role", "client", "--name", "a")

    assert first != second
    assert ApiKey.objects.count() == 2
    assert len({key.user_id for key in ApiKey.objects.all()}) == 2


def test_a_key_can_be_issued_to_an_existing_user(operator: User) -> None:
    api = api_with_key(create_api_key("--role", "miner", "--name", "operator's rig", "--user", "operator"))

    miner = register_miner(api)

    assert Miner.objects.get(pk=miner["id"]).owner == operator


def test_a_key_can_be_issued_to_a_wallet_user(db: None) -> None:
    wallet_user = User.objects.create(username="wallet", wallet_address="ait1" + "ef" * 20)

    raw_key = create_api_key("--role", "miner", "--name", "wallet key", "--user", "ait1" + "ef" * 20)

    miner = register_miner(api_with_key(raw_key))

    assert ApiKey.objects.get().user == Miner.objects.get(pk=miner["id"]).owner == wallet_user


def test_an_unknown_owner_is_an_error_and_issues_nothing(db: None) -> None:
    with pytest.raises(CommandError, match="nobody"):
        call_command("create_api_key", "--role", "client", "--name", "x", "--user", "nobody", stdout=StringIO())

    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("args", [["--role", "root", "--name", "x"], ["--name", "x"], ["--role", "client"]])
def test_a_role_and_a_name_are_required(db: None, args: list[str]) -> None:
    with pytest.raises(CommandError):
        call_command("create_api_key", *args, stdout=StringIO(), stderr=StringIO())

    assert not ApiKey.objects.exists()


# --- credit: development funding ------------------------------------------------------------------------------------


def credit(*args: str) -> str:
    stdout = StringIO()
    call_command("credit", *args, stdout=stdout, stderr=StringIO())
    return stdout.getvalue()


@pytest.fixture
def development(settings: Any, db: None) -> None:
    settings.DEBUG = True


def test_credit_adds_to_the_available_balance_in_one_balanced_posting_with_who_and_why(
    development: None, operator: User
) -> None:
    printed = credit("operator", "100", "--reason", "a paid job", "--operator", "alice")

    assert user_balance(user=operator)["available"] == Decimal("100")
    posting = Posting.objects.get()
    assert (posting.kind, posting.memo, posting.actor) == (PostingKind.ADJUSTMENT, "a paid job", "operator:alice")
    entries = {entry.account.kind: entry.amount for entry in posting.entries.select_related("account")}
    assert entries == {AccountKind.AVAILABLE: Decimal("100"), AccountKind.ADJUSTMENTS: Decimal("-100")}
    assert posting.entries.get(account__kind=AccountKind.ADJUSTMENTS).account.user is None
    assert ledger_problems() == []
    assert "available balance now 100.00000000" in printed


def test_credit_records_the_login_name_when_no_operator_is_given(
    development: None, operator: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # getpass reads the name from the environment first: the machine's boundary, not our code.
    monkeypatch.setenv("LOGNAME", "bob")

    credit("operator", "1.5", "--reason", "dev")

    assert Posting.objects.get().actor == "operator:bob"


def test_credit_finds_users_by_id_and_wallets_in_any_spelling(development: None) -> None:
    wallet_user = User.objects.create(username=ADDRESS, wallet_address=ADDRESS)

    credit(str(wallet_user.pk), "1", "--reason", "by id")
    credit("0x" + ADDRESS.removeprefix("ait1").upper(), "2", "--reason", "by 0x address")

    assert user_balance(user=wallet_user)["available"] == Decimal("3")
    assert User.objects.count() == 1


def test_credit_to_a_wallet_nobody_used_yet_makes_its_user_as_a_first_login_would(development: None) -> None:
    credit(OTHER_ADDRESS, "10", "--reason", "before the first login")

    user = User.objects.get(wallet_address=OTHER_ADDRESS)
    assert user_balance(user=user)["available"] == Decimal("10")
    assert not user.is_service


@pytest.mark.parametrize("who", ["nobody", "00000000-0000-0000-0000-000000000000", "0x1234"])
def test_credit_to_an_unknown_user_is_an_error_and_posts_nothing(development: None, who: str) -> None:
    with pytest.raises(CommandError, match="No user"):
        credit(who, "1", "--reason", "dev")

    assert not Posting.objects.exists()


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "positive"),
        ("-5", "positive"),
        ("1.123456789", "8 decimal places"),
        ("ten", "decimal"),
        ("1e3", "decimal"),
        ("\u0661", "decimal"),
        ("10000000001", "largest amount"),
    ],
)
def test_credit_of_a_bad_amount_is_an_error_and_posts_nothing(
    development: None, operator: User, amount: str, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        credit("operator", amount, "--reason", "dev")

    assert not Posting.objects.exists()


def test_credit_needs_a_reason_and_an_operator_that_fit_the_posting(development: None, operator: User) -> None:
    with pytest.raises(CommandError, match="--reason"):
        credit("operator", "1")
    with pytest.raises(CommandError, match="--reason must say why"):
        credit("operator", "1", "--reason", "  ")
    with pytest.raises(CommandError, match="at most 500 characters"):
        credit("operator", "1", "--reason", "x" * 501)
    with pytest.raises(CommandError, match="--operator is recorded in at most"):
        credit("operator", "1", "--reason", "dev", "--operator", "x" * 200)

    assert not Posting.objects.exists()


def test_credit_that_would_take_a_balance_past_the_largest_amount_is_an_error(development: None) -> None:
    credit(ADDRESS, "10000000000", "--reason", "the most a balance holds")

    with pytest.raises(CommandError, match="largest amount"):
        credit(ADDRESS, "0.00000001", "--reason", "one unit too many")

    assert Posting.objects.count() == 1
    assert ledger_problems() == []


def test_credit_is_refused_in_production(settings: Any, operator: User) -> None:
    settings.DEBUG = False

    with pytest.raises(CommandError, match="production") as refusal:
        credit("operator", "100", "--reason", "dev")

    assert "--force" in str(refusal.value)
    assert not Posting.objects.exists()


def test_credit_in_production_goes_through_with_force(settings: Any, operator: User) -> None:
    settings.DEBUG = False

    credit("operator", "100", "--reason", "refund of ticket 42", "--operator", "alice", "--force")

    assert user_balance(user=operator)["available"] == Decimal("100")
    assert Posting.objects.get().actor == "operator:alice"


def test_credit_refused_in_production_exits_non_zero_from_the_command_line(tmp_path: Path) -> None:
    env = live_env(f"sqlite:///{tmp_path / 'refused.db'}")
    completed = subprocess.run(
        [sys.executable, "manage.py", "credit", "someone", "1", "--reason", "dev"],
        env=env, cwd=BASE_DIR, capture_output=True, text=True, timeout=60,
    )

    assert completed.returncode != 0
    assert "DEBUG is off" in completed.stderr and "Traceback" not in completed.stderr
