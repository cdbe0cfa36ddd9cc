"""The largest amounts through the API and the ledger: a price of 10¹⁰ AITBC is held, paid out and read back exactly;
one unit more anywhere an amount is taken is 400 AMOUNT_OUT_OF_RANGE; digits other than ASCII are 400
VALIDATION_ERROR."""

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts import ledger
from accounts.models import Posting
from accounts.selectors import ledger_problems
from aitbc_site.amounts import MAX_AMOUNT
from aitbc_site.env import parse_job_prices
from aitbc_site.testing import assert_api_error
from conftest import post_result
from jobs.models import Job
from jobs.tests.test_billing import (
    MINER_WALLET,
    balances,
    platform_fees,
    set_price,
    start_paid_job,
    submit,
    wallet_client,
    wallet_user,
)

LARGEST = "10000000000.00000000"
JUST_ABOVE = "10000000000.00000001"
NOT_ASCII = {
    "arabic-indic one": "\u0661",
    "arabic-indic in a decimal": "\u0661\u0662.5",
    "fullwidth one": "\uff11",
    "devanagari three after a one": "1\u0969",
    "extended arabic-indic in the places": "0.0000000\u06f1",
}


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.JOB_PRICES = {"llm_inference": Decimal("2.5")}
    settings.PLATFORM_FEE_RATE = Decimal("0.05")


@pytest.fixture(autouse=True)
def _books_stay_sound(db: None) -> Any:
    yield
    assert ledger_problems() == []


def test_a_price_of_the_largest_amount_is_held_paid_and_read_back_exactly(
    db: None, miner_api: APIClient, admin_api: APIClient
) -> None:
    set_price("llm_inference", LARGEST)
    user, api = wallet_client(deposit=LARGEST)

    job, miner = start_paid_job(api, miner_api, max_price=LARGEST)

    assert job["price"] == LARGEST
    assert balances(user) == (Decimal("0"), MAX_AMOUNT)
    held = admin_api.get(f"/v1/users/{user.pk}/balance").json()
    assert (held["available"], held["held"]) == ("0.00000000", LARGEST)

    assert post_result(miner_api, miner["id"], job["id"]).status_code == 200

    assert balances(user) == (Decimal("0"), Decimal("0"))
    assert platform_fees() == Decimal("500000000")
    earner = wallet_user(MINER_WALLET)
    assert earner is not None and balances(earner) == (Decimal("9500000000"), Decimal("0"))
    capture = Posting.objects.get(reference=f"job:{job['id']}:capture")
    assert sorted(capture.entries.values_list("amount", flat=True)) == [
        -MAX_AMOUNT, Decimal("500000000"), Decimal("9500000000"),
    ]


@pytest.mark.parametrize("max_price", [JUST_ABOVE, "-" + JUST_ABOVE, "99999999999999999", "1" * 32])
def test_a_max_price_beyond_the_largest_amount_is_400_amount_out_of_range(db: None, max_price: str) -> None:
    user, api = wallet_client(deposit="10")

    error = assert_api_error(submit(api, max_price=max_price), status=400, code="AMOUNT_OUT_OF_RANGE")

    assert error["details"] == {"field": "max_price", "value": str(Decimal(max_price)), "max": LARGEST}
    assert not Job.objects.exists()
    assert balances(user) == (Decimal("10"), Decimal("0"))


@pytest.mark.parametrize("max_price", NOT_ASCII.values(), ids=NOT_ASCII.keys())
def test_a_max_price_in_other_than_ascii_digits_is_400_validation_error(db: None, max_price: str) -> None:
    _, api = wallet_client(deposit="10")

    error = assert_api_error(submit(api, max_price=max_price), status=400, code="VALIDATION_ERROR")

    assert "max_price" in error["details"]
    assert not Job.objects.exists()


def test_a_hold_that_would_take_the_held_balance_beyond_the_largest_amount_is_refused(db: None) -> None:
    set_price("llm_inference", LARGEST)
    user, api = wallet_client(deposit=LARGEST)
    assert submit(api).status_code == 201
    # Topped up again while the first price is still held: the second hold would pass the largest amount.
    ledger.deposit(user_id=user.pk, amount=MAX_AMOUNT, reference="deposit:again", memo="bought")

    error = assert_api_error(submit(api), status=400, code="AMOUNT_OUT_OF_RANGE")

    assert error["details"]["account"] == "held"
    assert Job.objects.count() == 1
    assert balances(user) == (MAX_AMOUNT, MAX_AMOUNT)
    assert Posting.objects.filter(reference__endswith=":hold").count() == 1


@pytest.mark.parametrize("prices", ['{"llm_inference": "\u0661"}', f'{{"llm_inference": "{JUST_ABOVE}"}}'])
def test_job_prices_from_the_environment_take_ascii_digits_up_to_the_largest_amount(prices: str) -> None:
    assert parse_job_prices(f'{{"llm_inference": "{LARGEST}"}}') == {"llm_inference": MAX_AMOUNT}
    with pytest.raises(ValueError, match=r"decimal string|prices must be from 0 to 10000000000\.00000000"):
        parse_job_prices(prices)
