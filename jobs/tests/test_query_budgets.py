"""How many database statements each hot-path request costs, pinned exactly: submit, poll, heartbeat, result, read.

A budget that moves fails here instead of slowing production. The likeliest way to break one is to add a field to
the miner's job document without adding it to the hand-out's columns (jobs/queries.py ASSIGNMENT_FIELDS, the
poll's hand-written SELECT): each job handed out would then read the deferred field back, one query per job. The
1-, 5- and 10-job polls catch that: their reads must not grow with the jobs handed out. When a budget changes on
purpose, change its number here and say why in the commit.

The counts are every statement Django sends, SAVEPOINT and RELEASE SAVEPOINT included (a service's
transaction.atomic() is a savepoint inside the test's transaction); rate-limit counters live in the cache, not in
the database. What a request pays only once is paid before measuring, so each budget is the steady state:
- each client has made a request: an issued key writes its last use at most once a minute, and an API_KEYS entry's
  service user is read once per process. After that an issued key costs one statement a request (the key with its
  owner) and an API_KEYS entry none, which is most of the difference between the billed and unbilled columns;
- the first submission seeds the job-type prices and a wallet user's held account;
- the first payout creates the miner's wallet user, its available account and the platform's fee account.
"""

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from pytest_django import DjangoAssertNumQueries
from rest_framework.test import APIClient

from conftest import api_with_key, poll, post_result, register_miner, submit_job
from jobs.tests.test_billing import MINER_WALLET, wallet_client

JOBS = "/v1/client/jobs"
HEARTBEAT = "/v1/miner/heartbeat"
SERVICE_KEY = "env-key-budgets-0123456789"
FAILURE = {"code": "OOM", "message": "out of memory"}

# A poll's reads: the key, the miner, the lapsed leases, the miner's running count and one batch of candidates.
POLL_READS = 5
# Besides them a hand-out is a savepoint and its release, one compare-and-set UPDATE per job handed out (the
# state machine's rule: each job moves only if still pending) and the events and attempts, inserted in one go each.
POLL_WRITES_BESIDES_THE_JOBS = 4


def receipt_chain_lock() -> int:
    """PostgreSQL locks the miner's row (SELECT … FOR UPDATE) before appending to its receipt chain, so its
    receipts chain one after another; SQLite has no row locks and its one writer already serialises them."""
    return 1 if connection.vendor == "postgresql" else 0


@pytest.fixture(autouse=True)
def _prices(settings: Any) -> None:
    settings.JOB_PRICES = {"llm_inference": Decimal("2.5")}
    settings.PLATFORM_FEE_RATE = Decimal("0.05")


@pytest.fixture
def unbilled_api(settings: Any, db: None) -> APIClient:
    """A client with an API_KEYS entry: a service user, whose jobs are not billed."""
    settings.API_KEYS = [SERVICE_KEY]
    api = api_with_key(SERVICE_KEY)
    assert api.get(JOBS).status_code == 200
    return api


@pytest.fixture
def billed_api(db: None) -> APIClient:
    """A funded wallet user's issued client key: each job holds its price at submission and settles at its end."""
    _, api = wallet_client(deposit="100")
    assert api.get(JOBS).status_code == 200
    return api


@pytest.fixture(params=["unbilled", "billed"])
def client(request: pytest.FixtureRequest) -> APIClient:
    return request.getfixturevalue(f"{request.param}_api")


@pytest.fixture
def miner(miner_api: APIClient) -> str:
    """A registered miner, paid to a wallet, with room for a full poll of ten jobs; its id."""
    return register_miner(miner_api, address=MINER_WALLET, max_concurrent_jobs=10)["id"]


def hand_out(client: APIClient, miner_api: APIClient, miner: str, count: int = 1, **job: Any) -> list[str]:
    """Submit `count` jobs and have the miner take them all: their ids."""
    ids = [submit_job(client, **job)["id"] for _ in range(count)]
    assert sorted(handed["id"] for handed in poll(miner_api, miner, limit=count)["results"]) == sorted(ids)
    return ids


