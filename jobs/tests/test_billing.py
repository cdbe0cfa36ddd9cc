"""Paid jobs: the price is fixed and held at submission, paid out on completion (the platform's fee, the rest to the
miner's wallet), given back on any other end; service keys are not billed; /v1/job-types lists the prices."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from eth_utils import to_checksum_address
from rest_framework.test import APIClient

from accounts import ledger
from accounts.models import AccountKind, ApiKeyRole, LedgerAccount, Posting, PostingKind, User
from accounts.selectors import ledger_problems
from accounts.services import wallet_user_for
from aitbc_site.testing import assert_api_error
from conftest import api_with_key, issue_api, poll, post_result, register_miner, start_job, submit_job
from jobs.models import Job, JobStatus, JobTypePrice
from jobs.services.leases import recover_expired_leases
from jobs.services.maintenance import expire_overdue_jobs
from jobs.services.settlement import payment_for, settle
from jobs.services.transitions import transition
from miners.models import Miner
from receipts.services import Payment

JOBS = "/v1/client/jobs"
JOB_TYPES = "/v1/job-types"
CLIENT_WALLET = "ait1" + "c1" * 20
OTHER_CLIENT_WALLET = "ait1" + "c2" * 20
MINER_WALLET = "ait1" + "e7" * 20
MINER_WALLET_EIP55 = to_checksum_address("0x" + "e7" * 20)
FAILURE = {"code": "OOM", "message": "out of memory"}


@pytest.fixture(autouse=True)
def _prices(settings: Any) -> None:
    settings.JOB_PRICES = {"llm_inference": Decimal("2.5"), "embedding": Decimal("0.1")}
    settings.PLATFORM_FEE_RATE = Decimal("0.05")


def wallet_client(address: str = CLIENT_WALLET, deposit: str | None = "10") -> tuple[User, APIClient]:
    """A wallet user with `deposit` AITBC and a client key of their own (billed, unlike the conftest clients)."""
    user = wallet_user_for(address=address)
    if deposit is not None:
        ledger.deposit(user_id=user.pk, amount=Decimal(deposit), reference=f"deposit:{address}", memo="bought")
    return user, issue_api(ApiKeyRole.CLIENT, user=user, name="laptop")


def balances(user: User) -> tuple[Decimal, Decimal]:
    """(available, held)"""
    accounts = dict(LedgerAccount.objects.filter(user=user).values_list("kind", "balance"))
    return accounts.get(AccountKind.AVAILABLE, Decimal("0")), accounts.get(AccountKind.HELD, Decimal("0"))


def platform_fees() -> Decimal:
    account = LedgerAccount.objects.filter(user=None, kind=AccountKind.PLATFORM_FEES).first()
    return account.balance if account else Decimal("0")


def set_price(job_type: str, price: str) -> None:
    """What an operator's change of a job type's price in the admin stores."""
    JobTypePrice.objects.update_or_create(job_type=job_type, defaults={"price": Decimal(price)})


def submit(api: APIClient, **overrides: Any) -> Any:
    return api.post(JOBS, {"job_type": "llm_inference", "parameters": {"prompt": "hi"}, **overrides}, format="json")


def start_paid_job(
    client: APIClient, miner: APIClient, *, miner_address: str = MINER_WALLET, **job_overrides: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit a job and have a new miner paid to `miner_address` take it: (job as submitted, miner)."""
    registered = register_miner(miner, address=miner_address)
    job = submit_job(client, **job_overrides)
    assert [assignment["id"] for assignment in poll(miner, registered["id"])["results"]] == [job["id"]]
    return job, registered


def wallet_user(address: str) -> User | None:
    return User.objects.filter(wallet_address=address).first()


@pytest.fixture(autouse=True)
def _books_stay_sound(db: None) -> Any:
    yield
    assert ledger_problems() == []


# --- holding the price at submission ---------------------------------------------------------------------------


