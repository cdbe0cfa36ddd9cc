"""The operators' admin console: every page renders, every action goes through its service under the operator's name,
API keys are shown once, balances are adjusted only with a reason, and the index shows the dashboard."""

import hashlib
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from accounts import ledger
from accounts.models import ApiKey, ApiKeyRole, LedgerAccount, Posting, PostingKind, User
from accounts.selectors import user_balance
from accounts.services import api_key_issue, wallet_user_for
from aitbc_site.dashboard import bar_chart, completed_per_hour, dashboard
from aitbc_site.testing import assert_api_error
from conftest import api_with_key, poll, register_miner, start_job
from exchange.models import ExchangeRate, Payment, PaymentStatus
from exchange.services import payment_create
from jobs.models import Job, JobEvent, JobStatus, JobTypePrice
from jobs.selectors import job_type_prices
from jobs.tests.factories import make_job, make_miner, make_user
from miners.models import Miner, MinerStatus
from receipts.models import Receipt
from receipts.services import Payment as ReceiptPayment
from receipts.services import receipt_issue

OPERATOR = "admin"  # the superuser of pytest-django's admin_client
ACTOR = f"operator:{OPERATOR}"
WALLET = "ait1" + "5e" * 20


@pytest.fixture(autouse=True)
def _exchange_on_a_shared_address(settings: SettingsWrapper) -> None:
    settings.BITCOIN_XPUB = ""
    settings.BITCOIN_ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
    settings.BITCOIN_BACKEND = "manual"


def changelist(model: type[Model]) -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/"


def change_page(obj: Model) -> str:
    return f"{changelist(type(obj))}{obj.pk}/change/"


def run_action(client: Client, model: type[Model], action: str, objects: list[Model]) -> Any:
    """Select the objects on the changelist and run the action, as the "Go" button does."""
    response = client.post(
        changelist(model),
        {"action": action, ACTION_CHECKBOX_NAME: [str(obj.pk) for obj in objects], "index": "0"},
        follow=True,
    )
    assert response.status_code == 200, response.content[:500]
    return response


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def logged_changes(obj: Model) -> list[str]:
    return list(LogEntry.objects.filter(object_id=str(obj.pk)).values_list("change_message", flat=True))


def make_receipt(job: Job, miner: Miner) -> Receipt:
    return receipt_issue(
        job_id=job.pk, client_id=job.client_id, job_type=job.job_type, attempt=1, miner_id=miner.pk, status="completed",
        result={"text": "hi"}, error=None, metrics=None, started_at=None, completed_at=timezone.now(),
        payment=ReceiptPayment(price=Decimal("1"), fee=Decimal("0"), miner_earnings=Decimal("1")),
    )


def make_payment(user: User, btc: str = "0.001") -> Payment:
    return payment_create(user=user, btc_amount=Decimal(btc))


@pytest.fixture
def one_of_each(db: None) -> dict[str, Model]:
    """One row of every model in the admin."""
    miner = make_miner()
    job = make_job(status=JobStatus.RUNNING, miner=miner)
    JobEvent.objects.create(
        job=job, at=timezone.now(), from_status=JobStatus.PENDING, to_status=JobStatus.RUNNING, actor="system",
        reason="handed to a miner",
    )
    buyer = wallet_user_for(address=WALLET)
    ledger.deposit(user_id=buyer.pk, amount=Decimal("3"), reference="deposit:admin-test", memo="bought")
    key, _ = api_key_issue(role=ApiKeyRole.CLIENT, name="laptop", user=buyer)
    job_type_prices()
    return {
        "job": job,
        "price": JobTypePrice.objects.get(job_type="llm_inference"),
        "miner": miner,
        "receipt": make_receipt(job, miner),
        "user": buyer,
        "api_key": key,
        "ledger_account": LedgerAccount.objects.get(user=buyer, kind="available"),
        "payment": make_payment(buyer),
        "rate": ExchangeRate.objects.first(),
    }


