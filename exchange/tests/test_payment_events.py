"""Every status change of a payment, its creation included, is a stored event written in the change's transaction:
the payment's timeline in the admin, and what `aitbc_site.committed` hands to subscribers once it commits."""


import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from pytest_django.fixtures import Settings

from accounts import ledger
from accounts.models import User
from aitbc_site.amounts import MAX_AMOUNT
from aitbc_site.tests.test_admin import change_page
from exchange import services
from exchange.exceptions import InvalidPaymentState
from exchange.models import Payment, PaymentEvent, PaymentStatus
from exchange.services.transitions import move
from exchange.tests.chain_servers import Chain, EsploraServer
from exchange.tests.factories import age, age_past_expiry, check, make_payment

pytestmark = pytest.mark.django_db

BEFORE_EVENTS = "0003_late_deposits_and_chain_heights"


@pytest.fixture
def esplora_node(esplora: EsploraServer, exchange_settings: Settings) -> EsploraServer:
    """One chain backend is enough here: the events are written by the services, whatever backend read the chain."""
    exchange_settings.BITCOIN_BACKEND, exchange_settings.ESPLORA_URL = "esplora", esplora.url
    return esplora


def timeline(payment: Payment) -> list[tuple[str | None, str]]:
    return list(PaymentEvent.objects.filter(payment=payment).values_list("from_status", "to_status"))


# --- one event per change ----------------------------------------------------------------------------------------


def test_a_request_writes_one_creation_event_from_no_status(buyer: User) -> None:
    payment = make_payment(buyer, btc="0.001")

    [event] = PaymentEvent.objects.filter(payment=payment)
    assert (event.from_status, event.to_status, event.actor) == (None, PaymentStatus.PENDING, "buyer")
    assert event.at == payment.created_at
    assert event.reason == "0.00100000 BTC for 100.00000000 AITBC at 100000.00000000"


def test_a_payment_seen_then_mined_writes_confirming_then_confirmed_and_nothing_for_mere_progress(
    esplora_node: EsploraServer, chain: Chain, buyer: User, settings: Settings
) -> None:
    settings.BITCOIN_MIN_CONFIRMATIONS = 2
    payment = make_payment(buyer, btc="0.001")
    check(payment)
    assert timeline(payment) == [(None, "pending")]

    chain.pay(payment.address, "0.001")
    check(payment)
    chain.mine()
    check(payment)
    assert (payment.status, payment.confirmations) == ("confirming", 1)
    assert timeline(payment) == [(None, "pending"), ("pending", "confirming")]

    chain.mine()
    check(payment)
    check(payment)
    assert timeline(payment) == [(None, "pending"), ("pending", "confirming"), ("confirming", "confirmed")]
    confirmed = PaymentEvent.objects.get(payment=payment, to_status="confirmed")
    assert (confirmed.actor, confirmed.reason) == ("system", "credited 100.00000000 AITBC for 0.00100000 BTC")
    assert confirmed.at == payment.confirmed_at


def live_through(payment: Payment, steps: str, *, chain: Chain, settings: Settings) -> Payment:
    """Walk a payment through `steps`, each one of: pay (its 0.001 BTC reach its address), mine, check (one round of
    check_payments), expire (its deadline passes), grace (its late grace passes)."""
    actions = {
        "pay": lambda: chain.pay(payment.address, "0.001"),
        "mine": chain.mine,
        "check": lambda: check(payment),
        "expire": lambda: age_past_expiry(payment),
        "grace": lambda: age(payment, seconds=settings.PAYMENT_LATE_GRACE_SECONDS),
    }
    for step in steps.split():
        actions[step]()
    return payment


@pytest.mark.parametrize(
    ("steps", "changes"),
    [
        ("pay mine check", [("pending", "confirmed")]),
        ("expire check check grace check", [("pending", "expired")]),
        ("expire check grace pay mine check", [("pending", "expired"), ("expired", "needs_review")]),
    ],
    ids=["mined before its first check", "unpaid, then its late grace ends", "paid after its late grace"],
)
def test_each_change_writes_one_event_and_nothing_else_does(
    esplora_node: EsploraServer, chain: Chain, buyer: User, settings: Settings, steps: str, changes: list
) -> None:
    payment = live_through(make_payment(buyer, btc="0.001"), steps, chain=chain, settings=settings)

    assert timeline(payment) == [(None, "pending"), *changes]


def test_an_unpaid_payment_expires_as_the_system_saying_why(
    esplora_node: EsploraServer, chain: Chain, buyer: User, settings: Settings
) -> None:
    payment = live_through(make_payment(buyer, btc="0.001"), "expire check grace check", chain=chain, settings=settings)

    assert (payment.status, payment.watching) == ("expired", False)
    expired = PaymentEvent.objects.get(payment=payment, to_status="expired")
    assert (expired.actor, expired.reason) == ("system", "no bitcoin arrived before it expired")