def test_submitting_with_a_users_client_key_holds_the_price(db: None) -> None:
    user, api = wallet_client(deposit="10")

    job = submit_job(api)

    stored = Job.objects.get(pk=job["id"])
    assert (stored.price, stored.billed) == (Decimal("2.5"), True)
    assert balances(user) == (Decimal("7.5"), Decimal("2.5"))
    assert Posting.objects.filter(reference=f"job:{job['id']}:hold", kind=PostingKind.JOB_HOLD).exists()


def test_the_job_shows_its_price(db: None) -> None:
    _, api = wallet_client()

    job = submit_job(api)

    assert job["price"] == "2.50000000"
    assert api.get(f"{JOBS}/{job['id']}").json()["price"] == "2.50000000"


def test_the_price_is_fixed_at_submission_when_the_operator_changes_it_later(db: None, miner_api: APIClient) -> None:
    user, api = wallet_client(deposit="10")
    job, miner = start_job(api, miner_api)
    set_price("llm_inference", "4")

    assert post_result(miner_api, miner["id"], job["id"]).status_code == 200

    assert Job.objects.get(pk=job["id"]).price == Decimal("2.5")
    assert balances(user) == (Decimal("7.5"), Decimal("0"))
    submit_job(api)
    assert balances(user) == (Decimal("3.5"), Decimal("4"))


def test_every_client_key_of_a_user_pays_from_the_same_balance(db: None) -> None:
    user, first = wallet_client(deposit="5")
    second = issue_api(ApiKeyRole.CLIENT, user=user, name="phone")

    submit_job(first)
    submit_job(second)

    assert balances(user) == (Decimal("0"), Decimal("5"))
    assert_api_error(submit(first), status=402, code="INSUFFICIENT_FUNDS")


def test_a_free_job_type_is_submitted_without_a_balance(db: None) -> None:
    set_price("embedding", "0")
    user, api = wallet_client(deposit=None)

    job = submit_job(api, job_type="embedding")

    assert Job.objects.get(pk=job["id"]).price == Decimal("0")
    assert balances(user) == (Decimal("0"), Decimal("0"))


# --- max_price and amounts -------------------------------------------------------------------------------------


def test_a_price_above_max_price_is_refused_and_creates_nothing(db: None) -> None:
    user, api = wallet_client(deposit="10")

    error = assert_api_error(submit(api, max_price="2.49999999"), status=400, code="PRICE_ABOVE_MAX")

    assert error["details"]["price"] in ("2.5", "2.50000000")
    assert not Job.objects.exists()
    assert balances(user) == (Decimal("10"), Decimal("0"))


@pytest.mark.parametrize("max_price", ["2.5", "2.50000000", "3", "1000000"])
def test_a_max_price_at_or_above_the_price_is_accepted(db: None, max_price: str) -> None:
    user, api = wallet_client(deposit="10")

    response = submit(api, max_price=max_price)

    assert response.status_code == 201, response.content
    assert balances(user) == (Decimal("7.5"), Decimal("2.5"))


@pytest.mark.parametrize(
    "max_price",
    [3, 2.5, "2.123456789", "abc", "1e3", "", " 3", "3.", ".5", "+3", "NaN", None, ["3"]],
    ids=[
        "integer number", "float number", "9 places", "not a number", "exponent", "empty", "leading space",
        "trailing point", "no integer part", "plus sign", "NaN", "null", "list",
    ],
)
def test_max_price_must_be_a_decimal_string_with_at_most_8_places(db: None, max_price: Any) -> None:
    user, api = wallet_client(deposit="10")

    error = assert_api_error(submit(api, max_price=max_price), status=400, code="VALIDATION_ERROR")

    assert "max_price" in error["details"]
    assert not Job.objects.exists()
    assert balances(user) == (Decimal("10"), Decimal("0"))


# --- insufficient funds ----------------------------------------------------------------------------------------


