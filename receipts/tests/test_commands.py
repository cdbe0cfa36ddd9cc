"""`manage.py verify_receipt FILE`, with its exit codes, and the deploy check on the signing key."""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from aitbc_site.settings import BASE_DIR
from receipts.tests.factories import RFC8032_TEST1_SEED, first_receipt


@pytest.fixture
def receipt_file(client_api: APIClient, miner_api: APIClient, tmp_path: Path) -> Path:
    receipt, _ = first_receipt(client_api, miner_api)
    path = tmp_path / "receipt.json"
    path.write_bytes(client_api.get(f"/v1/receipts/{receipt['id']}").content)
    return path


def manage(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run `manage.py` as an operator would, in its own process, to see its real exit status."""
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *argv],
        cwd=BASE_DIR,
        env={**os.environ, "RECEIPT_SIGNING_KEY": RFC8032_TEST1_SEED, "RECEIPT_RETIRED_PUBLIC_KEYS": ""},
        capture_output=True, text=True, timeout=120,
    )


def returncode_of(path: Path) -> int:
    """The exit status `manage.py verify_receipt` gives this file (Django exits with a CommandError's returncode)."""
    try:
        call_command("verify_receipt", str(path), stdout=StringIO())
    except CommandError as error:
        return error.returncode
    return 0


def tamper(path: Path, **changes: Any) -> Path:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return path


# --- verify_receipt --------------------------------------------------------------------------------------------------


def test_a_valid_receipt_file_is_reported_valid_with_its_key(receipt_file: Path) -> None:
    out = StringIO()

    call_command("verify_receipt", str(receipt_file), stdout=out)

    key_id = json.loads(receipt_file.read_text())["key_id"]
    assert out.getvalue().strip() == f"VALID: signed by key {key_id}"


def test_a_tampered_receipt_file_is_a_command_error_with_the_reason(receipt_file: Path) -> None:
    tamper(receipt_file, result={"text": "something better"})

    with pytest.raises(CommandError, match="INVALID: BAD_SIGNATURE") as raised:
        call_command("verify_receipt", str(receipt_file))

    assert raised.value.returncode == 1


def test_a_receipt_file_under_an_unknown_key_is_a_command_error_with_the_reason(receipt_file: Path) -> None:
    tamper(receipt_file, key_id="0123456789abcdef")

    with pytest.raises(CommandError, match="INVALID: UNKNOWN_KEY") as raised:
        call_command("verify_receipt", str(receipt_file))

    assert raised.value.returncode == 1


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("this is not JSON", id="not-json"),
        pytest.param('{"key_id": "21fe31dfa154a261", "proof": ', id="truncated-json"),
        pytest.param('["a", "list"]', id="not-an-object"),
        pytest.param('{"proof": "00"}', id="without-key-id"),
        pytest.param('{"key_id": "21fe31dfa154a261"}', id="without-proof"),
    ],
)
def test_a_file_that_is_not_a_receipt_is_a_command_error_with_returncode_2(tmp_path: Path, content: str) -> None:
    path = tmp_path / "receipt.json"
    path.write_text(content)

    assert returncode_of(path) == 2


def test_a_missing_file_is_a_command_error_with_returncode_2(tmp_path: Path) -> None:
    assert returncode_of(tmp_path / "nowhere.json") == 2


def test_the_command_exits_0_for_a_valid_file_1_for_a_tampered_one_and_2_for_one_that_is_not_json(
    receipt_file: Path, tmp_path: Path
) -> None:
    valid = manage("verify_receipt", str(receipt_file))
    assert (valid.returncode, valid.stdout.startswith("VALID")) == (0, True), valid.stderr

    tampered = manage("verify_receipt", str(tamper(receipt_file, attempt=2)))
    assert tampered.returncode == 1
    assert "INVALID: BAD_SIGNATURE" in tampered.stderr

    not_json = tmp_path / "not-json.txt"
    not_json.write_text("receipt? what receipt?")
    unreadable = manage("verify_receipt", str(not_json))
    assert unreadable.returncode == 2
    assert "Cannot read a JSON receipt" in unreadable.stderr


# --- check --deploy --------------------------------------------------------------------------------------------------


def deploy_check_output() -> str:
    err = StringIO()
    call_command("check", "--deploy", stdout=StringIO(), stderr=err)
    return err.getvalue()


def test_check_deploy_warns_when_no_signing_key_is_configured(settings: Any) -> None:
    settings.RECEIPT_SIGNING_KEY = ""

    output = deploy_check_output()

    assert "aitbc.W001" in output
    assert "RECEIPT_SIGNING_KEY is not set" in output


def test_check_deploy_is_quiet_about_the_signing_key_when_it_is_configured() -> None:
    assert "aitbc.W001" not in deploy_check_output()


def test_the_signing_key_check_runs_only_with_deploy(settings: Any) -> None:
    settings.RECEIPT_SIGNING_KEY = ""
    err = StringIO()

    call_command("check", stdout=StringIO(), stderr=err)

    assert "aitbc.W001" not in err.getvalue()