# --- every page renders ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["job", "price", "miner", "receipt", "user", "api_key", "ledger_account", "payment", "rate"]
)
def test_the_changelist_and_change_page_of_every_model_render(admin_client: Client, one_of_each, name: str) -> None:
    obj = one_of_each[name]
    listing = admin_client.get(changelist(type(obj)))
    assert listing.status_code == 200
    assert str(obj.pk) in listing.content.decode() or name == "rate"
    assert admin_client.get(change_page(obj)).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/accounts/apikey/add/",
        "/admin/accounts/user/add/",
        "/admin/jobs/job/?status=expired",
        "/admin/jobs/job/?status=pending&job_type=llm_inference&q=abc",
        "/admin/miners/miner/?status=inactive&disabled=no",
        "/admin/exchange/payment/?status__in=pending,confirming",
        "/admin/accounts/apikey/?revoked=no&role=client",
    ],
)
def test_the_other_pages_render(admin_client: Client, one_of_each, url: str) -> None:
    assert admin_client.get(url).status_code == 200


def test_rows_that_services_own_cannot_be_added_changed_or_deleted_in_the_admin(admin_client: Client, one_of_each):
    for name in ["job", "miner", "receipt", "ledger_account", "payment", "rate"]:
        model = type(one_of_each[name])
        assert admin_client.get(f"{changelist(model)}add/").status_code == 403, name
        assert admin_client.get(f"{changelist(model)}{one_of_each[name].pk}/delete/").status_code == 403, name
        page = admin_client.get(change_page(one_of_each[name])).content.decode()
        assert 'name="_save"' not in page, name


def test_a_job_page_shows_the_effective_status_and_the_timeline(admin_client: Client, db: None) -> None:
    job = make_job(expires_at=timezone.now() - timedelta(seconds=1))
    JobEvent.objects.create(
        job=job, at=timezone.now(), from_status=JobStatus.PENDING, to_status=JobStatus.PENDING, actor="client",
        reason="a distinctive reason",
    )
    page = admin_client.get(change_page(job)).content.decode()
    assert "Expired" in page and "a distinctive reason" in page
    expired = admin_client.get(changelist(Job), {"status": "expired"}).content.decode()
    pending = admin_client.get(changelist(Job), {"status": "pending"}).content.decode()
    assert str(job.pk) in expired and str(job.pk) not in pending


