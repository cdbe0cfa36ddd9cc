"""The README's command lines work as written: its curl walk-through, pasted whole into bash against a live server,
takes a funded wallet user's job to completed and paid with a valid receipt; every `make manage ARGS="…"` line names
a real command and real options, and the harmless ones run."""

import json
import re
import shlex
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.core.management import get_commands, load_command_class

from aitbc_site.settings import BASE_DIR
from aitbc_site.testing import live_server, run_manage
from conftest import live_env

README = (BASE_DIR / "README.md").read_text()
MANAGE_LINE = re.compile(r'make\s+(?:-s\s+)?manage\s+ARGS="([^"]*)"')
# What marks a README line as a template rather than a command to run: shell variables, "…", alternatives,
# optional parts, and upper-case names such as FILE or USER_OR_WALLET.
PLACEHOLDER = re.compile(r"[$…|\[<]|\b[A-Z][A-Z_]{2,}\b")
HARMLESS = {"help", "check"}
DEV_API_KEY = "dev-readme-walkthrough"


def executable(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: the README's commands need it"
    return path


def walkthrough() -> str:
    """The shell block right after the README's `<!-- walkthrough -->` marker."""
    match = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)\n```\n", README, re.DOTALL)
    assert match, "README.md has no ```bash block after <!-- walkthrough -->"
    return match.group(1)


def development_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """The environment `make manage` and the walk-through see: a throw-away data/local.env, the test's database,
    and DEBUG left to `make manage`'s development default."""
    local_env = tmp_path / "local.env"
    local_env.write_text(f"SECRET_KEY=live-tests-only\nDEV_API_KEY={DEV_API_KEY}\n")
    env = live_env(database_url, LOCAL_ENV=str(local_env))
    # A test run under `make test` would otherwise make each `make manage` a sub-make, which prints directories.
    for name in ("DEBUG", "MAKELEVEL"):
        env.pop(name, None)
    return env


@pytest.mark.live
def test_the_walkthrough_pasted_whole_completes_a_paid_job_with_a_valid_receipt(
    live_database_url: str, tmp_path: Path
) -> None:
    env = development_env(tmp_path, live_database_url)
    # Stops at the first failing command, then hands the test what it needs to check the outcome itself.
    script = "\n".join(
        ["set -euo pipefail", walkthrough(), 'printf "WALKTHROUGH %s %s %s\\n" "$JOB" "$CLIENT_KEY" "$WALLET"']
    )

    server_env = live_env(live_database_url, API_KEYS=DEV_API_KEY)
    with live_server(env=server_env, log_path=tmp_path / "gunicorn.log", workers=2) as server:
        completed = subprocess.run(
            [executable("bash"), "-c", script], env={**env, "AITBC_URL": server.url}, cwd=BASE_DIR,
            capture_output=True, text=True, timeout=180,
        )
        assert completed.returncode == 0, (completed.stdout[-3000:], completed.stderr[-3000:])
        _, job_id, client_key, wallet = completed.stdout.splitlines()[-1].split()
        with httpx.Client(base_url=server.url, headers={"X-Api-Key": client_key}, timeout=30) as http:
            job = http.get(f"/v1/client/jobs/{job_id}").json()
            receipts = http.get(f"/v1/client/jobs/{job_id}/receipts").json()["results"]
            verdict = http.post("/v1/receipts/verify", json=receipts[0]).json()

    assert completed.stdout.splitlines()[-2] == "true"  # the walk-through's own verification
    assert job["status"] == "completed"
    assert len(receipts) == 1 and receipts[0]["job_id"] == job_id
    assert verdict == {"valid": True, "key_id": receipts[0]["key_id"], "reason": None}
    # Paid: the wallet's 10 AITBC less the job's price (1, the default), and its miner's wallet got the rest of
    # the price after the platform's fee.
    balances = json.loads(run_manage("shell", "-c", BALANCES.format(wallet=wallet), env=server_env).splitlines()[-1])
    assert {name: Decimal(value) for name, value in balances.items()} == {
        "client": Decimal("9"), "miner": Decimal("0.95"),
    }
    assert run_manage("check_ledger", env=server_env).strip() == "ledger OK"


BALANCES = """
import json
from accounts.models import User
from accounts.selectors import user_balance
paid = User.objects.get(wallet_address="ait152908400098527886e0f7030069857d2e4169ee7")
print(json.dumps({{"client": str(user_balance(user=User.objects.get(wallet_address="{wallet}"))["available"]),
                  "miner": str(user_balance(user=paid)["available"])}}))
"""


def manage_lines() -> list[list[str]]:
    lines = [shlex.split(args) for args in MANAGE_LINE.findall(README)]
    assert lines, "README.md shows no `make manage` line"
    return lines


def test_the_readme_runs_management_commands_only_through_make_manage() -> None:
    assert "python manage.py" not in README


@pytest.mark.parametrize("words", manage_lines(), ids=" ".join)
def test_each_make_manage_line_names_a_command_and_options_it_has(words: list[str]) -> None:
    name, *arguments = words
    commands = get_commands()
    if name == "help":  # manage.py's own: lists the commands, or shows the one named
        assert all(argument in commands for argument in arguments), words
        return
    assert name in commands, f"README: no management command {name!r}"
    parser = load_command_class(commands[name], name).create_parser("manage.py", name)
    options = {option for action in parser._actions for option in action.option_strings}
    for argument in (word.strip("[]") for word in arguments):
        if argument.startswith("--"):
            assert argument.split("=")[0] in options, f"README: {name} has no option {argument}"
    if not any(PLACEHOLDER.search(word) for word in words):
        parser.parse_args(arguments)  # raises CommandError on arguments the command would refuse


def test_the_harmless_make_manage_lines_run(tmp_path: Path) -> None:
    harmless = sorted({" ".join(words) for words in manage_lines() if words[0] in HARMLESS})
    assert harmless, f"README shows none of {sorted(HARMLESS)} through make manage"
    env = development_env(tmp_path, f"sqlite:///{tmp_path / 'readme.db'}")
    for line in harmless:
        completed = subprocess.run(
            [executable("make"), "-s", "manage", f"ARGS={line}"], env=env, cwd=BASE_DIR, capture_output=True, text=True,
            timeout=120,
        )
        assert completed.returncode == 0, (line, completed.stdout[-2000:], completed.stderr[-2000:])