def test_without_enough_available_balance_it_is_402_and_no_job_is_created(db: None) -> None:
    user, api = wallet_client(deposit="2.49999999")

    assert_api_error(submit(api), status=402, code="INSUFFICIENT_FUNDS")

    assert not Job.objects.exists()
    assert balances(user) == (Decimal("2.49999999"), Decimal("0"))
    assert not Posting.objects.filter(kind=PostingKind.JOB_HOLD).exists()


def test_a_user_who_never_deposited_cannot_submit_a_paid_job(db: None) -> None:
    _, api = wallet_client(deposit=None)

    assert_api_error(submit(api), status=402, code="INSUFFICIENT_FUNDS")

    assert not Job.objects.exists()


def test_a_balance_of_exactly_the_price_pays_for_one_job_and_not_two(db: None) -> None:
    user, api = wallet_client(deposit="2.5")

    assert submit(api).status_code == 201
    assert_api_error(submit(api), status=402, code="INSUFFICIENT_FUNDS")

    assert Job.objects.count() == 1
    assert balances(user) == (Decimal("0"), Decimal("2.5"))


def test_a_refused_submission_with_an_idempotency_key_can_be_retried_after_a_deposit(db: None) -> None:
    user, api = wallet_client(deposit="1")
    headers = {"Idempotency-Key": "order-17"}
    body = {"job_type": "llm_inference", "parameters": {}}
    assert_api_error(api.post(JOBS, body, format="json", headers=headers), status=402, code="INSUFFICIENT_FUNDS")
    ledger.deposit(user_id=user.pk, amount=Decimal("2"), reference="deposit:more", memo="bought")

    response = api.post(JOBS, body, format="json", headers=headers)

    assert response.status_code == 201, response.content
    assert balances(user) == (Decimal("0.5"), Decimal("2.5"))


# --- completion pays the platform and the miner ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "rate", "fee", "earnings"),
    [
        ("2.5", "0.05", "0.125", "2.375"),
        ("1.23456789", "0.05", "0.06172839", "1.17283950"),  # 0.0617283945 rounds down
        ("0.00000019", "0.05", "0", "0.00000019"),  # the fee rounds down to nothing
        ("0.00000019", "0.1", "0.00000001", "0.00000018"),
        ("3", "0", "0", "3"),
        ("3", "1", "3", "0"),
    ],
)
def test_completion_pays_the_fee_rounded_down_to_the_platform_and_the_rest_to_the_miners_wallet(
    db: None, settings: Any, miner_api: APIClient, price: str, rate: str, fee: str, earnings: str
) -> None:
    settings.PLATFORM_FEE_RATE = Decimal(rate)
    set_price("llm_inference", price)
    user, api = wallet_client(deposit="10")
    job, miner = start_paid_job(api, miner_api)

    assert post_result(miner_api, miner["id"], job["id"]).status_code == 200

    assert balances(user) == (Decimal("10") - Decimal(price), Decimal("0"))
    assert platform_fees() == Decimal(fee)
    earner = wallet_user(MINER_WALLET)
    if Decimal(earnings):
        assert earner is not None and balances(earner) == (Decimal(earnings), Decimal("0"))
    capture = Posting.objects.get(reference=f"job:{job['id']}:capture")
    assert capture.kind == PostingKind.JOB_CAPTURE
    assert sum(capture.entries.values_list("amount", flat=True), Decimal("0")) == 0


def test_the_miners_wallet_user_is_created_the_first_time_it_earns(db: None, miner_api: APIClient) -> None:
    _, api = wallet_client(deposit="10")
    miner = register_miner(miner_api, address=MINER_WALLET_EIP55, max_concurrent_jobs=2)
    first, second = submit_job(api), submit_job(api)
    assert len(poll(miner_api, miner["id"], limit=2)["results"]) == 2
    assert wallet_user(MINER_WALLET) is None

    assert post_result(miner_api, miner["id"], first["id"]).status_code == 200

    earner = wallet_user(MINER_WALLET)
    assert earner is not None and not earner.is_service
    assert balances(earner) == (Decimal("2.375"), Decimal("0"))
    assert post_result(miner_api, miner["id"], second["id"]).status_code == 200
    assert User.objects.filter(wallet_address=MINER_WALLET).count() == 1
    assert balances(earner) == (Decimal("4.75"), Decimal("0"))


