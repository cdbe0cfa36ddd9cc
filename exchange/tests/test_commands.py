"""`manage.py update_rate` and `manage.py check_payments`, the last also as separate processes racing requests of a
live gunicorn server on one database."""

import io
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import CommandError, call_command
from eth_account import Account
from eth_account.messages import encode_defunct
from pytest_django.fixtures import Settings

from accounts.models import User
from aitbc_site.settings import BASE_DIR
from aitbc_site.testing import live_server
from conftest import live_env
from exchange.models import ExchangeRate
from exchange.tests.chain_servers import BitcoindServer, Chain, ChainServer, EsploraServer, Failure, PriceServer
from exchange.tests.factories import BIP84_ZPUB, assert_credited_once, make_payment

# --- update_rate --------------------------------------------------------------------------------------------------


def update_rate(*args: str) -> str:
    out = io.StringIO()
    call_command("update_rate", *args, stdout=out)
    return out.getvalue()


def history() -> list[tuple[Decimal, str]]:
    return list(ExchangeRate.objects.order_by("-created_at", "-id").values_list("btc_to_aitbc", "source"))


@pytest.fixture
def price_server() -> Iterator[PriceServer]:
    server = PriceServer({"btc_to_aitbc": "110000"})
    server.start()
    yield server
    server.stop()