def by_client(request: pytest.FixtureRequest, *, unbilled: int, billed: int) -> int:
    return {"unbilled": unbilled, "billed": billed}[request.node.callspec.params["client"]]


# --- submit -----------------------------------------------------------------------------------------------------


def test_submitting_a_job(
    client: APIClient, request: pytest.FixtureRequest, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    """Unbilled: the price, and the job in a savepoint. Billed adds the key and the hold: both accounts in one
    read (locked on PostgreSQL), the posting, both balances in one UPDATE and the entries in one INSERT."""
    submit_job(client)

    with django_assert_num_queries(by_client(request, unbilled=4, billed=9)):
        submit_job(client)


def test_submitting_a_job_with_an_idempotency_key(
    client: APIClient, request: pytest.FixtureRequest, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    """One statement more than without a key: looking for an earlier request with the same key."""
    submit_job(client)
    body = {"job_type": "llm_inference", "parameters": {"prompt": "hello"}}

    with django_assert_num_queries(by_client(request, unbilled=5, billed=10)):
        response = client.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 201, response.content


# --- poll -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 5, 10])
def test_a_polls_reads_do_not_grow_with_the_jobs_it_hands_out(
    unbilled_api: APIClient,
    miner_api: APIClient,
    miner: str,
    count: int,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """Only the compare-and-set grows, one UPDATE per job handed out; a job document reading a field the poll did
    not select (ASSIGNMENT_FIELDS) would add a SELECT per job and fail this."""
    for _ in range(count):
        submit_job(unbilled_api)

    with django_assert_num_queries(POLL_READS + POLL_WRITES_BESIDES_THE_JOBS + count) as captured:
        assert len(poll(miner_api, miner, limit=count)["results"]) == count

    reads = [query["sql"] for query in captured.captured_queries if query["sql"].startswith("SELECT")]
    assert len(reads) == POLL_READS, reads


def test_an_empty_poll(miner_api: APIClient, miner: str, django_assert_num_queries: DjangoAssertNumQueries) -> None:
    """The reads of any poll, and the empty transaction's savepoint and its release."""
    with django_assert_num_queries(POLL_READS + 2):
        assert poll(miner_api, miner, limit=10)["reason"] == "no_matching_jobs"


# --- heartbeat --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("held", [1, 3])
def test_a_heartbeat(
    unbilled_api: APIClient,
    miner_api: APIClient,
    miner: str,
    held: int,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """The key, the miner, its sign of life, its held jobs and its recently cancelled attempts, and one UPDATE per
    held job: each lease is renewed only while this miner still holds the job."""
    jobs = hand_out(unbilled_api, miner_api, miner, held)

    with django_assert_num_queries(5 + held):
        beat = miner_api.post(HEARTBEAT, {"miner_id": miner}, format="json")

    assert sorted(beat.json()["held_jobs"]) == sorted(jobs)


# --- result -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "result", "status", "unbilled", "billed"),
    [
        pytest.param({}, {"status": "completed"}, "completed", 9, 14, id="completed"),
        pytest.param(
            {}, {"status": "failed", "result": None, "error": FAILURE}, "pending", 9, 9, id="failed-and-requeued"
        ),
        pytest.param(
            {},
            {"status": "failed", "result": None, "error": FAILURE, "retryable": False},
            "failed",
            9,
            13,
            id="failed-not-retryable",
        ),
        pytest.param(
            {"max_attempts": 1},
            {"status": "failed", "result": None, "error": FAILURE},
            "failed",
            9,
            13,
            id="failed-its-last-attempt",
        ),
    ],
)
def test_posting_a_result(
    client: APIClient,
    miner_api: APIClient,
    miner: str,
    request: pytest.FixtureRequest,
    job: dict[str, Any],
    result: dict[str, Any],
    status: str,
    unbilled: int,
    billed: int,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """The key, the attempt with its job in one read, and in a savepoint: the attempt's record, the job's
    compare-and-set, its event, the miner's chain head and the receipt. A billed job's end adds its settlement
    (a capture on completion, a release on a final failure); a requeued job keeps its hold and adds nothing."""
    [paid_before] = hand_out(client, miner_api, miner)
    assert post_result(miner_api, miner, paid_before).status_code == 200
    [job_id] = hand_out(client, miner_api, miner, **job)

    with django_assert_num_queries(by_client(request, unbilled=unbilled, billed=billed) + receipt_chain_lock()):
        response = post_result(miner_api, miner, job_id, **result)

    assert response.status_code == 200, response.content
    assert response.json()["job"]["status"] == status


def attempt_lock() -> int:
    return 1 if connection.vendor == "postgresql" else 0


# --- partial output ---------------------------------------------------------------------------------------------


def post_output(miner_api: APIClient, miner: str, job_id: str, *seqs: int) -> Any:
    chunks = [{"seq": seq, "data": f"piece {seq}", "progress": 0.5} for seq in seqs]
    response = miner_api.post(f"/v1/miner/jobs/{job_id}/output", {"miner_id": miner, "chunks": chunks}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.parametrize("count", [1, 10])
def test_posting_output(
    unbilled_api: APIClient,
    miner_api: APIClient,
    miner: str,
    count: int,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """The key, the attempt with its job (and its next seq), and in a savepoint the compare-and-sets of the job
    (output size, progress) and of the attempt (its next seq), and one INSERT of all the chunks, however many.
    PostgreSQL locks the attempt's row without waiting in between (a result takes the two rows the other way round)."""
    [job_id] = hand_out(unbilled_api, miner_api, miner)
    post_output(miner_api, miner, job_id, 0)

    with django_assert_num_queries(7 + attempt_lock()):
        assert post_output(miner_api, miner, job_id, *range(1, count + 1))["next_seq"] == count + 1


def test_posting_output_again(
    unbilled_api: APIClient, miner_api: APIClient, miner: str, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    """A repeat writes nothing: the key, the attempt with its job, and the repeated chunks' bytes."""
    [job_id] = hand_out(unbilled_api, miner_api, miner)
    post_output(miner_api, miner, job_id, 0, 1, 2)

    with django_assert_num_queries(3):
        assert post_output(miner_api, miner, job_id, 1, 2)["next_seq"] == 3


@pytest.mark.parametrize("chunks", [1, 20])
def test_reading_a_jobs_output(
    client: APIClient,
    miner_api: APIClient,
    miner: str,
    request: pytest.FixtureRequest,
    chunks: int,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """The job and one page of its chunks, however many; an issued key adds its own read."""
    [job_id] = hand_out(client, miner_api, miner)
    post_output(miner_api, miner, job_id, *range(chunks))

    with django_assert_num_queries(by_client(request, unbilled=2, billed=3)):
        response = client.get(f"{JOBS}/{job_id}/stream")

    assert len(response.json()["results"]) == chunks


def test_posting_a_result_after_output(
    unbilled_api: APIClient, miner_api: APIClient, miner: str, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    """One read more than a result without output: the attempt's chunks, whose hash the receipt signs."""
    [paid_before] = hand_out(unbilled_api, miner_api, miner)
    assert post_result(miner_api, miner, paid_before).status_code == 200
    [job_id] = hand_out(unbilled_api, miner_api, miner)
    post_output(miner_api, miner, job_id, 0, 1)

    with django_assert_num_queries(9 + 1 + receipt_chain_lock()):
        assert post_result(miner_api, miner, job_id).status_code == 200


# --- reads ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "statements"), [("", 1), ("/status", 1), ("/receipts", 2)])
def test_reading_a_finished_job(
    client: APIClient,
    miner_api: APIClient,
    miner: str,
    request: pytest.FixtureRequest,
    path: str,
    statements: int,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """The job, result included, is one read; its receipts one more. An issued key adds its own read."""
    [job_id] = hand_out(client, miner_api, miner)
    assert post_result(miner_api, miner, job_id).status_code == 200

    with django_assert_num_queries(by_client(request, unbilled=statements, billed=statements + 1)):
        response = client.get(f"{JOBS}/{job_id}{path}")

    assert response.status_code == 200, response.content