def test_earnings_go_to_the_wallet_the_miner_registered_with_not_to_the_owner_of_the_miner_key(db: None) -> None:
    owner, _ = wallet_client(OTHER_CLIENT_WALLET, deposit=None)
    miner_key = issue_api(ApiKeyRole.MINER, user=owner, name="rig")
    _, api = wallet_client(deposit="10")
    job, miner = start_paid_job(api, miner_key)

    post_result(miner_key, miner["id"], job["id"])

    assert balances(owner) == (Decimal("0"), Decimal("0"))
    earner = wallet_user(MINER_WALLET)
    assert earner is not None and balances(earner) == (Decimal("2.375"), Decimal("0"))


def test_a_miner_can_earn_into_the_wallet_of_the_client_that_paid(db: None, miner_api: APIClient) -> None:
    user, api = wallet_client(deposit="10")
    job, miner = start_paid_job(api, miner_api, miner_address=CLIENT_WALLET)

    post_result(miner_api, miner["id"], job["id"])

    assert balances(user) == (Decimal("9.875"), Decimal("0"))
    assert platform_fees() == Decimal("0.125")


def test_posting_the_same_result_again_pays_once(db: None, miner_api: APIClient) -> None:
    user, api = wallet_client(deposit="10")
    job, miner = start_paid_job(api, miner_api)
    assert post_result(miner_api, miner["id"], job["id"]).status_code == 200

    assert post_result(miner_api, miner["id"], job["id"]).status_code == 200

    assert balances(user) == (Decimal("7.5"), Decimal("0"))
    earner = wallet_user(MINER_WALLET)
    assert earner is not None and balances(earner) == (Decimal("2.375"), Decimal("0"))
    assert platform_fees() == Decimal("0.125")
    assert Posting.objects.filter(kind=PostingKind.JOB_CAPTURE).count() == 1


def test_a_miners_registration_address_must_be_a_wallet(miner_api: APIClient) -> None:
    response = miner_api.post(
        "/v1/miner/register", {"address": "miner-one", "capabilities": ["llm_inference"]}, format="json"
    )

    assert_api_error(response, status=400, code="INVALID_ADDRESS")


def test_the_miners_address_reads_in_its_canonical_spelling(miner_api: APIClient) -> None:
    miner = register_miner(miner_api, address=MINER_WALLET_EIP55)

    assert miner["address"] == MINER_WALLET
    assert Miner.objects.get(pk=miner["id"]).address == MINER_WALLET


# --- every other end gives the hold back -----------------------------------------------------------------------


def test_a_failure_releases_the_hold(db: None, miner_api: APIClient) -> None:
    user, api = wallet_client(deposit="10")
    job, miner = start_job(api, miner_api)

    response = post_result(
        miner_api, miner["id"], job["id"], status="failed", result=None, error=FAILURE, retryable=False
    )

    assert response.json()["job"]["status"] == "failed"
    assert balances(user) == (Decimal("10"), Decimal("0"))
    assert Posting.objects.filter(reference=f"job:{job['id']}:release", kind=PostingKind.JOB_RELEASE).exists()
    assert platform_fees() == Decimal("0")
    assert wallet_user(MINER_WALLET) is None


def test_a_retryable_failure_keeps_the_hold_while_the_job_waits_for_another_attempt(
    db: None, miner_api: APIClient
) -> None:
    user, api = wallet_client(deposit="10")
    job, miner = start_job(api, miner_api, max_attempts=2)

    response = post_result(miner_api, miner["id"], job["id"], status="failed", result=None, error=FAILURE)

    assert response.json()["job"]["status"] == "pending"
    assert balances(user) == (Decimal("7.5"), Decimal("2.5"))