def test_a_transaction_leaving_the_mempool_writes_expired_then_a_new_one_confirming_and_confirmed(
    esplora_node: EsploraServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    txid = chain.pay(payment.address, "0.001")
    check(payment)
    chain.drop(txid)
    age_past_expiry(payment)
    check(payment)
    chain.pay(payment.address, "0.001")
    check(payment)
    chain.mine()
    check(payment)

    assert timeline(payment) == [
        (None, "pending"),
        ("pending", "confirming"),
        ("confirming", "expired"),
        ("expired", "confirming"),
        ("confirming", "confirmed"),
    ]
    left = PaymentEvent.objects.get(payment=payment, from_status="confirming", to_status="expired")
    assert left.reason == "the transaction seen left the mempool and nothing replaced it by expiry"


def test_an_underpayment_writes_underpaid_at_expiry(esplora_node: EsploraServer, chain: Chain, buyer: User) -> None:
    payment = make_payment(buyer, btc="0.001")
    chain.pay(payment.address, "0.0009")
    chain.mine()
    check(payment)
    age_past_expiry(payment)
    check(payment)

    assert timeline(payment) == [(None, "pending"), ("pending", "underpaid")]
    underpaid = PaymentEvent.objects.get(payment=payment, to_status="underpaid")
    assert underpaid.reason == "0.00090000 of 0.00100000 BTC arrived by expiry"


def test_operators_confirming_and_expiring_write_one_event_each_naming_the_operator(buyer: User) -> None:
    confirmed, expired = make_payment(buyer, btc="0.001"), make_payment(buyer, btc="0.002")

    services.payment_confirm_by_operator(payment=confirmed, operator="carol")
    services.payment_expire_by_operator(payment=expired, operator="dave")

    assert timeline(confirmed) == [(None, "pending"), ("pending", "confirmed")]
    assert PaymentEvent.objects.get(payment=confirmed, to_status="confirmed").actor == "operator:carol"
    assert timeline(expired) == [(None, "pending"), ("pending", "expired")]
    event = PaymentEvent.objects.get(payment=expired, to_status="expired")
    assert (event.actor, event.reason) == ("operator:dave", "closed by an operator, nothing credited")


def test_a_refused_move_and_a_lost_compare_and_set_write_no_event(buyer: User) -> None:
    payment = make_payment(buyer, btc="0.001")
    stale = Payment.objects.get(pk=payment.pk)
    services.payment_confirm_by_operator(payment=payment, operator="carol")

    with pytest.raises(InvalidPaymentState):
        services.payment_expire_by_operator(payment=payment, operator="dave")
    assert not move(payment=stale, new=PaymentStatus.EXPIRED, now=stale.updated_at, actor="system", reason="late")

    assert timeline(payment) == [(None, "pending"), ("pending", "confirmed")]


# --- rolled back, committed --------------------------------------------------------------------------------------


def test_a_change_rolled_back_with_its_transaction_writes_no_event(buyer: User) -> None:
    payment = make_payment(buyer, btc="0.001")

    with pytest.raises(RuntimeError), transaction.atomic():
        services.payment_expire_by_operator(payment=payment, operator="dave")
        raise RuntimeError("something after the change fails")

    assert Payment.objects.get(pk=payment.pk).status == "pending"
    assert timeline(payment) == [(None, "pending")]


def test_a_credit_the_ledger_refuses_rolls_back_its_event_with_the_move(
    esplora_node: EsploraServer, chain: Chain, buyer: User
) -> None:
    ledger.deposit(user_id=buyer.pk, amount=MAX_AMOUNT - 50, reference="deposit:earlier", memo="bought")
    payment = make_payment(buyer, btc="0.001")
    chain.pay(payment.address, "0.001")
    chain.mine()

    check(payment)

    assert payment.status == "pending"
    assert timeline(payment) == [(None, "pending")]


@pytest.mark.django_db(transaction=True)
def test_a_subscriber_hears_each_event_once_its_transaction_commits_and_never_a_rolled_back_one(
    buyer: User, committed_batches: list[tuple[object, ...]]
) -> None:
    payment = make_payment(buyer, btc="0.001")
    [(created,)] = committed_batches
    assert isinstance(created, PaymentEvent) and created.to_status == "pending"

    with pytest.raises(RuntimeError), transaction.atomic():
        services.payment_expire_by_operator(payment=Payment.objects.get(pk=payment.pk), operator="dave")
        raise RuntimeError("rolled back")
    assert len(committed_batches) == 1

    with transaction.atomic():
        services.payment_confirm_by_operator(payment=payment, operator="carol")
        assert len(committed_batches) == 1
    [(confirmed,)] = committed_batches[1:]
    assert isinstance(confirmed, PaymentEvent)
    assert (confirmed.payment_id, confirmed.from_status, confirmed.to_status) == (payment.pk, "pending", "confirmed")
    assert PaymentEvent.objects.filter(pk=confirmed.pk).exists()


# --- the admin, the migration ------------------------------------------------------------------------------------


def test_the_payment_page_shows_its_timeline(admin_client: Client, buyer: User) -> None:
    payment = make_payment(buyer, btc="0.001")
    services.payment_expire_by_operator(payment=payment, operator="dave")

    page = admin_client.get(change_page(payment)).content.decode()

    assert "timeline" in page.lower()
    assert "closed by an operator, nothing credited" in page and "operator:dave" in page


@pytest.mark.django_db(transaction=True)
def test_the_events_migration_reverses_and_applies_again(buyer: User) -> None:
    payment = make_payment(buyer, btc="0.001")
    table = PaymentEvent._meta.db_table
    try:
        call_command("migrate", "exchange", BEFORE_EVENTS, verbosity=0)
        assert table not in connection.introspection.table_names()
        assert Payment.objects.filter(pk=payment.pk).exists()
    finally:
        call_command("migrate", "exchange", verbosity=0)
    assert table in connection.introspection.table_names()
    services.payment_expire_by_operator(payment=payment, operator="dave")
    assert timeline(payment) == [("pending", "expired")]

