"""`manage.py create_api_key`: prints a working key once and stores only its hash."""

import hashlib
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey, User
from aitbc_site.testing import assert_api_error
from conftest import api_with_key, register_miner, submit_job
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
