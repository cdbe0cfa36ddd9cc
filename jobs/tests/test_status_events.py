"""Every status change of a job is stored as its event in the change's own transaction, and reaches the after-commit
hook (aitbc_site.committed) once that transaction has committed, in the order the changes were made."""

from collections.abc import Iterator, Sequence

import pytest
from rest_framework.test import APIClient

from aitbc_site import committed
from conftest import poll, post_result, register_miner, submit_job
from jobs.models import JobEvent


@pytest.fixture
def heard() -> Iterator[list[JobEvent]]:
    events: list[JobEvent] = []

    def listener(batch: Sequence[object]) -> None:
        events.extend(event for event in batch if isinstance(event, JobEvent))

    committed.subscribe(listener)
    yield events
    committed.unsubscribe(listener)


def moves(events: Sequence[JobEvent]) -> list[tuple[str, str, str]]:
    return [(str(event.job_id), event.from_status, event.to_status) for event in events]


@pytest.mark.django_db(transaction=True)
def test_a_jobs_life_reaches_the_hook_change_by_change(
    heard: list[JobEvent], client_api: APIClient, miner_api: APIClient
) -> None:
    job = submit_job(client_api)
    miner = register_miner(miner_api)
    poll(miner_api, miner["id"])
    assert moves(heard) == [(job["id"], "pending", "running")]

    failure = {"status": "failed", "result": None, "error": {"code": "OOM", "message": "out of memory"}}
    assert post_result(miner_api, miner["id"], job["id"], **failure).status_code == 200
    assert moves(heard)[1:] == [(job["id"], "running", "pending")]

    cancelled = submit_job(client_api)
    assert client_api.post(f"/v1/client/jobs/{cancelled['id']}/cancel").status_code == 200
    assert moves(heard)[2:] == [(cancelled["id"], "pending", "cancelled")]
    # What the hook heard is what was stored: the same rows, in the same order.
    stored = JobEvent.objects.filter(job_id__in=[job["id"], cancelled["id"]]).order_by("at", "id")
    assert moves(list(stored)) == moves(heard)


@pytest.mark.django_db(transaction=True)
def test_one_poll_handing_out_several_jobs_tells_the_hook_once(
    heard: list[JobEvent], client_api: APIClient, miner_api: APIClient
) -> None:
    batches: list[int] = []

    def count(batch: Sequence[object]) -> None:
        batches.append(len(batch))

    committed.subscribe(count)
    try:
        jobs = [submit_job(client_api)["id"] for _ in range(3)]
        miner = register_miner(miner_api, max_concurrent_jobs=3)
        poll(miner_api, miner["id"], limit=3)
    finally:
        committed.unsubscribe(count)
    assert batches == [3]
    assert sorted(moves(heard)) == sorted((job_id, "pending", "running") for job_id in jobs)


@pytest.mark.django_db(transaction=True)
def test_a_result_refused_as_a_conflict_tells_the_hook_nothing(
    heard: list[JobEvent], client_api: APIClient, miner_api: APIClient
) -> None:
    job = submit_job(client_api)
    miner = register_miner(miner_api)
    poll(miner_api, miner["id"])
    assert post_result(miner_api, miner["id"], job["id"]).status_code == 200
    heard.clear()

    assert post_result(miner_api, miner["id"], job["id"], result={"text": "other"}).status_code == 409
    assert heard == []
