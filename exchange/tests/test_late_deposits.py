"""Bitcoin that reaches a payment's address after the payment was closed (credited, expired, held for review) is
never credited by itself and never lost: it is recorded once as a late deposit, shown to operators, counted in
/metrics, and resolved by an operator with a reason. Every chain scenario runs against Esplora and bitcoind."""

import io
import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db.models import F
from django.test import Client
from pytest_django.fixtures import Settings

from accounts.models import Posting, PostingKind, User
from aitbc_site.testing import run_concurrently
from aitbc_site.tests.test_admin import changelist, logged_changes, messages_of, run_action
from exchange import services
from exchange.exceptions import InvalidPaymentState
from exchange.models import LateDeposit, LateDepositStatus, Payment
from exchange.services.late_deposits import late_deposit_close, late_deposit_credit
from exchange.tests.chain_servers import Chain, ChainServer
from exchange.tests.factories import (
    SHARED_ADDRESS,
    age,
    age_past_expiry,
    assert_credited_once,
    assert_nothing_credited,
    available,
    check,
    make_payment,
)

pytestmark = pytest.mark.django_db


def due(payment: Payment) -> Payment:
    """As if the closed payment's address was last looked at longer ago than the deposit watch interval."""
    Payment.objects.filter(pk=payment.pk).update(
        last_checked_at=F("last_checked_at") - services.DEPOSIT_WATCH_INTERVAL - timedelta(seconds=1)
    )
    payment.refresh_from_db()
    return payment


def check_closed(payment: Payment) -> Payment:
    return check(due(payment))


def credited_payment(chain: Chain, buyer: User) -> Payment:
    payment = make_payment(buyer, btc="0.001")
    chain.pay(payment.address, "0.001")
    chain.mine()
    assert_credited_once(check(payment), "100")
    return payment


def test_bitcoin_sent_again_to_a_credited_payments_address_is_recorded_once_as_a_late_deposit(
    node: ChainServer, chain: Chain, buyer: User, caplog: pytest.LogCaptureFixture
) -> None:
    payment = credited_payment(chain, buyer)
    assert payment.deposit_watch_until is not None
    txid = chain.pay(payment.address, "0.0005")
    chain.mine()

    with caplog.at_level(logging.WARNING, logger="exchange"):
        check_closed(payment)
        check_closed(payment)

    [deposit] = LateDeposit.objects.all()
    assert (deposit.payment, deposit.txid, deposit.vout, deposit.amount_btc, deposit.status) == (
        payment, txid, 1, Decimal("0.0005"), "open"
    )
    assert deposit.block_height == chain.tip_height
    assert_credited_once(payment, "100")
    warnings = [record.getMessage() for record in caplog.records if "late deposit" in record.getMessage()]
    assert len(warnings) == 1 and txid in warnings[0] and str(payment.pk) in warnings[0]


