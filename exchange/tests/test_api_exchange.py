"""HTTP contract of the exchange: /v1/exchange/rate, …/create-payment, …/payment-status/{id}, …/payments and
…/payments/{id}/qr.svg, with the authentication matrix and the validation of amounts."""

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from accounts.models import User, UserSession
from aitbc_site.testing import assert_api_error, run_concurrently
from exchange import services
from exchange.models import ExchangeRate, Payment
from exchange.tests.chain_servers import Chain, ChainServer
from exchange.tests.factories import (
    BIP84_RECEIVE_0,
    BIP84_RECEIVE_1,
    BIP84_ZPUB,
    SHARED_ADDRESS,
    age,
    assert_credited_once,
    make_payment,
    session_api,
)
from exchange.wallet import receive_address

pytestmark = pytest.mark.django_db

RATE = "/v1/exchange/rate"
CREATE = "/v1/exchange/create-payment"
PAYMENTS = "/v1/exchange/payments"
PAYMENT_FIELDS = {
    "id", "status", "btc_amount", "aitbc_amount", "rate", "address", "payment_uri", "expires_at", "created_at",
    "confirmations", "required_confirmations", "txid", "received_btc", "credited_aitbc",
}


def status_url(payment_id: object) -> str:
    return f"/v1/exchange/payment-status/{payment_id}"


def qr_url(payment_id: object) -> str:
    return f"/v1/exchange/payments/{payment_id}/qr.svg"


def create(api: APIClient, **body: Any) -> Any:
    return api.post(CREATE, body, format="json")


def created(api: APIClient, **body: Any) -> dict[str, Any]:
    response = create(api, **body)
    assert response.status_code == 201, response.content
    return response.json()


# --- the rate -----------------------------------------------------------------------------------------------------


def test_the_rate_is_public_and_starts_from_btc_to_aitbc_rate(anonymous_api: APIClient) -> None:
    response = anonymous_api.get(RATE)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"btc_to_aitbc", "updated_at"}
    assert body["btc_to_aitbc"] == "100000.00000000"
    assert parse_datetime(body["updated_at"]) == ExchangeRate.objects.get().created_at


def test_the_rate_is_the_newest_one_set(anonymous_api: APIClient) -> None:
    services.rate_set(btc_to_aitbc=Decimal("105000.5"), source="test")

    assert anonymous_api.get(RATE).json()["btc_to_aitbc"] == "105000.50000000"


# --- authentication -----------------------------------------------------------------------------------------------

SOME_ID = str(uuid.uuid4())
SESSION_ENDPOINTS = [
    ("post", CREATE),
    ("get", status_url(SOME_ID)),
    ("get", PAYMENTS),
    ("get", qr_url(SOME_ID)),
]
ENDPOINT_IDS = [f"{method.upper()} {path.replace(SOME_ID, '{id}')}" for method, path in SESSION_ENDPOINTS]


def call(api: APIClient, method: str, path: str) -> Any:
    if method == "post":
        return api.post(path, {"btc_amount": "0.001"}, format="json")
    return api.get(path)


@pytest.mark.parametrize(("method", "path"), SESSION_ENDPOINTS, ids=ENDPOINT_IDS)
def test_without_a_session_it_is_401_authentication_required(
    anonymous_api: APIClient, method: str, path: str
) -> None:
    response = call(anonymous_api, method, path)

    assert_api_error(response, status=401, code="AUTHENTICATION_REQUIRED")
    assert response["WWW-Authenticate"] == "X-Session-Token"


@pytest.mark.parametrize(("method", "path"), SESSION_ENDPOINTS, ids=ENDPOINT_IDS)
def test_an_api_key_is_not_a_session(client_api: APIClient, method: str, path: str) -> None:
    assert_api_error(call(client_api, method, path), status=401, code="AUTHENTICATION_REQUIRED")


