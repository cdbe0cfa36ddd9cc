"""The original dialect's hot paths cost what ours cost, give or take the lookups its shape needs (pinned exactly,
as jobs/tests/test_query_budgets.py pins ours; read that module's docstring for how the counts are taken)."""

from typing import Any

import pytest
from pytest_django import DjangoAssertNumQueries
from rest_framework.test import APIClient

from conftest import api_with_key
from jobs.tests.test_query_budgets import POLL_READS, POLL_WRITES_BESIDES_THE_JOBS, receipt_chain_lock
from original.tests.helpers import heartbeat, poll, post_result, registered, submit, submitted

SERVICE_KEY = "env-key-original-budgets-0123"


@pytest.fixture
def client(settings: Any, db: None) -> APIClient:
    """An API_KEYS client (a service user: unbilled), past its first request."""
    settings.API_KEYS = [SERVICE_KEY]
    api = api_with_key(SERVICE_KEY)
    assert api.get("/v1/jobs").status_code == 200
    return api


@pytest.fixture
def miner(miner_api: APIClient) -> APIClient:
    registered(miner_api)
    return miner_api


def test_submitting_a_job(client: APIClient, django_assert_num_queries: DjangoAssertNumQueries) -> None:
    """As ours: the price and the job in a savepoint."""
    submitted(client)

    with django_assert_num_queries(4):
        assert submit(client).status_code == 201


def test_a_poll(client: APIClient, miner: APIClient, django_assert_num_queries: DjangoAssertNumQueries) -> None:
    """As ours for one job: the key's latest miner is one read, as our poll's miner by id."""
    submitted(client)

    with django_assert_num_queries(POLL_READS + POLL_WRITES_BESIDES_THE_JOBS + 1):
        assert poll(miner).status_code == 200


def test_an_empty_poll(miner: APIClient, django_assert_num_queries: DjangoAssertNumQueries) -> None:
    with django_assert_num_queries(POLL_READS + 2):
        assert poll(miner).status_code == 204


def test_a_heartbeat_renewing_a_lease(
    client: APIClient, miner: APIClient, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    """As ours: the key, the miner by name, its sign of life, its held jobs, its recently cancelled attempts and
    the lease's renewal."""
    submitted(client)
    assert poll(miner).status_code == 200

    with django_assert_num_queries(6):
        assert heartbeat(miner, inflight=1).json()["held_jobs"]


def test_posting_a_result(
    client: APIClient, miner: APIClient, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    """Ours plus one read: which of the key's miners was handed the job (the route names only the job)."""
    job = submitted(client)
    assert poll(miner).status_code == 200

    with django_assert_num_queries(9 + 1 + receipt_chain_lock()):
        assert post_result(miner, job["job_id"]).status_code == 200