def test_a_job_whose_last_lease_lapses_fails_and_releases_the_hold(db: None, miner_api: APIClient) -> None:
    user, api = wallet_client(deposit="10")
    job, _ = start_job(api, miner_api, max_attempts=1)
    Job.objects.filter(pk=job["id"]).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert recover_expired_leases(now=timezone.now()) == 1

    assert Job.objects.get(pk=job["id"]).status == JobStatus.FAILED
    assert balances(user) == (Decimal("10"), Decimal("0"))


def test_cancelling_a_pending_job_releases_the_hold(db: None) -> None:
    user, api = wallet_client(deposit="10")
    job = submit_job(api)

    assert api.post(f"{JOBS}/{job['id']}/cancel").status_code == 200

    assert balances(user) == (Decimal("10"), Decimal("0"))


def test_cancelling_a_running_job_releases_the_hold_and_its_result_pays_nobody(db: None, miner_api: APIClient) -> None:
    user, api = wallet_client(deposit="10")
    job, miner = start_job(api, miner_api)

    assert api.post(f"{JOBS}/{job['id']}/cancel").status_code == 200
    assert_api_error(post_result(miner_api, miner["id"], job["id"]), status=409, code="JOB_CANCELLED")

    assert balances(user) == (Decimal("10"), Decimal("0"))
    assert platform_fees() == Decimal("0")


def test_cancelling_twice_releases_once(db: None) -> None:
    user, api = wallet_client(deposit="10")
    job = submit_job(api)

    api.post(f"{JOBS}/{job['id']}/cancel")
    api.post(f"{JOBS}/{job['id']}/cancel")

    assert balances(user) == (Decimal("10"), Decimal("0"))
    assert Posting.objects.filter(kind=PostingKind.JOB_RELEASE).count() == 1