def queries_to_get(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


def test_the_miner_list_counts_running_jobs_without_a_query_per_miner(admin_client: Client, db: None) -> None:
    busy = make_miner()
    make_job(status=JobStatus.RUNNING, miner=busy)
    make_job(status=JobStatus.RUNNING, miner=busy)
    one = queries_to_get(admin_client, changelist(Miner))
    for _ in range(5):
        make_job(status=JobStatus.RUNNING, miner=make_miner())
    assert queries_to_get(admin_client, changelist(Miner)) == one
    assert admin_client.get(changelist(Miner)).context["cl"].result_list.get(pk=busy.pk).running_jobs == 2


def test_the_receipt_list_says_whether_each_signature_is_valid(admin_client: Client, db: None) -> None:
    miner = make_miner()
    genuine = make_receipt(make_job(miner=miner), miner)
    forged = make_receipt(make_job(miner=miner), miner)
    Receipt.objects.filter(pk=forged.pk).update(document=forged.document.replace('"text":"hi"', '"text":"ho"'))
    page = admin_client.get(changelist(Receipt)).content.decode()
    row_pattern = r'href="[^"]*/receipt/([0-9a-f-]+)/change/"(.*?)</tr>'
    rows = dict(re.findall(row_pattern, page, re.S))
    assert 'alt="True"' in rows[str(genuine.pk)]
    assert 'alt="False"' in rows[str(forged.pk)]
    assert "BAD_SIGNATURE" in admin_client.get(change_page(forged)).content.decode()


# --- jobs -------------------------------------------------------------------------------------------------------


def test_cancelling_jobs_goes_through_the_service_under_the_operators_name(admin_client: Client, db: None) -> None:
    pending, other = make_job(), make_job()
    response = run_action(admin_client, Job, "cancel_jobs", [pending])
    pending.refresh_from_db()
    other.refresh_from_db()
    assert (pending.status, other.status) == (JobStatus.CANCELLED, JobStatus.PENDING)
    event = JobEvent.objects.get(job=pending, to_status=JobStatus.CANCELLED)
    assert event.actor == ACTOR and OPERATOR in event.reason
    assert logged_changes(pending) == [f"Cancelled by operator {OPERATOR}."]
    assert messages_of(response) == ["Cancelled 1 job."]


def test_a_running_job_requeued_by_an_operator_is_pending_again_without_its_miner(
    admin_client: Client, client_api, miner_api
) -> None:
    submitted, _ = start_job(client_api, miner_api)
    job = Job.objects.get(pk=submitted["id"])
    run_action(admin_client, Job, "requeue_jobs", [job])
    job.refresh_from_db()
    assert (job.status, job.miner_id, job.attempts) == (JobStatus.PENDING, None, 0)
    assert JobEvent.objects.filter(job=job, to_status=JobStatus.PENDING).get().actor == ACTOR
    assert logged_changes(job) == [f"Requeued by operator {OPERATOR}."]


def test_failing_a_job_ends_it_under_the_operators_name(admin_client: Client, client_api, miner_api) -> None:
    submitted, _ = start_job(client_api, miner_api)
    job = Job.objects.get(pk=submitted["id"])
    run_action(admin_client, Job, "fail_jobs", [job])
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error["code"] == "FAILED_BY_OPERATOR"
    assert JobEvent.objects.get(job=job, to_status=JobStatus.FAILED).actor == ACTOR


def test_an_action_the_service_refuses_shows_its_message_and_changes_nothing(admin_client: Client, db: None) -> None:
    pending = make_job()
    response = run_action(admin_client, Job, "requeue_jobs", [pending])
    pending.refresh_from_db()
    assert pending.status == JobStatus.PENDING
    assert [message for message in messages_of(response) if "Only a running job can be requeued" in message]
    assert logged_changes(pending) == []


def test_a_price_is_edited_in_the_list_and_a_negative_one_is_refused(admin_client: Client, db: None) -> None:
    assert admin_client.get(changelist(JobTypePrice)).status_code == 200  # seeds every configured type
    prices = list(JobTypePrice.objects.order_by("job_type"))
    form = {"form-TOTAL_FORMS": str(len(prices)), "form-INITIAL_FORMS": str(len(prices)), "_save": "Save"}
    for index, price in enumerate(prices):
        form[f"form-{index}-job_type"] = price.job_type
        form[f"form-{index}-price"] = "2.5" if price.job_type == "embedding" else str(price.price)
    assert admin_client.post(changelist(JobTypePrice), form).status_code == 302
    assert JobTypePrice.objects.get(job_type="embedding").price == Decimal("2.5")

    index = next(index for index, price in enumerate(prices) if price.job_type == "embedding")
    refused = admin_client.post(changelist(JobTypePrice), {**form, f"form-{index}-price": "-1"})
    assert refused.status_code == 200 and "greater than or equal to 0" in refused.content.decode()
    assert JobTypePrice.objects.get(job_type="embedding").price == Decimal("2.5")
    for beyond, error in [("10000000000.00000001", "less than or equal to 10000000000"), ("\u0661", "Enter a number")]:
        refused = admin_client.post(changelist(JobTypePrice), {**form, f"form-{index}-price": beyond})
        assert refused.status_code == 200 and error in refused.content.decode()
    assert JobTypePrice.objects.get(job_type="embedding").price == Decimal("2.5")


# --- miners -------------------------------------------------------------------------------------------------------


def test_draining_disabling_and_re_enabling_miners(admin_client: Client, miner_api) -> None:
    registered = register_miner(miner_api)
    miner = Miner.objects.get(pk=registered["id"])

    run_action(admin_client, Miner, "drain_miners", [miner])
    miner.refresh_from_db()
    assert miner.status == MinerStatus.DRAINING

    run_action(admin_client, Miner, "disable_miners", [miner])
    miner.refresh_from_db()
    assert miner.disabled_at is not None and miner.disabled_by == OPERATOR
    refused = miner_api.get("/v1/miner/jobs", {"miner_id": registered["id"]})
    assert_api_error(refused, status=403, code="MINER_DISABLED")

    run_action(admin_client, Miner, "enable_miners", [miner])
    miner.refresh_from_db()
    assert miner.disabled_at is None
    poll(miner_api, registered["id"])
    assert sorted(logged_changes(miner)) == [
        f"Disabled by operator {OPERATOR}.", f"Drained by operator {OPERATOR}.", f"Re-enabled by operator {OPERATOR}.",
    ]


# --- API keys -----------------------------------------------------------------------------------------------------


def test_adding_a_key_shows_it_once_and_stores_only_its_hash(admin_client: Client, db: None) -> None:
    owner = wallet_user_for(address=WALLET)
    response = admin_client.post(
        "/admin/accounts/apikey/add/", {"role": "client", "name": "ci runner", "user": str(owner.pk)}, follow=True
    )
    assert response.status_code == 200
    shown = re.findall(r"<code>(aitbc_[A-Za-z0-9_-]+)</code>", " ".join(messages_of(response)))
    assert len(shown) == 1
    raw_key = shown[0]
    key = ApiKey.objects.get(name="ci runner")
    assert (key.user, key.role, key.key_hash) == (owner, "client", hashlib.sha256(raw_key.encode()).hexdigest())
    assert raw_key not in str(list(ApiKey.objects.values_list()))
    # Shown once: neither the list nor the key's page has it again, and the key's page never shows the hash.
    assert raw_key not in admin_client.get(changelist(ApiKey)).content.decode()
    page = admin_client.get(change_page(key)).content.decode()
    assert raw_key not in page and key.key_hash not in page
    # And it is a working client key.
    assert api_with_key(raw_key).get("/v1/client/jobs").status_code == 200


def test_a_key_added_without_an_owner_gets_a_service_user_of_its_own(admin_client: Client, db: None) -> None:
    admin_client.post("/admin/accounts/apikey/add/", {"role": "miner", "name": "rig", "user": ""}, follow=True)
    assert ApiKey.objects.get(name="rig").user.is_service


def test_revoking_keys_goes_through_the_service(admin_client: Client, db: None) -> None:
    key, raw_key = api_key_issue(role=ApiKeyRole.CLIENT, name="old laptop")
    run_action(admin_client, ApiKey, "revoke_keys", [key])
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert logged_changes(key) == [f"Revoked by operator {OPERATOR}."]
    assert_api_error(api_with_key(raw_key).get("/v1/client/jobs"), status=401, code="INVALID_API_KEY")


# --- users and balances -------------------------------------------------------------------------------------------


def adjust(client: Client, users: list[User], **form: str) -> Any:
    return client.post(
        changelist(User),
        {"action": "adjust_balance", ACTION_CHECKBOX_NAME: [str(user.pk) for user in users], "apply": "1", **form},
        follow=True,
    )


REFERENCE = "6d1f9f5e-0c1a-4d8e-9a57-3c0b7a0c0d11"


def test_the_adjust_action_asks_for_an_amount_and_a_reason_first(admin_client: Client, db: None) -> None:
    user = wallet_user_for(address=WALLET)
    form = admin_client.post(
        changelist(User), {"action": "adjust_balance", ACTION_CHECKBOX_NAME: [str(user.pk)], "index": "0"}
    )
    assert form.status_code == 200
    page = form.content.decode()
    assert 'name="amount"' in page and 'name="reason"' in page and str(user) in page
    assert not Posting.objects.exists()


def test_an_adjustment_posts_to_the_available_balance_with_reason_and_operator(admin_client: Client, db: None) -> None:
    user = wallet_user_for(address=WALLET)
    response = adjust(admin_client, [user], amount="5.5", reason="refund for job 42", reference=REFERENCE)
    assert messages_of(response) == [f"Adjusted the available balance of {user} by +5.5 AITBC."]
    assert user_balance(user=user)["available"] == Decimal("5.5")
    posting = Posting.objects.get(kind=PostingKind.ADJUSTMENT)
    assert (posting.actor, posting.memo) == (ACTOR, "refund for job 42")
    assert logged_changes(user) == [f"Balance adjusted by +5.5 AITBC by operator {OPERATOR}: refund for job 42"]

    # Submitting the same form again (a double click) applies nothing more.
    adjust(admin_client, [user], amount="5.5", reason="refund for job 42", reference=REFERENCE)
    assert user_balance(user=user)["available"] == Decimal("5.5")

    adjust(admin_client, [user], amount="-2", reason="clawback", reference="1d1f9f5e-0c1a-4d8e-9a57-3c0b7a0c0d11")
    assert user_balance(user=user)["available"] == Decimal("3.5")
    assert admin_client.get(change_page(user)).content.decode().count("clawback") == 1


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"amount": "5", "reason": ""}, "This field is required."),
        ({"amount": "5", "reason": "   "}, "This field is required."),
        ({"amount": "0", "reason": "nothing"}, "An adjustment of zero changes nothing."),
        ({"amount": "five", "reason": "typo"}, "Enter a number."),
        ({"amount": "0.000000001", "reason": "dust"}, "Ensure that there are no more than 8 decimal places."),
        ({"amount": "\u0661", "reason": "arabic-indic one"}, "Enter a number."),
        ({"amount": "10000000000.00000001", "reason": "too much"}, "less than or equal to 10000000000"),
        ({"amount": "-10000000000.00000001", "reason": "too little"}, "greater than or equal to -10000000000"),
    ],
)
def test_an_adjustment_needs_a_reason_and_a_real_amount(admin_client: Client, db: None, form, error) -> None:
    user = wallet_user_for(address=WALLET)
    response = adjust(admin_client, [user], reference=REFERENCE, **form)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Posting.objects.exists()