def test_a_late_transaction_still_in_the_mempool_is_recorded_once_it_is_confirmed(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = credited_payment(chain, buyer)
    chain.pay(payment.address, "0.0005")

    check_closed(payment)
    assert LateDeposit.objects.count() == 0

    chain.mine()
    check_closed(payment)
    assert LateDeposit.objects.get().confirmations == 1


def test_a_closed_payments_address_is_looked_at_once_per_deposit_watch_interval(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = credited_payment(chain, buyer)
    chain.pay(payment.address, "0.0005")
    chain.mine()

    asked = len(node.requests)
    check(payment)
    assert (len(node.requests), LateDeposit.objects.count()) == (asked, 0)

    check_closed(payment)
    assert LateDeposit.objects.count() == 1


def test_bitcoin_reaching_an_expired_and_closed_payment_is_a_late_deposit_and_credits_nothing(
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
    check_closed(payment)

    assert payment.status == "expired"
    assert LateDeposit.objects.get().amount_btc == Decimal("0.001")
    assert_nothing_credited(payment)


def test_the_deposit_watch_ends_after_payment_deposit_watch_seconds(
    node: ChainServer, chain: Chain, buyer: User, settings: Settings
) -> None:
    payment = credited_payment(chain, buyer)
    age(payment, seconds=settings.PAYMENT_DEPOSIT_WATCH_SECONDS)
    check(payment)
    assert payment.deposit_watch_until is None

    chain.pay(payment.address, "0.0005")
    chain.mine()
    asked = len(node.requests)
    check_closed(payment)

    assert len(node.requests) == asked
    assert LateDeposit.objects.count() == 0


def test_on_the_shared_address_a_second_output_of_a_credited_payments_amount_is_its_late_deposit(
    node: ChainServer, chain: Chain, buyer: User, other_buyer: User, settings: Settings
) -> None:
    settings.BITCOIN_XPUB, settings.BITCOIN_ADDRESS = "", SHARED_ADDRESS
    first = make_payment(buyer, btc="0.001")
    chain.pay(SHARED_ADDRESS, first.btc_amount)
    chain.mine()
    assert_credited_once(check(first), "100")
    second = make_payment(other_buyer, btc="0.001")
    again = chain.pay(SHARED_ADDRESS, first.btc_amount)
    chain.pay(SHARED_ADDRESS, "0.5")  # no payment's amount
    chain.mine()

    check_closed(first)

    [deposit] = LateDeposit.objects.all()
    assert (deposit.payment, deposit.txid) == (first, again)
    assert check(second).status == "pending"
    # The watch lasts while the amount is reserved: until it may be asked for again.
    reserved = settings.PAYMENT_EXPIRY_SECONDS + settings.PAYMENT_LATE_GRACE_SECONDS
    assert first.deposit_watch_until == first.created_at + timedelta(seconds=reserved)


@pytest.mark.django_db(transaction=True)
def test_concurrent_checks_record_a_late_deposit_once(
    node: ChainServer, chain: Chain, buyer: User, settings: Settings
) -> None:
    settings.BITCOIN_BACKEND_TIMEOUT = 120
    payment = credited_payment(chain, buyer)
    chain.pay(payment.address, "0.0005")
    chain.mine()
    due(payment)
    node.gate(3)

    run_concurrently(*[lambda: call_command("check_payments", stdout=io.StringIO())] * 3)

    assert node.gate_opened
    assert LateDeposit.objects.count() == 1


# --- operators ------------------------------------------------------------------------------------------------------


@pytest.fixture
def late_deposit(node: ChainServer, chain: Chain, buyer: User) -> LateDeposit:
    payment = credited_payment(chain, buyer)
    chain.pay(payment.address, "0.0005")
    chain.mine()
    check_closed(payment)
    return LateDeposit.objects.get()


def test_an_operator_credits_a_late_deposit_once_at_the_current_rate_with_a_reason(
    late_deposit: LateDeposit, buyer: User
) -> None:
    services.rate_set(btc_to_aitbc=Decimal("110000"), source="test")

    late_deposit_credit(deposit=late_deposit, operator="carol", reason="buyer topped up by mistake, asked to keep")

    late_deposit.refresh_from_db()
    assert (late_deposit.status, late_deposit.resolved_by, late_deposit.credited_aitbc) == (
        "credited", "carol", Decimal("55")
    )
    assert late_deposit.resolved_at is not None and "topped up" in late_deposit.resolution_note
    posting = Posting.objects.get(reference=f"exchange-late-deposit:{late_deposit.txid}:{late_deposit.vout}")
    assert posting.kind == PostingKind.DEPOSIT and "carol" in posting.memo and "topped up" in posting.memo
    assert available(buyer) == Decimal("155")
    with pytest.raises(InvalidPaymentState):
        late_deposit_credit(deposit=LateDeposit.objects.get(), operator="dave", reason="again")
    assert available(buyer) == Decimal("155")


def test_an_operator_marks_a_late_deposit_refunded_or_ignored_and_nothing_is_credited(
    late_deposit: LateDeposit, buyer: User
) -> None:
    with pytest.raises(InvalidPaymentState):
        late_deposit_close(deposit=late_deposit, operator="carol", reason=" ", status=LateDepositStatus.REFUNDED)

    late_deposit_close(deposit=late_deposit, operator="carol", reason="sent back in tx abc", status="refunded")

    late_deposit.refresh_from_db()
    assert (late_deposit.status, late_deposit.resolved_by, late_deposit.credited_aitbc) == ("refunded", "carol", None)
    assert available(buyer) == Decimal("100")
    with pytest.raises(InvalidPaymentState):
        late_deposit_close(deposit=late_deposit, operator="carol", reason="twice", status="ignored")


def test_the_admin_lists_late_deposits_and_resolves_them_with_the_reason_given(
    admin_client: Client, late_deposit: LateDeposit, buyer: User
) -> None:
    listing = admin_client.get(changelist(LateDeposit) + "?status__exact=open")
    assert listing.status_code == 200 and late_deposit.txid in listing.content.decode()
    assert admin_client.get(f"{changelist(LateDeposit)}{late_deposit.pk}/change/").status_code == 200
    payment_page = admin_client.get(f"{changelist(Payment)}{late_deposit.payment_id}/change/")
    assert late_deposit.txid in payment_page.content.decode()

    refused = run_action(admin_client, LateDeposit, "credit_deposits", [late_deposit])
    assert any("reason" in message for message in messages_of(refused))
    assert LateDeposit.objects.get().status == "open"

    response = admin_client.post(
        changelist(LateDeposit),
        {"action": "credit_deposits", "_selected_action": [str(late_deposit.pk)], "index": "0", "reason": "keep it"},
        follow=True,
    )

    assert response.status_code == 200
    late_deposit.refresh_from_db()
    resolution = (late_deposit.status, late_deposit.resolved_by, late_deposit.resolution_note)
    assert resolution == ("credited", "admin", "keep it")
    assert available(buyer) == Decimal("150")
    assert logged_changes(late_deposit) == ["Credited by operator admin."]


def test_metrics_count_the_unresolved_late_deposits(late_deposit: LateDeposit, client: Client) -> None:
    def gauge() -> str:
        lines = client.get("/metrics").content.decode().splitlines()
        return next(line for line in lines if line.startswith("payment_late_deposits_unresolved "))

    assert gauge() == "payment_late_deposits_unresolved 1.0"

    late_deposit_close(deposit=late_deposit, operator="carol", reason="dust", status="ignored")

    assert gauge() == "payment_late_deposits_unresolved 0.0"