@pytest.mark.parametrize(("method", "path"), SESSION_ENDPOINTS, ids=ENDPOINT_IDS)
def test_an_unknown_or_expired_session_is_401_invalid_session(
    buyer_api: APIClient, method: str, path: str
) -> None:
    unknown = APIClient()
    unknown.credentials(HTTP_X_SESSION_TOKEN="made-up")
    assert_api_error(call(unknown, method, path), status=401, code="INVALID_SESSION")

    UserSession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_api_error(call(buyer_api, method, path), status=401, code="INVALID_SESSION")
    assert not Payment.objects.exists()


# --- creating a payment -------------------------------------------------------------------------------------------


def test_a_payment_for_aitbc_asks_for_the_btc_rounded_up_to_the_satoshi_at_a_rate_locked_until_expiry(
    buyer_api: APIClient, buyer: User, settings: Settings
) -> None:
    settings.BTC_TO_AITBC_RATE = Decimal("30000")

    body = created(buyer_api, aitbc_amount="1")

    assert set(body) == PAYMENT_FIELDS
    payment = Payment.objects.get()
    assert (payment.user, str(payment.pk)) == (buyer, body["id"])
    assert body | {"id": None, "created_at": None, "expires_at": None} == {
        "id": None,
        "status": "pending",
        "btc_amount": "0.00003334",
        "aitbc_amount": "1.00000000",
        "rate": "30000.00000000",
        "address": BIP84_RECEIVE_0,
        "payment_uri": f"bitcoin:{BIP84_RECEIVE_0}?amount=0.00003334&label=AITBC%20payment%20{payment.pk}",
        "created_at": None,
        "expires_at": None,
        "confirmations": 0,
        "required_confirmations": 1,
        "txid": None,
        "received_btc": "0.00000000",
        "credited_aitbc": None,
    }
    created_at, expires_at = parse_datetime(body["created_at"]), parse_datetime(body["expires_at"])
    assert created_at is not None and expires_at is not None
    assert expires_at - created_at == timedelta(seconds=900)
    assert abs(created_at - timezone.now()) < timedelta(seconds=10)


def test_a_payment_for_btc_buys_the_aitbc_rounded_down(buyer_api: APIClient, settings: Settings) -> None:
    settings.BTC_TO_AITBC_RATE = Decimal("33333.33333333")

    body = created(buyer_api, btc_amount="0.00001")

    assert (body["btc_amount"], body["aitbc_amount"]) == ("0.00001000", "0.33333333")
    assert body["payment_uri"].startswith(f"bitcoin:{BIP84_RECEIVE_0}?amount=0.00001&")


def test_a_large_payment_asks_for_the_large_payment_confirmations(buyer_api: APIClient) -> None:
    assert created(buyer_api, btc_amount="0.5")["required_confirmations"] == 3


def test_every_payment_gets_the_next_receive_address_never_one_used_before(
    buyer_api: APIClient, other_buyer_api: APIClient
) -> None:
    addresses = [created(api, btc_amount="0.001")["address"] for api in (buyer_api, other_buyer_api, buyer_api)]

    assert addresses == [BIP84_RECEIVE_0, BIP84_RECEIVE_1, receive_address(BIP84_ZPUB, 2)]
    assert list(Payment.objects.order_by("derivation_index").values_list("derivation_index", flat=True)) == [0, 1, 2]


def test_an_expired_payment_does_not_give_its_address_to_the_next(buyer_api: APIClient, buyer: User) -> None:
    first = make_payment(buyer)
    services.payment_expire_by_operator(payment=first, operator="carol")

    assert created(buyer_api, btc_amount="0.001")["address"] == BIP84_RECEIVE_1


def test_on_the_shared_address_payments_of_one_amount_ask_for_different_amounts(
    buyer_api: APIClient, other_buyer_api: APIClient, settings: Settings
) -> None:
    settings.BITCOIN_XPUB = ""
    settings.BITCOIN_ADDRESS = SHARED_ADDRESS

    bodies = [created(api, btc_amount="0.001") for api in (buyer_api, other_buyer_api)]

    assert [body["address"] for body in bodies] == [SHARED_ADDRESS, SHARED_ADDRESS]
    assert [body["btc_amount"] for body in bodies] == ["0.00100001", "0.00100002"]
    assert [body["payment_uri"].split("?")[1].split("&")[0] for body in bodies] == [
        "amount=0.00100001",
        "amount=0.00100002",
    ]