def test_expiry_releases_the_hold(db: None) -> None:
    user, api = wallet_client(deposit="10")
    job = submit_job(api, ttl_seconds=60)
    Job.objects.filter(pk=job["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert expire_overdue_jobs(now=timezone.now()) == 1

    assert Job.objects.get(pk=job["id"]).status == JobStatus.EXPIRED
    assert balances(user) == (Decimal("10"), Decimal("0"))


def test_cancelling_an_overdue_job_expires_it_and_releases_the_hold(db: None) -> None:
    user, api = wallet_client(deposit="10")
    job = submit_job(api, ttl_seconds=60)
    Job.objects.filter(pk=job["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert_api_error(api.post(f"{JOBS}/{job['id']}/cancel"), status=409, code="INVALID_JOB_STATE")

    assert Job.objects.get(pk=job["id"]).status == JobStatus.EXPIRED
    assert balances(user) == (Decimal("10"), Decimal("0"))


# --- jobs that are not billed ----------------------------------------------------------------------------------


def test_jobs_of_a_key_that_belongs_to_no_user_are_not_billed(client_api: APIClient, miner_api: APIClient) -> None:
    job, miner = start_paid_job(client_api, miner_api)

    response = post_result(miner_api, miner["id"], job["id"])

    stored = Job.objects.get(pk=job["id"])
    assert (stored.billed, stored.price) == (False, Decimal("2.5"))
    assert not Posting.objects.exists()
    assert wallet_user(MINER_WALLET) is None
    assert response.json()["receipt"]["miner_earnings"] == "0.00000000"


def test_jobs_of_an_api_keys_entry_are_not_billed(db: None, settings: Any) -> None:
    settings.API_KEYS = ["env-client-key-0123456789"]

    job = submit_job(api_with_key("env-client-key-0123456789"))

    assert Job.objects.get(pk=job["id"]).billed is False
    assert not Posting.objects.exists()


# --- GET /v1/job-types -----------------------------------------------------------------------------------------


def test_the_job_types_are_public_with_their_prices_from_job_prices(anonymous_api: APIClient, db: None) -> None:
    response = anonymous_api.get(JOB_TYPES)

    assert response.status_code == 200, response.content
    assert response.json() == {
        "results": [
            {"job_type": "llm_inference", "price": "2.50000000"},
            {"job_type": "image_generation", "price": "1.00000000"},
            {"job_type": "embedding", "price": "0.10000000"},
            {"job_type": "audio_transcription", "price": "1.00000000"},
            {"job_type": "fine_tuning", "price": "1.00000000"},
        ],
        "next": None,
        "previous": None,
    }


def test_the_job_types_default_to_1_aitbc_without_job_prices(anonymous_api: APIClient, db: None, settings: Any) -> None:
    settings.JOB_PRICES = {}

    prices = {row["job_type"]: row["price"] for row in anonymous_api.get(JOB_TYPES).json()["results"]}

    assert set(prices.values()) == {"1.00000000"}
    assert list(prices) == list(settings.JOB_TYPES)


def test_the_job_types_show_the_price_an_operator_set(anonymous_api: APIClient, db: None) -> None:
    anonymous_api.get(JOB_TYPES)
    set_price("llm_inference", "3.14159265")

    prices = {row["job_type"]: row["price"] for row in anonymous_api.get(JOB_TYPES).json()["results"]}

    assert prices["llm_inference"] == "3.14159265"
    assert prices["embedding"] == "0.10000000"


def test_a_submission_costs_the_price_the_job_types_list_shows(anonymous_api: APIClient, db: None) -> None:
    set_price("image_generation", "0.75")
    user, api = wallet_client(deposit="10")
    listed = {row["job_type"]: row["price"] for row in anonymous_api.get(JOB_TYPES).json()["results"]}

    submit_job(api, job_type="image_generation")

    assert balances(user)[1] == Decimal(listed["image_generation"]) == Decimal("0.75")


def test_the_job_types_ignore_credentials(db: None) -> None:
    assert api_with_key("not-a-key").get(JOB_TYPES).status_code == 200


# --- receipts --------------------------------------------------------------------------------------------------


def test_the_receipt_of_a_completed_job_carries_its_price_and_the_miners_earnings(
    db: None, miner_api: APIClient
) -> None:
    set_price("llm_inference", "1.23456789")
    _, api = wallet_client(deposit="10")
    job, miner = start_job(api, miner_api)

    receipt = post_result(miner_api, miner["id"], job["id"]).json()["receipt"]

    assert (receipt["price"], receipt["miner_earnings"]) == ("1.23456789", "1.17283950")
    listed = api.get(f"{JOBS}/{job['id']}/receipts").json()["results"]
    assert [(r["price"], r["miner_earnings"]) for r in listed] == [("1.23456789", "1.17283950")]


def test_the_receipt_of_a_failed_job_carries_its_price_and_no_earnings(db: None, miner_api: APIClient) -> None:
    _, api = wallet_client(deposit="10")
    job, miner = start_job(api, miner_api)

    response = post_result(
        miner_api, miner["id"], job["id"], status="failed", result=None, error=FAILURE, retryable=False
    )

    receipt = response.json()["receipt"]
    assert (receipt["price"], receipt["miner_earnings"]) == ("2.50000000", "0.00000000")


def test_the_receipts_payment_fields_are_signed(db: None, miner_api: APIClient) -> None:
    _, api = wallet_client(deposit="10")
    job, miner = start_job(api, miner_api)
    receipt = post_result(miner_api, miner["id"], job["id"]).json()["receipt"]

    forged = {**receipt, "miner_earnings": "100.00000000"}

    assert APIClient().post("/v1/receipts/verify", receipt, format="json").json()["valid"] is True
    assert APIClient().post("/v1/receipts/verify", forged, format="json").json()["valid"] is False


# --- who sees a user's jobs ------------------------------------------------------------------------------------


def test_every_client_key_of_a_user_sees_all_the_users_jobs(db: None) -> None:
    user, first = wallet_client(deposit="10")
    second = issue_api(ApiKeyRole.CLIENT, user=user, name="phone")
    by_first, by_second = submit_job(first), submit_job(second)

    assert by_first["client_id"] == by_second["client_id"] == str(user.pk)
    for api in (first, second):
        assert {job["id"] for job in api.get(JOBS).json()["results"]} == {by_first["id"], by_second["id"]}
        assert api.get(f"{JOBS}/{by_first['id']}").status_code == 200
        assert api.get(f"{JOBS}/{by_second['id']}").status_code == 200


def test_another_users_key_sees_none_of_them(db: None) -> None:
    _, api = wallet_client(deposit="10")
    _, other = wallet_client(OTHER_CLIENT_WALLET, deposit="10")
    job = submit_job(api)

    assert other.get(JOBS).json()["results"] == []
    assert_api_error(other.get(f"{JOBS}/{job['id']}"), status=404, code="JOB_NOT_FOUND")
    assert_api_error(other.post(f"{JOBS}/{job['id']}/cancel"), status=404, code="JOB_NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", JOBS), ("get", JOBS),
        ("post", "/v1/miner/register"), ("get", "/v1/miner/jobs"), ("post", "/v1/miner/result"),
    ],
)
def test_an_admin_key_on_client_or_miner_endpoints_is_permission_denied(
    admin_api: APIClient, method: str, path: str
) -> None:
    response = admin_api.post(path, {}, format="json") if method == "post" else admin_api.get(path)

    assert_api_error(response, status=403, code="PERMISSION_DENIED")


def test_an_admin_key_of_a_wallet_user_is_still_no_client_key(db: None) -> None:
    user, _ = wallet_client(deposit="10")
    admin = issue_api(ApiKeyRole.ADMIN, user=user, name="ops")

    assert_api_error(submit(admin), status=403, code="PERMISSION_DENIED")
    assert balances(user) == (Decimal("10"), Decimal("0"))


def test_a_status_change_alone_moves_no_money_settlement_does(db: None, miner_api: APIClient) -> None:
    """Settlement is an explicit step of every path that ends a job, not a side effect of changing its status."""
    user, api = wallet_client(deposit="10")
    job, _ = start_paid_job(api, miner_api)
    stored = Job.objects.get(pk=job["id"])
    now = timezone.now()

    assert transition(
        job_id=stored.pk, expected=JobStatus.RUNNING, new=JobStatus.CANCELLED, actor="system", reason="test", now=now,
        job=stored, completed_at=now,
    )
    assert balances(user) == (Decimal("7.5"), Decimal("2.5"))

    payment = settle(job=stored, end=JobStatus.CANCELLED)
    assert (payment.price, payment.fee, payment.miner_earnings) == (Decimal("2.5"), Decimal("0"), Decimal("0"))
    assert balances(user) == (Decimal("10"), Decimal("0"))


def test_the_fee_is_computed_once_and_the_receipt_signs_what_settlement_paid(
    db: None, settings: Any, miner_api: APIClient
) -> None:
    settings.PLATFORM_FEE_RATE = Decimal("0.1")
    _, api = wallet_client(deposit="10")
    job, miner = start_paid_job(api, miner_api)
    stored = Job.objects.get(pk=job["id"])
    assert payment_for(stored, end=JobStatus.COMPLETED) == Payment(
        price=Decimal("2.5"), fee=Decimal("0.25"), miner_earnings=Decimal("2.25")
    )

    receipt = post_result(miner_api, miner["id"], job["id"]).json()["receipt"]

    assert (receipt["price"], receipt["miner_earnings"]) == ("2.50000000", "2.25000000")
    assert platform_fees() == Decimal("0.25")
