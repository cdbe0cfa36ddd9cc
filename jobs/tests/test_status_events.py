"""Every status change of a job is stored as its event in the change's own transaction, and reaches the after-commit
hook (aitbc_site.committed) once that transaction has committed, in the order the changes were made."""

from collections.abc import Sequence

import pytest
from rest_framework.test import APIClient

from conftest import poll, post_result, register_miner, submit_job
from jobs.models import JobEvent

pytestmark = pytest.mark.django_db(transaction=True)


def moves(batches: Sequence[Sequence[object]]) -> list[tuple[str, str, str]]:
    """The job events of these batches as (job, from, to)."""
    return [
        (str(event.job_id), event.from_status, event.to_status)
        for batch in batches
        for event in batch
        if isinstance(event, JobEvent)
    ]


def handed_out(client_api: APIClient, miner_api: APIClient, jobs: int = 1) -> tuple[list[str], str]:
    """Submit `jobs` jobs and have one new miner take them all in one poll: (job ids, miner id)."""
    job_ids = [submit_job(client_api)["id"] for _ in range(jobs)]
    miner = register_miner(miner_api, max_concurrent_jobs=jobs)["id"]
    assert len(poll(miner_api, miner, limit=jobs)["results"]) == jobs
    return job_ids, miner


def test_a_jobs_life_reaches_the_hook_change_by_change(committed_batches, client_api, miner_api) -> None:
    [job], miner = handed_out(client_api, miner_api)
    assert moves(committed_batches) == [(job, "pending", "running")]

    failure = {"status": "failed", "result": None, "error": {"code": "OOM", "message": "out of memory"}}
    assert post_result(miner_api, miner, job, **failure).status_code == 200
    assert moves(committed_batches)[1:] == [(job, "running", "pending")]

    cancelled = submit_job(client_api)["id"]
    assert client_api.post(f"/v1/client/jobs/{cancelled}/cancel").status_code == 200
    assert moves(committed_batches)[2:] == [(cancelled, "pending", "cancelled")]
    # What the hook heard is what was stored: the same rows, in the same order.
    stored = JobEvent.objects.filter(job_id__in=[job, cancelled]).order_by("at", "id")
    assert moves([list(stored)]) == moves(committed_batches)


def test_one_poll_handing_out_several_jobs_tells_the_hook_once(committed_batches, client_api, miner_api) -> None:
    jobs, _ = handed_out(client_api, miner_api, jobs=3)

    [batch] = committed_batches
    assert sorted(moves([batch])) == sorted((job, "pending", "running") for job in jobs)


def test_a_result_refused_as_a_conflict_tells_the_hook_nothing(committed_batches, client_api, miner_api) -> None:
    [job], miner = handed_out(client_api, miner_api)
    assert post_result(miner_api, miner, job).status_code == 200
    committed_batches.clear()

    assert post_result(miner_api, miner, job, result={"text": "other"}).status_code == 409
    assert committed_batches == []