def test_an_adjustment_below_zero_is_refused_with_the_ledgers_message(admin_client: Client, db: None) -> None:
    user = wallet_user_for(address=WALLET)
    ledger.deposit(user_id=user.pk, amount=Decimal("1"), reference="deposit:x", memo="bought")
    response = adjust(admin_client, [user], amount="-2", reason="too much", reference=REFERENCE)
    assert any("insufficient" in message.lower() or "balance" in message.lower() for message in messages_of(response))
    assert user_balance(user=user)["available"] == Decimal("1")


def test_a_user_page_is_read_only_but_for_access_and_password(admin_client: Client, db: None) -> None:
    user = wallet_user_for(address=WALLET)
    ledger.deposit(user_id=user.pk, amount=Decimal("7"), reference="deposit:shown", memo="bought on the exchange")
    page = admin_client.get(change_page(user)).content.decode()
    assert "bought on the exchange" in page and "7.00000000 available" in page
    response = admin_client.post(
        change_page(user), {"username": "renamed", "wallet_address": "", "is_active": "", "is_staff": "on"}
    )
    assert response.status_code == 302, response.content[:2000]
    user.refresh_from_db()
    assert (user.username, user.wallet_address, user.is_active, user.is_staff) == (WALLET, WALLET, False, True)
    assert admin_client.get(f"/admin/accounts/user/{user.pk}/password/").status_code == 200


