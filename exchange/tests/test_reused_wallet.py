"""A receiving wallet that was used before (a restored backup, a staging database sharing production's xpub): no
address with history on the chain is handed out, and nothing on the chain before a payment was asked for counts
toward it, judged by the tip height recorded with the payment, in both address modes and on both backends."""

import logging
import time
from decimal import Decimal

import pytest
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from accounts.models import User
from aitbc_site.testing import assert_api_error
from exchange import services
from exchange.models import Payment, SkippedAddress
from exchange.tests.chain_servers import BitcoindServer, Chain, ChainServer
from exchange.tests.factories import (
    BIP84_RECEIVE_0,
    BIP84_RECEIVE_1,
    BIP84_ZPUB,
    SHARED_ADDRESS,
    assert_credited_once,
    assert_nothing_credited,
    check,
    make_payment,
)
from exchange.wallet import receive_address

pytestmark = pytest.mark.django_db


def used_before(node: ChainServer, chain: Chain, *indexes: int) -> None:
    """What another database did with the same xpub: handed out these addresses (bitcoind's wallet imported them)
    and got paid on them."""
    for index in indexes:
        address = receive_address(BIP84_ZPUB, index)
        if isinstance(node, BitcoindServer):
            chain.import_descriptor(f"addr({address})", address, "now")
        chain.pay(address, "0.001")
    chain.mine()


def test_a_payment_records_the_tip_height_when_it_is_asked_for(node: ChainServer, chain: Chain, buyer: User) -> None:
    chain.mine(2)

    assert make_payment(buyer).chain_height == 850_002


def test_with_the_manual_backend_a_payment_has_no_tip_height(buyer: User) -> None:
    assert make_payment(buyer).chain_height is None


def test_an_address_the_chain_shows_history_for_is_skipped_said_so_in_the_log_and_never_asked_about_again(
    node: ChainServer, chain: Chain, buyer: User, caplog: pytest.LogCaptureFixture
) -> None:
    used_before(node, chain, 0)

    with caplog.at_level(logging.WARNING, logger="exchange"):
        payment = make_payment(buyer, btc="0.001")

    assert (payment.derivation_index, payment.address) == (1, BIP84_RECEIVE_1)
    assert list(SkippedAddress.objects.values_list("derivation_index", "address")) == [(0, BIP84_RECEIVE_0)]
    [warning] = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert "0/0" in warning and BIP84_RECEIVE_0 in warning
    # The old transaction to index 0 pays nobody, the new payment waits for its own bitcoin.
    assert check(payment).status == "pending"
    assert_nothing_credited(payment)

    asked = len(node.requests)
    assert make_payment(buyer).derivation_index == 2
    lookups = [request for request in node.requests[asked:] if BIP84_RECEIVE_0 in request]
    assert lookups == []


def test_a_long_used_prefix_advances_twenty_indexes_a_request_then_answers_503_no_fresh_address(
    node: ChainServer, chain: Chain, buyer_api: APIClient
) -> None:
    used_before(node, chain, *range(25))

    refused = buyer_api.post("/v1/exchange/create-payment", {"btc_amount": "0.001"}, format="json")

    error = assert_api_error(refused, status=503, code="NO_FRESH_ADDRESS")
    assert error["details"] == {"next_index": services.RECEIVE_INDEX_SCAN_LIMIT}
    assert Payment.objects.count() == 0
    created = buyer_api.post("/v1/exchange/create-payment", {"btc_amount": "0.001"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["address"] == receive_address(BIP84_ZPUB, 25)


def test_create_payment_while_the_backend_is_down_is_503_chain_unavailable(
    node: ChainServer, buyer_api: APIClient
) -> None:
    node.stop()

    response = buyer_api.post("/v1/exchange/create-payment", {"btc_amount": "0.001"}, format="json")

    assert_api_error(response, status=503, code="CHAIN_UNAVAILABLE")
    assert Payment.objects.count() == 0


def test_an_old_transaction_bitcoinds_import_rescan_finds_on_a_reused_address_never_counts(
    bitcoind_node: BitcoindServer, chain: Chain, buyer: User
) -> None:
    # Paid an hour before the request, in a block whose time is within the two hours the import rescans before it:
    # the wallet never knew the address, so it had no history to show, yet its import finds the old transaction.
    chain.pay(BIP84_RECEIVE_0, "0.001")
    chain.mine(at=time.time() - 3600)
    payment = make_payment(buyer, btc="0.001")
    assert payment.derivation_index == 0

    check(payment)
    assert (payment.status, payment.received_btc) == ("pending", 0)
    assert_nothing_credited(payment)

    chain.pay(payment.address, "0.001")
    chain.mine()
    assert_credited_once(check(payment), "100")


@pytest.fixture
def shared_address(settings: Settings) -> str:
    settings.BITCOIN_XPUB = ""
    settings.BITCOIN_ADDRESS = SHARED_ADDRESS
    return SHARED_ADDRESS


@pytest.mark.parametrize("hours_off", [-1.5, 1.5], ids=["stamped before", "stamped after"])
def test_on_the_shared_address_an_output_mined_before_the_request_never_counts_whatever_its_block_time(
    node: ChainServer, chain: Chain, shared_address: str, buyer: User, hours_off: float
) -> None:
    # Block times may be off by hours either way; the height says the block came before the request.
    chain.pay(shared_address, "0.00100001")
    chain.mine(at=time.time() + hours_off * 3600)

    payment = make_payment(buyer, btc="0.001")
    assert payment.btc_amount == Decimal("0.00100001")
    check(payment)

    assert (payment.status, payment.received_btc) == ("pending", 0)
    assert_nothing_credited(payment)
    chain.pay(shared_address, "0.00100001")
    chain.mine()
    assert_credited_once(check(payment), "100")


def test_outputs_in_the_mempool_or_mined_after_the_request_count_even_in_a_block_stamped_hours_before_it(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    chain.pay(payment.address, "0.0004")
    assert check(payment).received_btc == Decimal("0.0004")

    chain.pay(payment.address, "0.0006")
    chain.mine(at=time.time() - 1.5 * 3600)

    assert_credited_once(check(payment), "100")
