"""Watching the chain and crediting each payment exactly once. Every scenario runs twice, against an Esplora server and
against a bitcoind server (the `node` fixture), both real HTTP on 127.0.0.1 serving one in-memory chain."""

import io
import logging
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts import ledger
from accounts.models import User
from aitbc_site.amounts import MAX_AMOUNT
from aitbc_site.testing import run_concurrently
from exchange import services
from exchange.exceptions import ChainUnavailable, InvalidPaymentState
from exchange.models import PAYMENT_TRANSITIONS, ExchangeRate, Payment, PaymentStatus
from exchange.tests.chain_servers import BitcoindServer, Chain, ChainServer, Failure
from exchange.tests.factories import (
    SHARED_ADDRESS,
    age,
    age_past_expiry,
    assert_credited_once,
    assert_nothing_credited,
    available,
    check,
    deposits_of,
    make_payment,
)

pytestmark = pytest.mark.django_db


# --- the happy path -----------------------------------------------------------------------------------------------


def test_an_exact_payment_is_confirming_in_the_mempool_and_confirmed_and_credited_once_when_mined(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    assert check(payment).status == PaymentStatus.PENDING

    txid = chain.pay(payment.address, "0.001")
    check(payment)
    assert (payment.status, payment.txid, payment.vout, payment.confirmations) == ("confirming", txid, 1, 0)
    assert payment.received_btc == Decimal("0.001")
    assert_nothing_credited(payment)

    chain.mine()
    check(payment)
    assert (payment.status, payment.confirmations, payment.watching) == ("confirmed", 1, False)
    assert_credited_once(payment, "100")

    chain.mine(5)
    check(payment)
    assert_credited_once(payment, "100")


def test_a_payment_waits_for_bitcoin_min_confirmations(
    node: ChainServer, chain: Chain, buyer: User, settings: Settings
) -> None:
    settings.BITCOIN_MIN_CONFIRMATIONS = 2
    payment = make_payment(buyer, btc="0.001")
    assert payment.required_confirmations == 2
    chain.pay(payment.address, "0.001")
    chain.mine()

    check(payment)
    assert (payment.status, payment.confirmations) == ("confirming", 1)

    chain.mine()
    check(payment)
    assert_credited_once(payment, "100")


def test_an_exact_payment_credits_the_aitbc_asked_for_although_its_btc_was_rounded_up(
    node: ChainServer, chain: Chain, buyer: User, settings: Settings
) -> None:
    settings.BTC_TO_AITBC_RATE = Decimal("30000")
    payment = make_payment(buyer, aitbc="1")
    # 1 / 30000 = 0.0000333…, rounded up to the satoshi.
    assert payment.btc_amount == Decimal("0.00003334")
    chain.pay(payment.address, "0.00003334")
    chain.mine()

    check(payment)

    assert_credited_once(payment, "1")


# --- less, more, late ---------------------------------------------------------------------------------------------


def test_an_underpayment_is_held_as_underpaid_at_expiry_and_credits_nothing(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    chain.pay(payment.address, "0.0009")
    chain.mine(3)

    check(payment)
    assert (payment.status, payment.received_btc) == ("pending", Decimal("0.0009"))

    age_past_expiry(payment)
    check(payment)
    assert (payment.status, payment.received_btc, payment.watching) == ("underpaid", Decimal("0.0009"), False)
    assert_nothing_credited(payment)

    check(payment)
    assert payment.status == "underpaid"
    assert_nothing_credited(payment)


def test_an_overpayment_is_credited_in_full_at_the_rate_locked_when_it_was_asked_for(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    services.rate_set(btc_to_aitbc=Decimal("110000"), source="test")
    chain.pay(payment.address, "0.0015")
    chain.mine()

    check(payment)

    assert payment.rate == Decimal("100000")
    assert payment.received_btc == Decimal("0.0015")
    assert_credited_once(payment, "150")


def test_a_payment_arriving_after_expiry_within_the_late_grace_is_credited_at_the_locked_rate(
    node: ChainServer, chain: Chain, buyer: User, settings: Settings
) -> None:
    payment = make_payment(buyer, btc="0.001")
    age_past_expiry(payment)
    assert check(payment).status == "expired"
    assert payment.watching is True
    services.rate_set(btc_to_aitbc=Decimal("90000"), source="test")

    age(payment, seconds=settings.PAYMENT_LATE_GRACE_SECONDS - 60)
    chain.pay(payment.address, "0.001")
    assert check(payment).status == "confirming"
    chain.mine()
    check(payment)

    assert_credited_once(payment, "100")


def test_a_payment_arriving_after_the_late_grace_needs_review_and_credits_nothing(
    node: ChainServer, chain: Chain, buyer: User, settings: Settings
) -> None:
    payment = make_payment(buyer, btc="0.001")
    age_past_expiry(payment)
    assert check(payment).status == "expired"

    age(payment, seconds=settings.PAYMENT_LATE_GRACE_SECONDS)
    chain.pay(payment.address, "0.001")
    chain.mine()
    check(payment)

    assert (payment.status, payment.watching, payment.received_btc) == ("needs_review", False, Decimal("0.001"))
    assert "late" in payment.note
    assert_nothing_credited(payment)


def test_an_unpaid_payment_expires_and_is_no_longer_watched_once_the_late_grace_is_over(
    node: ChainServer, chain: Chain, buyer: User, settings: Settings
) -> None:
    payment = make_payment(buyer, btc="0.001")
    age_past_expiry(payment)
    check(payment)
    age(payment, seconds=settings.PAYMENT_LATE_GRACE_SECONDS)
    check(payment)
    assert (payment.status, payment.watching) == ("expired", False)

    chain.pay(payment.address, "0.001")
    chain.mine()
    asked = len(node.requests)
    check(payment)

    assert len(node.requests) == asked
    assert payment.status == "expired"
    assert_nothing_credited(payment)


# --- several transactions, large amounts --------------------------------------------------------------------------


def test_two_transactions_to_one_address_that_together_pay_the_amount_are_credited_once(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    chain.pay(payment.address, "0.0004")
    chain.mine()
    assert check(payment).status == "pending"
    assert payment.received_btc == Decimal("0.0004")

    chain.pay(payment.address, "0.0006")
    assert check(payment).status == "confirming"
    chain.mine()
    check(payment)

    assert payment.received_btc == Decimal("0.001")
    assert_credited_once(payment, "100")


def test_a_large_payment_waits_for_the_large_payment_confirmations(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    large = make_payment(buyer, btc="0.2")
    at_the_threshold = make_payment(buyer, btc="0.1")
    assert (large.required_confirmations, at_the_threshold.required_confirmations) == (3, 1)
    chain.pay(large.address, "0.2")
    chain.mine(2)

    check(large)
    assert (large.status, large.confirmations) == ("confirming", 2)

    chain.mine()
    check(large)
    assert_credited_once(large, "20000")


def test_an_overpayment_above_the_large_payment_threshold_waits_for_the_large_payment_confirmations(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    chain.pay(payment.address, "0.5")
    chain.mine(2)

    check(payment)
    assert (payment.status, payment.required_confirmations) == ("confirming", 3)

    chain.mine()
    check(payment)
    assert_credited_once(payment, "50000")


# --- the shared BITCOIN_ADDRESS -----------------------------------------------------------------------------------


@pytest.fixture
def shared_address(settings: Settings) -> str:
    settings.BITCOIN_XPUB = ""
    settings.BITCOIN_ADDRESS = SHARED_ADDRESS
    return SHARED_ADDRESS


def test_on_the_shared_address_each_open_payment_asks_for_a_few_satoshi_more_than_the_others(
    node: ChainServer, shared_address: str, buyer: User, other_buyer: User
) -> None:
    payments = [make_payment(buyer, btc="0.001"), make_payment(other_buyer, btc="0.001"), make_payment(buyer)]

    assert [payment.address for payment in payments] == [shared_address] * 3
    assert [payment.derivation_index for payment in payments] == [None] * 3
    assert [payment.btc_amount for payment in payments] == [
        Decimal("0.00100001"),
        Decimal("0.00100002"),
        Decimal("0.00100003"),
    ]
    # The satoshi added are a tip to the operator: the AITBC asked for is what the base amount buys.
    assert {payment.aitbc_amount for payment in payments} == {Decimal("100")}


def test_on_the_shared_address_a_payment_is_matched_by_its_exact_amount(
    node: ChainServer, chain: Chain, shared_address: str, buyer: User, other_buyer: User
) -> None:
    first = make_payment(buyer, btc="0.001")
    second = make_payment(other_buyer, btc="0.001")
    chain.pay(shared_address, "0.001")  # the amount before the satoshi were added matches no payment
    chain.pay(shared_address, second.btc_amount)
    chain.mine()

    check(first)
    check(second)

    assert (first.status, first.received_btc) == ("pending", 0)
    assert_nothing_credited(first)
    assert_credited_once(second, "100")


def test_on_the_shared_address_an_output_credited_once_is_never_credited_to_a_later_payment_of_the_same_amount(
    node: ChainServer, chain: Chain, shared_address: str, buyer: User, other_buyer: User, settings: Settings
) -> None:
    first = make_payment(buyer, btc="0.001")
    chain.pay(shared_address, first.btc_amount)
    chain.mine()
    assert_credited_once(check(first), "100")

    # Once the first is older than its expiry and late grace, its amount is free again for the next payment of 0.001,
    # while its transaction is still recent enough to pass for the next one's.
    age(first, seconds=settings.PAYMENT_EXPIRY_SECONDS + settings.PAYMENT_LATE_GRACE_SECONDS)
    second = make_payment(other_buyer, btc="0.001")
    assert second.btc_amount == first.btc_amount
    check(second)
    assert (second.status, second.received_btc) == ("pending", 0)
    assert_nothing_credited(second)

    chain.pay(shared_address, second.btc_amount)
    chain.mine()
    assert_credited_once(check(second), "100")
    assert second.txid != first.txid
    assert_credited_once(first, "100")


def test_on_the_shared_address_a_payment_paid_twice_is_credited_once_and_the_second_pays_no_later_payment(
    node: ChainServer, chain: Chain, shared_address: str, buyer: User, other_buyer: User
) -> None:
    first = make_payment(buyer, btc="0.001")
    chain.pay(shared_address, first.btc_amount)
    chain.pay(shared_address, first.btc_amount)
    chain.mine()
    assert_credited_once(check(first), "100")

    second = make_payment(other_buyer, btc="0.001")
    assert second.btc_amount != first.btc_amount
    check(second)

    assert second.status == "pending"
    assert_nothing_credited(second)
    assert_credited_once(first, "100")


def test_on_the_shared_address_a_payment_is_found_under_more_than_a_page_of_later_payments(
    node: ChainServer, chain: Chain, shared_address: str, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    chain.pay(shared_address, payment.btc_amount)
    chain.mine()
    for _ in range(30):
        chain.pay(shared_address, "0.002")
        chain.mine()

    assert_credited_once(check(payment), "100")


def test_on_the_shared_address_a_transaction_mined_before_the_payment_was_asked_for_does_not_count(
    node: ChainServer, chain: Chain, shared_address: str, buyer: User
) -> None:
    chain.pay(shared_address, "0.00100001")
    chain.mine(at=time.time() - 3 * 3600)
    chain.mine(18)

    payment = make_payment(buyer, btc="0.001")
    assert payment.btc_amount == Decimal("0.00100001")
    check(payment)

    assert payment.status == "pending"
    assert_nothing_credited(payment)


# --- the backend failing ------------------------------------------------------------------------------------------


def _refuse_connections(server: ChainServer) -> Callable[[], None]:
    server.stop()
    return server.start


def _fail_with(failure: Failure) -> Callable[[ChainServer], Callable[[], None]]:
    def fail(server: ChainServer) -> Callable[[], None]:
        server.failure = failure

        def recover() -> None:
            server.failure = Failure.NONE

        return recover

    return fail


OUTAGES = {
    "connection refused": _refuse_connections,
    "HTTP 503": _fail_with(Failure.UNAVAILABLE),
    "an HTML page": _fail_with(Failure.NOT_JSON),
    "JSON of the wrong shape": _fail_with(Failure.WRONG_SHAPE),
    "no answer within the timeout": _fail_with(Failure.HANG),
}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


@pytest.mark.parametrize("outage", OUTAGES.values(), ids=OUTAGES.keys())
def test_while_the_backend_fails_nothing_changes_a_warning_is_logged_and_a_later_check_catches_up(
    node: ChainServer,
    chain: Chain,
    buyer: User,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    outage: Callable[[ChainServer], Callable[[], None]],
) -> None:
    settings.BITCOIN_BACKEND_TIMEOUT = 0.3
    payment = make_payment(buyer, btc="0.001")
    chain.pay(payment.address, "0.001")
    chain.mine()
    # Past expiry too: an outage must not be mistaken for "nothing arrived".
    age_past_expiry(payment)
    before = Payment.objects.values().get(pk=payment.pk)
    recover = outage(node)

    with caplog.at_level(logging.WARNING, logger="exchange"):
        counts = services.check_open_payments()

    assert counts == {"checked": 0, "credited": 0, "backend_errors": 1}
    assert Payment.objects.values().get(pk=payment.pk) == before
    assert_nothing_credited(payment)
    [warning] = _warnings(caplog)
    assert str(payment.pk) in warning and "chain backend failed" in warning

    recover()
    check(payment)
    assert_credited_once(payment, "100")


def test_a_payment_whose_address_bitcoind_could_not_import_yet_is_imported_and_credited_at_its_first_check(
    bitcoind_node: BitcoindServer, chain: Chain, buyer: User, caplog: pytest.LogCaptureFixture
) -> None:
    bitcoind_node.failing_methods = {"importdescriptors"}

    with caplog.at_level(logging.WARNING, logger="exchange"):
        payment = make_payment(buyer, btc="0.001")
    assert payment.status == "pending"
    assert any(payment.address in warning for warning in _warnings(caplog))

    bitcoind_node.failing_methods = set()
    chain.pay(payment.address, "0.001")
    chain.mine()
    check(payment)

    assert chain.watched_addresses() == [payment.address]
    assert_credited_once(payment, "100")


def test_while_the_backend_is_down_no_payment_is_asked_for_and_no_receive_index_is_used_up(
    node: ChainServer, buyer: User, caplog: pytest.LogCaptureFixture
) -> None:
    node.stop()

    with caplog.at_level(logging.WARNING, logger="exchange"), pytest.raises(ChainUnavailable):
        make_payment(buyer, btc="0.001")

    assert Payment.objects.count() == 0
    assert any("no payment issued" in warning for warning in _warnings(caplog))
    node.start()
    assert make_payment(buyer, btc="0.001").derivation_index == 0


def test_a_payment_mined_while_bitcoind_was_down_for_hours_is_found_once_it_is_back(
    bitcoind_node: BitcoindServer, chain: Chain, buyer: User
) -> None:
    bitcoind_node.failing_methods = {"importdescriptors"}
    payment = make_payment(buyer, btc="0.001")
    # Asked for five hours ago and paid ten minutes later; thirty blocks since, the node answering again only now.
    bitcoind_node.failure = Failure.UNAVAILABLE
    age(payment, seconds=5 * 3600)
    chain.pay(payment.address, "0.001")
    chain.mine(at=time.time() - 5 * 3600 + 600)
    chain.mine(29)
    bitcoind_node.failure = Failure.NONE
    bitcoind_node.failing_methods = set()

    check(payment)

    assert payment.confirmations == 30
    assert_credited_once(payment, "100")


def test_bitcoind_imports_a_descriptor_for_each_new_derived_address(
    bitcoind_node: BitcoindServer, chain: Chain, buyer: User
) -> None:

    payments = [make_payment(buyer) for _ in range(3)]

    assert chain.watched_addresses() == [payment.address for payment in payments]
    assert len(set(chain.watched_addresses())) == 3
    assert [entry.descriptor.split("#")[0] for entry in chain.imports] == [f"addr({p.address})" for p in payments]


# --- a transaction replaced in the mempool ------------------------------------------------------------------------


def test_a_confirming_payment_whose_transaction_left_the_mempool_expires_and_is_still_watched_within_the_grace(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    txid = chain.pay(payment.address, "0.001")
    assert check(payment).status == "confirming"
    chain.drop(txid)

    age_past_expiry(payment)
    check(payment)
    assert (payment.status, payment.watching, payment.received_btc, payment.txid) == ("expired", True, 0, None)

    chain.pay(payment.address, "0.001")
    chain.mine()
    check(payment)
    assert_credited_once(payment, "100")


def test_a_confirming_payment_whose_transaction_was_replaced_by_a_smaller_one_is_underpaid_at_expiry(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    txid = chain.pay(payment.address, "0.001")
    assert check(payment).status == "confirming"
    chain.drop(txid)
    chain.pay(payment.address, "0.0005")
    chain.mine()

    age_past_expiry(payment)
    check(payment)

    assert (payment.status, payment.received_btc) == ("underpaid", Decimal("0.0005"))
    assert_nothing_credited(payment)


# --- concurrent checks --------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_check_payments_runs_credit_a_payment_exactly_once(
    node: ChainServer, chain: Chain, buyer: User, settings: Settings
) -> None:
    settings.BITCOIN_BACKEND_TIMEOUT = 120
    payments = [make_payment(buyer, btc="0.001"), make_payment(buyer, btc="0.002")]
    for payment in payments:
        chain.pay(payment.address, payment.btc_amount)
    chain.mine()
    # All four runs read the first payment's outputs at the same moment, then race to credit it.
    node.gate(4)

    run_concurrently(*[lambda: call_command("check_payments", stdout=io.StringIO())] * 4)

    assert node.gate_opened, "the four runs should have read the chain at the same moment"
    assert [len(deposits_of(payment)) for payment in payments] == [1, 1]
    assert available(buyer) == Decimal("300")
    for payment in payments:
        payment.refresh_from_db()
        assert payment.status == "confirmed"


# --- the manual backend and operators -----------------------------------------------------------------------------


def test_with_the_manual_backend_nothing_is_read_from_a_chain_and_an_unpaid_payment_expires(buyer: User) -> None:
    payment = make_payment(buyer)
    assert check(payment).status == "pending"

    age_past_expiry(payment)

    assert check(payment).status == "expired"


def test_an_operator_confirms_a_payment_once(buyer: User) -> None:
    payment = make_payment(buyer, btc="0.001")

    services.payment_confirm_by_operator(payment=payment, operator="carol")

    assert_credited_once(payment, "100")
    assert "carol" in payment.note
    with pytest.raises(InvalidPaymentState):
        services.payment_confirm_by_operator(payment=Payment.objects.get(pk=payment.pk), operator="carol")
    assert_credited_once(payment, "100")


def test_an_operator_resolving_an_underpayment_credits_what_arrived_at_the_locked_rate(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    chain.pay(payment.address, "0.0009")
    chain.mine()
    age_past_expiry(payment)
    assert check(payment).status == "underpaid"

    services.payment_confirm_by_operator(payment=payment, operator="carol", received_btc=payment.received_btc)

    assert_credited_once(payment, "90")


def test_an_operator_closes_a_payment_held_for_review_without_crediting_it(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    chain.pay(payment.address, "0.0001")
    chain.mine()
    age_past_expiry(payment)
    assert check(payment).status == "underpaid"

    services.payment_expire_by_operator(payment=payment, operator="carol")

    assert (payment.status, payment.watching) == ("expired", False)
    assert_nothing_credited(payment)
    with pytest.raises(InvalidPaymentState):
        services.payment_expire_by_operator(payment=payment, operator="carol")


def test_a_confirmed_payment_is_final_and_nothing_goes_back_to_pending() -> None:
    assert {new for old, new in PAYMENT_TRANSITIONS if old == PaymentStatus.CONFIRMED} == set()
    assert {old for old, new in PAYMENT_TRANSITIONS if new == PaymentStatus.PENDING} == set()


def test_a_credit_beyond_the_largest_balance_is_noted_for_an_operator_and_the_others_go_on(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    ledger.deposit(user_id=buyer.pk, amount=MAX_AMOUNT - 50, reference="deposit:earlier", memo="bought")
    full, fits = make_payment(buyer, btc="0.001"), make_payment(buyer, btc="0.0005")
    chain.pay(full.address, "0.001")
    chain.pay(fits.address, "0.0005")
    chain.mine()

    counts = services.check_open_payments()

    full.refresh_from_db()
    assert (full.status, full.credited_aitbc, full.watching) == ("pending", None, True)
    assert full.note.startswith("not credited: The available balance would go beyond the largest amount")
    assert full.received_btc == Decimal("0.001")
    assert deposits_of(full) == []
    fits.refresh_from_db()
    assert (fits.status, fits.credited_aitbc) == ("confirmed", Decimal("50"))
    assert available(buyer) == MAX_AMOUNT
    assert counts["checked"] == 2


def test_an_overpayment_whose_credit_the_column_could_not_hold_is_noted_not_a_crash(
    node: ChainServer, chain: Chain, buyer: User, settings: Settings
) -> None:
    # At the largest rate, 10 BTC buys 10¹¹ AITBC: beyond the largest amount and beyond what the column holds.
    settings.EXCHANGE_MAX_BTC = Decimal("1")
    ExchangeRate.objects.create(btc_to_aitbc=MAX_AMOUNT, source="test", created_at=timezone.now())
    payment, other = make_payment(buyer, btc="0.5"), make_payment(buyer, btc="0.00001")
    chain.pay(payment.address, "10")
    chain.pay(other.address, "0.00001")
    chain.mine(blocks=settings.BITCOIN_LARGE_PAYMENT_CONFIRMATIONS)

    counts = services.check_open_payments()

    payment.refresh_from_db()
    assert (payment.status, payment.credited_aitbc, payment.watching) == ("pending", None, True)
    assert payment.note.startswith("not credited: The credited_aitbc is beyond the largest amount")
    assert deposits_of(payment) == []
    assert Payment.objects.get(pk=other.pk).status == "confirmed"
    assert counts["checked"] == 2