def test_the_user_list_shows_balances_without_a_query_per_user(admin_client: Client, db: None) -> None:
    rich = wallet_user_for(address=WALLET)
    ledger.deposit(user_id=rich.pk, amount=Decimal("12.5"), reference="deposit:rich", memo="bought")
    few = queries_to_get(admin_client, changelist(User))
    for index in range(5):
        ledger.deposit(user_id=make_user().pk, amount=Decimal("1"), reference=f"deposit:{index}", memo="bought")
    assert queries_to_get(admin_client, changelist(User)) == few
    response = admin_client.get(changelist(User))
    listed = response.context["cl"].result_list.get(pk=rich.pk)
    assert listed.available == Decimal("12.5")
    assert "12.5" in response.content.decode()


# --- payments -----------------------------------------------------------------------------------------------------


def test_confirming_a_payment_credits_it_under_the_operators_name(admin_client: Client, db: None) -> None:
    buyer = wallet_user_for(address=WALLET)
    payment = make_payment(buyer)
    run_action(admin_client, Payment, "confirm_payments", [payment])
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CONFIRMED
    assert user_balance(user=buyer)["available"] == payment.aitbc_amount
    assert OPERATOR in payment.note and ACTOR in Posting.objects.get(kind=PostingKind.DEPOSIT).memo
    assert logged_changes(payment) == [f"Confirmed by operator {OPERATOR}."]


def test_expiring_a_payment_credits_nothing(admin_client: Client, db: None) -> None:
    buyer = wallet_user_for(address=WALLET)
    payment = make_payment(buyer)
    run_action(admin_client, Payment, "expire_payments", [payment])
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.EXPIRED and OPERATOR in payment.note
    assert user_balance(user=buyer)["available"] == 0
    refused = run_action(admin_client, Payment, "expire_payments", [payment])
    assert any("cannot be expired" in message for message in messages_of(refused))


# --- the dashboard ------------------------------------------------------------------------------------------------


