"""Derived state has one rule, so the dashboard and /metrics read the same world the same way: a pending job past
its deadline is expired (not the oldest one waiting), a silent miner is inactive, and a lapsed lease is counted by
its attempt's outcome."""

from datetime import timedelta

from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from aitbc_site.dashboard import dashboard
from conftest import poll, register_miner, submit_job
from jobs.models import Job
from jobs.services.leases import recover_expired_leases
from jobs.tests.factories import make_job, make_miner
from miners.models import MinerStatus


def scraped(api: APIClient) -> dict[str, float]:
    """Every sample of /metrics by name and labels, e.g. `registered_miners{status=inactive}`."""
    text = api.get("/metrics").content.decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_the_dashboard_and_metrics_agree_on_the_oldest_waiting_job(db: None, anonymous_api: APIClient) -> None:
    now = timezone.now()
    make_job(created_at=now - timedelta(hours=5), expires_at=now - timedelta(hours=4))  # overdue: reads expired
    make_job(created_at=now - timedelta(minutes=10))

    board = dashboard(now=now)
    age = scraped(anonymous_api)["oldest_pending_job_age_seconds"]

    assert board.oldest_pending_since == now - timedelta(minutes=10)
    assert abs(age - 600) < 60, age


def test_the_dashboard_and_metrics_agree_on_inactive_miners(db: None, anonymous_api: APIClient) -> None:
    now = timezone.now()
    make_miner(last_heartbeat=now - timedelta(hours=1))  # stored active, silent
    make_miner(status=MinerStatus.INACTIVE)
    make_miner()

    board = dashboard(now=now)
    samples = scraped(anonymous_api)

    assert (board.miners.inactive, board.miners.active) == (2, 1)
    assert samples["registered_miners{status=inactive}"] == board.miners.inactive
    assert samples["registered_miners{status=active}"] == board.miners.active


def test_lapsed_leases_are_counted_by_their_attempts_outcome(
    db: None, anonymous_api: APIClient, client_api: APIClient, miner_api: APIClient
) -> None:
    submit_job(client_api)
    miner = register_miner(miner_api)
    job_id = poll(miner_api, miner["id"])["results"][0]["id"]
    before = scraped(anonymous_api)["job_leases_expired_total"]
    Job.objects.filter(pk=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    recover_expired_leases(now=timezone.now())

    assert scraped(anonymous_api)["job_leases_expired_total"] == before + 1