@pytest.mark.django_db
def test_update_rate_sets_a_given_rate_and_keeps_the_history() -> None:
    assert update_rate("--rate", "105000") == "rate set: 1 BTC = 105000.00000000 AITBC\n"
    update_rate("--rate", "110000.5")

    assert history() == [
        (Decimal("110000.5"), "update_rate --rate"),
        (Decimal("105000"), "update_rate --rate"),
        (Decimal("100000"), "BTC_TO_AITBC_RATE"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("rate", ["abc", "0", "-100000", "NaN", "Infinity"])
def test_update_rate_refuses_a_rate_that_is_not_a_positive_number(rate: str) -> None:
    with pytest.raises(CommandError):
        update_rate("--rate", rate)

    assert ExchangeRate.objects.filter(source="update_rate --rate").count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("rate", ["\u0661\u0660\u0660\u0660\u0660\u0660", "10000000000.00000001"])
def test_update_rate_refuses_other_than_ascii_digits_and_a_rate_beyond_the_largest_amount(rate: str) -> None:
    with pytest.raises(CommandError):
        update_rate("--rate", rate, "--force")

    assert ExchangeRate.objects.filter(source="update_rate --rate").count() == 0


@pytest.mark.django_db
def test_update_rate_reads_the_rate_from_a_json_endpoint(price_server: PriceServer) -> None:
    update_rate("--source", price_server.url)

    assert history()[0] == (Decimal("110000"), price_server.url)
    assert price_server.requests == ["GET /simple/price?ids=bitcoin"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("document", "field", "rate"),
    [
        ({"bitcoin": {"aitbc": 104000.25}}, "bitcoin.aitbc", "104000.25"),
        ({"data": [{"price": "95000.12345678"}]}, "data.0.price", "95000.12345678"),
    ],
    ids=["nested number", "string in a list"],
)
def test_update_rate_reads_the_number_that_field_names(
    price_server: PriceServer, document: Any, field: str, rate: str
) -> None:
    price_server.document = document

    update_rate("--source", price_server.url, "--field", field)

    assert history()[0][0] == Decimal(rate)


@pytest.mark.django_db
def test_update_rate_refuses_a_change_above_rate_max_change_unless_forced(price_server: PriceServer) -> None:
    price_server.document = {"btc_to_aitbc": "120000.00000001"}

    with pytest.raises(CommandError, match="RATE_MAX_CHANGE"):
        update_rate("--source", price_server.url)
    assert history() == [(Decimal("100000"), "BTC_TO_AITBC_RATE")]

    update_rate("--source", price_server.url, "--force")
    assert history()[0] == (Decimal("120000.00000001"), price_server.url)


@pytest.mark.django_db
def test_update_rate_accepts_a_change_of_exactly_rate_max_change(price_server: PriceServer) -> None:
    price_server.document = {"btc_to_aitbc": "80000"}

    update_rate("--source", price_server.url)

    assert history()[0][0] == Decimal("80000")


@pytest.mark.django_db
def test_update_rate_follows_the_configured_rate_max_change(price_server: PriceServer, settings: Settings) -> None:
    settings.RATE_MAX_CHANGE = Decimal("0.05")
    price_server.document = {"btc_to_aitbc": "106000"}

    with pytest.raises(CommandError, match="RATE_MAX_CHANGE"):
        update_rate("--source", price_server.url)


@pytest.mark.django_db
def test_update_rate_checks_a_rate_given_by_hand_against_rate_max_change_too() -> None:
    with pytest.raises(CommandError, match="RATE_MAX_CHANGE"):
        update_rate("--rate", "1000000")

    update_rate("--rate", "1000000", "--force")
    assert history()[0][0] == Decimal("1000000")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "broken",
    [
        {"failure": Failure.UNAVAILABLE},
        {"failure": Failure.NOT_JSON},
        {"document": {"price": "110000"}},
        {"document": {"btc_to_aitbc": "a lot"}},
        {"document": {"btc_to_aitbc": -5}},
        {"document": {"btc_to_aitbc": None}},
        {"document": ["110000"]},
        {"stopped": True},
    ],
    ids=["503", "HTML", "field missing", "not a number", "negative", "null", "not an object", "unreachable"],
)
def test_update_rate_changes_nothing_when_the_source_does_not_give_a_rate(
    price_server: PriceServer, broken: dict[str, Any]
) -> None:
    price_server.failure = broken.get("failure", Failure.NONE)
    price_server.document = broken.get("document", price_server.document)
    if broken.get("stopped"):
        price_server.stop()
    update_rate("--rate", "100500")

    with pytest.raises(CommandError):
        update_rate("--source", price_server.url)

    assert history()[0] == (Decimal("100500"), "update_rate --rate")
    assert len(history()) == 2


# --- check_payments -----------------------------------------------------------------------------------------------


def check_payments() -> list[str]:
    out = io.StringIO()
    call_command("check_payments", stdout=out)
    return out.getvalue().split()


@pytest.mark.django_db
def test_check_payments_twice_credits_once_and_the_second_run_has_nothing_to_do(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    chain.pay(payment.address, "0.001")
    chain.mine()

    assert check_payments() == ["checked=1", "credited=1", "backend_errors=0"]
    assert check_payments() == ["checked=0", "credited=0", "backend_errors=0"]
    assert_credited_once(payment, "100")


@pytest.mark.django_db
def test_check_payments_counts_what_the_backend_could_not_answer_and_exits_normally(
    node: ChainServer, chain: Chain, buyer: User, settings: Settings
) -> None:
    settings.BITCOIN_BACKEND_TIMEOUT = 0.3
    make_payment(buyer)
    make_payment(buyer)
    node.failure = Failure.UNAVAILABLE

    assert check_payments() == ["checked=0", "credited=0", "backend_errors=2"]


# --- processes against a live server ------------------------------------------------------------------------------


def _log_in(http: httpx.Client) -> str:
    """Log in like a browser wallet: sign the EIP-4361 challenge, get a session token."""
    wallet = Account.create()
    address = "ait1" + wallet.address[2:].lower()
    challenge = http.post("/v1/users/challenge", json={"address": address}).json()
    signed = Account.sign_message(encode_defunct(text=challenge["message"]), private_key=wallet.key)
    login = http.post(
        "/v1/users/login",
        json={"address": address, "nonce": challenge["nonce"], "signature": "0x" + bytes(signed.signature).hex()},
    )
    assert login.status_code == 200, login.text
    return login.json()["token"]


def _backend_env(server: ChainServer) -> dict[str, str]:
    if isinstance(server, EsploraServer):
        return {"BITCOIN_BACKEND": "esplora", "ESPLORA_URL": server.url}
    assert isinstance(server, BitcoindServer)
    return {"BITCOIN_BACKEND": "bitcoind", "BITCOIND_RPC_URL": server.rpc_url()}


def _run_check_payments(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), "check_payments"],
        env=env, cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.live
@pytest.mark.parametrize("backend", ["esplora", "bitcoind"])
def test_check_payments_processes_racing_status_reads_of_a_live_server_credit_a_payment_once(
    live_database_url: str, tmp_path: Path, chain: Chain, request: pytest.FixtureRequest, backend: str
) -> None:
    server: ChainServer = request.getfixturevalue(backend)
    env = live_env(
        live_database_url,
        BITCOIN_XPUB=BIP84_ZPUB,
        BITCOIN_ADDRESS="",
        BITCOIN_BACKEND_TIMEOUT="120",
        PAYMENT_CHECK_INTERVAL="0",
        **_backend_env(server),
    )
    with live_server(env=env, log_path=tmp_path / "gunicorn.log", workers=2) as live:
        with httpx.Client(base_url=live.url, timeout=150) as http:
            http.headers["X-Session-Token"] = _log_in(http)
            created = http.post("/v1/exchange/create-payment", json={"btc_amount": "0.001"})
            assert created.status_code == 201, created.text
            payment = created.json()
            chain.pay(payment["address"], "0.001")
            chain.mine()
            # Two cron runs and two status reads (each of which checks: PAYMENT_CHECK_INTERVAL=0) read the chain at
            # the same moment, in four processes (two gunicorn workers), then race to credit.
            server.gate(4)
            processes = [_run_check_payments(env) for _ in range(2)]
            reads: list[httpx.Response] = []

            def read() -> None:
                with httpx.Client(base_url=live.url, timeout=150, headers=http.headers) as own:
                    reads.append(own.get(f"/v1/exchange/payment-status/{payment['id']}"))

            readers = [threading.Thread(target=read) for _ in range(2)]
            for thread in readers:
                thread.start()
            outputs = [process.communicate(timeout=150) for process in processes]
            for thread in readers:
                thread.join(timeout=150)

            log = (tmp_path / "gunicorn.log").read_text()[-3000:]
            assert [process.returncode for process in processes] == [0, 0], outputs
            assert server.gate_opened, ("the four checks should have read the chain at the same moment", outputs, log)
            assert [response.status_code for response in reads] == [200, 200], ([r.text for r in reads], log)
            credited_by_cron = sum(int(out.split("credited=")[1].split()[0]) for out, _ in outputs)
            assert credited_by_cron <= 1
            final = http.get(f"/v1/exchange/payment-status/{payment['id']}").json()
            assert (final["status"], final["credited_aitbc"]) == ("confirmed", "100.00000000")
            me = http.get("/v1/users/me").json()
            assert me["balance"]["available"] == "100.00000000"
            ledger = http.get("/v1/users/me/ledger").json()["results"]
            assert [(entry["kind"], entry["amount"], entry["reference"]) for entry in ledger] == [
                ("deposit", "100.00000000", f"exchange-payment:{payment['id']}")
            ]

        again = _run_check_payments(env)
        out, err = again.communicate(timeout=150)
        assert again.returncode == 0, err
        assert out.split() == ["checked=0", "credited=0", "backend_errors=0"]