@pytest.mark.parametrize("body", [{}, {"aitbc_amount": "1", "btc_amount": "0.001"}], ids=["neither", "both"])
def test_exactly_one_of_aitbc_amount_and_btc_amount_is_required(buyer_api: APIClient, body: dict[str, str]) -> None:
    assert_api_error(create(buyer_api, **body), status=400, code="VALIDATION_ERROR")
    assert not Payment.objects.exists()


NOT_AMOUNTS = {
    "negative": "-0.001",
    "zero": "0",
    "zero with decimals": "0.00000000",
    "nine decimals": "0.000100001",
    "non-numeric": "abc",
    "exponent": "1e-3",
    "empty": "",
    "padded": " 0.001",
    "comma": "0,001",
    "NaN": "NaN",
    "Infinity": "Infinity",
    "a JSON number": 0.001,
    "a JSON integer": 1,
    "null": None,
    "a list": ["0.001"],
}


@pytest.mark.parametrize("field", ["aitbc_amount", "btc_amount"])
@pytest.mark.parametrize("amount", NOT_AMOUNTS.values(), ids=NOT_AMOUNTS.keys())
def test_an_amount_that_is_not_a_positive_decimal_string_with_at_most_8_places_is_400(
    buyer_api: APIClient, field: str, amount: object
) -> None:
    error = assert_api_error(create(buyer_api, **{field: amount}), status=400, code="VALIDATION_ERROR")

    assert field in error["details"]
    assert not Payment.objects.exists()


def test_an_unknown_field_is_400(buyer_api: APIClient) -> None:
    error = assert_api_error(create(buyer_api, btc_amount="0.001", currency="EUR"), status=400, code="VALIDATION_ERROR")

    assert "currency" in error["details"]


OUT_OF_RANGE = {
    "btc below EXCHANGE_MIN_BTC": {"btc_amount": "0.00000999"},
    "btc above EXCHANGE_MAX_BTC": {"btc_amount": "1.00000001"},
    "aitbc worth less than EXCHANGE_MIN_BTC": {"aitbc_amount": "0.999"},
    "aitbc worth more than EXCHANGE_MAX_BTC": {"aitbc_amount": "100000.00000001"},
    # The largest the fields take: beyond Decimal's 28 digits once rounded to 8 places (a 500 the fuzzer found).
    "btc of 16 integer digits": {"btc_amount": "1803989005087099"},
    "aitbc of 16 integer digits": {"aitbc_amount": "9999999999999999.99999999"},
}