def completed_at(job: Job, at: Any) -> None:
    JobEvent.objects.create(
        job=job, at=at, from_status=JobStatus.RUNNING, to_status=JobStatus.COMPLETED, actor="miner:x", reason="done"
    )


def test_the_chart_counts_completions_per_clock_hour_over_the_last_day(db: None) -> None:
    now = timezone.now().replace(minute=30, second=0, microsecond=0)
    job = make_job()
    for minutes_ago in [0, 10, 29, 31, 91, 23 * 60 + 29, 23 * 60 + 31, 25 * 60]:
        completed_at(job, now - timedelta(minutes=minutes_ago))
    counts = completed_per_hour(now=now)
    assert len(counts) == 24
    assert counts[-1] == (now.replace(minute=0), 3)
    assert counts[-2][1] == 1 and counts[-3][1] == 1
    # 23 h 29 min ago falls into the first hour shown; 23 h 31 min ago and earlier are older than the window.
    assert counts[0] == (now.replace(minute=0) - timedelta(hours=23), 1)
    assert sum(count for _, count in counts) == 6


def test_bars_scale_to_the_busiest_hour() -> None:
    now = timezone.now()
    chart = bar_chart([(now, 0), (now, 1), (now, 200)])
    assert [bar.height for bar in chart.bars] == [0, 1, chart.height]
    assert [bar.y + bar.height for bar in chart.bars] == [chart.height] * 3
    assert chart.peak == 200
    assert bar_chart([(now, 0)]).bars[0].height == 0


def test_the_index_shows_the_dashboard(admin_client: Client, db: None, settings: SettingsWrapper) -> None:
    now = timezone.now()
    oldest = make_job(created_at=now - timedelta(minutes=42))
    make_job()
    make_job(expires_at=now - timedelta(seconds=1))  # reads as expired
    make_job(status=JobStatus.RUNNING, miner=make_miner())
    completed_at(oldest, now - timedelta(hours=2))
    make_miner(status=MinerStatus.DRAINING)
    make_miner(last_heartbeat=now - timedelta(seconds=settings.MINER_HEARTBEAT_TIMEOUT + 1))
    make_miner(disabled_at=now, disabled_by="ops")
    buyer = wallet_user_for(address=WALLET)
    make_payment(buyer)
    Payment.objects.filter(pk=make_payment(buyer, btc="0.002").pk).update(status=PaymentStatus.NEEDS_REVIEW)

    response = admin_client.get("/admin/")
    assert response.status_code == 200
    figures = response.context["dashboard"]
    by_status = {row.status: row.count for row in figures.jobs_by_status}
    assert by_status == {"pending": 2, "running": 1, "completed": 0, "failed": 0, "cancelled": 0, "expired": 1}
    assert (figures.miners.active, figures.miners.draining, figures.miners.inactive, figures.miners.disabled) == (
        1, 1, 1, 1,
    )
    assert timedelta(minutes=42) <= figures.oldest_pending_age < timedelta(minutes=43)
    assert (figures.payments_pending, figures.payments_to_review) == (1, 1)
    assert [bar.count for bar in figures.completed_per_hour.bars][-3] == 1

    page = response.content.decode()
    assert 'id="dashboard"' in page
    assert '<td class="figure" data-status="pending">2</td>' in page
    assert '<td class="figure" data-miners="disabled">1</td>' in page
    assert re.search(r'id="oldest-pending">42(&nbsp;|\s)minutes<', page)
    assert '<td class="figure" id="payments-pending">1</td>' in page
    svg = re.search(r'<svg id="completed-chart".*?</svg>', page, re.S)
    assert svg and svg.group(0).count("<rect ") == 24
    assert "<script" not in svg.group(0)


def test_the_dashboard_of_an_empty_system(admin_client: Client, db: None) -> None:
    figures = dashboard()
    assert figures.oldest_pending_age is None and figures.completed_per_hour.peak == 0
    assert "none waiting" in admin_client.get("/admin/").content.decode()


def test_staff_who_may_not_see_jobs_get_the_index_without_the_dashboard(client: Client, db: None) -> None:
    staff = make_user("staff")
    User.objects.filter(pk=staff.pk).update(is_staff=True)
    client.force_login(User.objects.get(pk=staff.pk))
    response = client.get("/admin/")
    assert response.status_code == 200 and response.context["dashboard"] is None
    assert 'id="dashboard"' not in response.content.decode()