@pytest.mark.parametrize("body", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_an_amount_outside_the_exchange_limits_is_400_amount_out_of_range(
    buyer_api: APIClient, body: dict[str, str]
) -> None:
    assert_api_error(create(buyer_api, **body), status=400, code="AMOUNT_OUT_OF_RANGE")
    assert not Payment.objects.exists()


@pytest.mark.parametrize("body", [{"btc_amount": "0.00001"}, {"btc_amount": "1"}, {"aitbc_amount": "100000"}])
def test_the_exchange_limits_themselves_are_accepted(buyer_api: APIClient, body: dict[str, str]) -> None:
    created(buyer_api, **body)


def test_without_bitcoin_xpub_or_bitcoin_address_the_exchange_is_503_disabled(
    buyer_api: APIClient, anonymous_api: APIClient, settings: Settings
) -> None:
    settings.BITCOIN_XPUB = ""
    settings.BITCOIN_ADDRESS = ""

    assert_api_error(create(buyer_api, btc_amount="0.001"), status=503, code="EXCHANGE_DISABLED")
    assert not Payment.objects.exists()
    assert anonymous_api.get(RATE).status_code == 200


# --- reading payments ---------------------------------------------------------------------------------------------


def test_the_owner_reads_a_payment_as_it_was_created(buyer_api: APIClient) -> None:
    body = created(buyer_api, btc_amount="0.001")

    response = buyer_api.get(status_url(body["id"]))

    assert response.status_code == 200
    assert response.json() == body


@pytest.mark.parametrize("payment_id", ["another user's", str(uuid.uuid4()), "not-a-uuid"])
def test_a_payment_that_is_not_the_callers_is_404_payment_not_found(
    buyer_api: APIClient, other_buyer: User, payment_id: str
) -> None:
    others = make_payment(other_buyer)
    wanted = others.pk if payment_id == "another user's" else payment_id

    assert_api_error(buyer_api.get(status_url(wanted)), status=404, code="PAYMENT_NOT_FOUND")
    assert_api_error(buyer_api.get(qr_url(wanted)), status=404, code="PAYMENT_NOT_FOUND")


def test_the_list_holds_the_callers_own_payments_newest_first(
    buyer_api: APIClient, buyer: User, other_buyer: User
) -> None:
    oldest, middle, newest = (make_payment(buyer) for _ in range(3))
    make_payment(other_buyer)
    age(oldest, seconds=20)
    age(middle, seconds=10)

    response = buyer_api.get(PAYMENTS)

    assert response.status_code == 200
    body = response.json()
    assert [payment["id"] for payment in body["results"]] == [str(newest.pk), str(middle.pk), str(oldest.pk)]
    assert all(set(payment) == PAYMENT_FIELDS for payment in body["results"])
    assert body["next"] is None


def test_the_list_of_a_user_without_payments_is_empty(other_buyer_api: APIClient, buyer: User) -> None:
    make_payment(buyer)

    assert other_buyer_api.get(PAYMENTS).json()["results"] == []


def test_the_qr_code_is_an_svg_of_the_payment_uri(buyer_api: APIClient) -> None:
    body = created(buyer_api, btc_amount="0.001")

    response = buyer_api.get(qr_url(body["id"]))

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    svg = response.content.decode()
    assert svg.startswith("<?xml") and "<svg" in svg and svg.rstrip().endswith("</svg>")
    assert "<title>Bitcoin payment</title>" in svg


# --- payment-status looks at the chain itself ---------------------------------------------------------------------


def test_payment_status_checks_an_open_payment_at_most_once_per_payment_check_interval(
    node: ChainServer, chain: Chain, buyer_api: APIClient
) -> None:
    body = created(buyer_api, btc_amount="0.001")
    asked = len(node.requests)
    assert buyer_api.get(status_url(body["id"])).json()["status"] == "pending"
    assert len(node.requests) > asked

    chain.pay(body["address"], "0.001")
    chain.mine()
    asked = len(node.requests)
    assert buyer_api.get(status_url(body["id"])).json()["status"] == "pending"
    assert len(node.requests) == asked

    Payment.objects.update(last_checked_at=F("last_checked_at") - timedelta(seconds=31))
    read = buyer_api.get(status_url(body["id"])).json()
    assert (read["status"], read["confirmations"], read["credited_aitbc"]) == ("confirmed", 1, "100.00000000")
    assert_credited_once(Payment.objects.get(), "100")

    asked = len(node.requests)
    buyer_api.get(status_url(body["id"]))
    assert len(node.requests) == asked, "a confirmed payment is no longer watched"


def test_with_payment_check_interval_0_every_read_checks_an_open_payment(
    node: ChainServer, chain: Chain, buyer_api: APIClient, settings: Settings
) -> None:
    settings.PAYMENT_CHECK_INTERVAL = 0
    body = created(buyer_api, btc_amount="0.001")
    buyer_api.get(status_url(body["id"]))

    chain.pay(body["address"], "0.001")
    read = buyer_api.get(status_url(body["id"])).json()

    assert (read["status"], read["txid"], read["received_btc"]) == ("confirming", chain.transactions_to(
        body["address"])[0].txid, "0.00100000")


def test_payment_status_answers_the_stored_payment_while_the_backend_is_down(
    node: ChainServer, chain: Chain, buyer_api: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = created(buyer_api, btc_amount="0.001")
    chain.pay(body["address"], "0.001")
    chain.mine()
    node.stop()

    response = buyer_api.get(status_url(body["id"]))

    assert response.status_code == 200
    assert response.json() == body
    assert any("not refreshed" in record.getMessage() for record in caplog.records if record.levelname == "WARNING")


def test_a_status_read_shows_what_arrived_so_far_on_a_payment_not_yet_paid_in_full(
    node: ChainServer, chain: Chain, buyer_api: APIClient, settings: Settings
) -> None:
    settings.PAYMENT_CHECK_INTERVAL = 0
    body = created(buyer_api, btc_amount="0.001")
    chain.pay(body["address"], "0.0004")
    chain.mine()

    read = buyer_api.get(status_url(body["id"])).json()

    assert (read["status"], read["received_btc"], read["confirmations"]) == ("pending", "0.00040000", 1)


# --- payment-status racing the crediting --------------------------------------------------------------------------


def test_a_status_check_that_loses_the_credit_race_answers_the_credited_payment(
    node: ChainServer, chain: Chain, buyer: User
) -> None:
    payment = make_payment(buyer, btc="0.001")
    chain.pay(payment.address, "0.001")
    chain.mine()
    # The read loaded the payment while it was pending; a check_payments run credits it before the read's own check.
    read_by_the_status_request = Payment.objects.get(pk=payment.pk)
    services.check_open_payments()

    answered = services.payment_refresh_if_stale(payment=read_by_the_status_request)

    assert (answered.status, answered.credited_aitbc, answered.watching) == ("confirmed", Decimal("100"), False)
    assert_credited_once(payment, "100")


@pytest.mark.django_db(transaction=True)
def test_concurrent_status_reads_racing_to_credit_all_answer_the_credited_payment(
    node: ChainServer, chain: Chain, buyer: User, buyer_api: APIClient, settings: Settings
) -> None:
    settings.PAYMENT_CHECK_INTERVAL = 0
    settings.BITCOIN_BACKEND_TIMEOUT = 120
    body = created(buyer_api, btc_amount="0.001")
    chain.pay(body["address"], "0.001")
    chain.mine()
    # Both reads load the pending payment and read the chain at the same moment, then race to credit it.
    node.gate(2)
    reads: list[Any] = []
    readers = [session_api(buyer) for _ in range(2)]

    run_concurrently(*[lambda api=api: reads.append(api.get(status_url(body["id"]))) for api in readers])

    assert node.gate_opened
    assert [response.status_code for response in reads] == [200, 200]
    assert [(r.json()["status"], r.json()["credited_aitbc"]) for r in reads] == [("confirmed", "100.00000000")] * 2
    assert_credited_once(Payment.objects.get(), "100")


NOT_ASCII = {
    "arabic-indic btc": {"btc_amount": "0.\u0660\u0660\u0661"},
    "fullwidth btc": {"btc_amount": "\uff11"},
    "arabic-indic aitbc": {"aitbc_amount": "\u0661\u0660\u0660"},
}


@pytest.mark.parametrize("body", NOT_ASCII.values(), ids=NOT_ASCII.keys())
def test_an_amount_in_other_than_ascii_digits_is_400_validation_error(
    buyer_api: APIClient, body: dict[str, str]
) -> None:
    error = assert_api_error(create(buyer_api, **body), status=400, code="VALIDATION_ERROR")

    assert set(error["details"]) == set(body)
    assert not Payment.objects.exists()


def test_a_payment_buying_beyond_the_largest_amount_is_400_amount_out_of_range(
    buyer_api: APIClient, settings: Settings
) -> None:
    # At 10¹⁰ AITBC per BTC (the largest rate), 1.00000001 BTC buys more than the largest amount.
    settings.EXCHANGE_MAX_BTC = Decimal("2")
    ExchangeRate.objects.create(btc_to_aitbc=Decimal("10000000000"), source="test", created_at=timezone.now())

    error = assert_api_error(create(buyer_api, btc_amount="1.00000001"), status=400, code="AMOUNT_OUT_OF_RANGE")

    assert error["details"]["field"] == "aitbc_amount"
    assert not Payment.objects.exists()
    created(buyer_api, btc_amount="1")
