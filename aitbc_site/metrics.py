"""Prometheus metrics at /metrics.

Request counters are kept per process and summed across gunicorn workers by prometheus_client's multiprocess mode
(deploy/gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR, empties it at start and marks dead workers). Everything
about jobs, miners, receipts and payments is read from the database at scrape time, so work done by management
commands and background maintenance counts as well as work done in requests.
"""

import hmac
import os
import re
import time
from collections.abc import Callable, Iterator
from functools import lru_cache

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from aitbc_site.exception_handler import json_error_response

API_REQUESTS = Counter("api_requests_total", "API requests served", ["method", "endpoint", "status"])
API_LATENCY = Histogram(
    "api_request_duration_seconds",
    "Time to serve an API request",
    ["method", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UNMATCHED = "<unmatched>"
# Requests waiting right now (long-polls, client waits, event streams), summed over the live workers.
WAITING_REQUESTS = Gauge("waiting_requests", "Requests waiting for a change (long-polls and streams)",
                         multiprocess_mode="livesum")


@lru_cache(maxsize=512)
def endpoint_label(route: str) -> str:
    """A route pattern as a readable label: 'v1/^client/jobs/(?P<pk>[^/.]+)$' → '/v1/client/jobs/{pk}'."""
    readable = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route.replace("^", "").replace("$", ""))
    return "/" + readable.replace("\\", "").lstrip("/")


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        # Never a raw path: ids would make a new series per job.
        endpoint = endpoint_label(match.route) if match is not None and match.route else UNMATCHED
        API_LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - started)
        API_REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        return response


class DatabaseCollector(Collector):
    """Gauges and totals read from the database at scrape time."""

    def collect(self) -> Iterator[Metric]:
        from exchange.models import LateDeposit, LateDepositStatus, Payment, PaymentStatus, SkippedAddress
        from jobs.models import AttemptOutcome, Job, JobAttempt, JobEvent, JobStatus
        from jobs.selectors import oldest_waiting_since
        from miners.models import Miner
        from miners.selectors import effective_miner_status
        from receipts.models import Receipt

        by_status_type = Job.objects.values_list("status", "job_type").annotate(count=Count("id"))
        jobs = GaugeMetricFamily("jobs", "Jobs by stored status and type", labels=["status", "job_type"])
        active = GaugeMetricFamily("active_jobs", "Jobs pending or running", labels=["status"])
        active_counts = {JobStatus.PENDING: 0, JobStatus.RUNNING: 0}
        for status, job_type, count in by_status_type:
            jobs.add_metric([status, job_type], count)
            if status in active_counts:
                active_counts[status] += count
        for status, count in active_counts.items():
            active.add_metric([status], count)
        yield jobs
        yield active

        now = timezone.now()
        # The dashboard's rule: a pending job past its deadline is expired, not the oldest one waiting.
        oldest = oldest_waiting_since(now=now)
        age = GaugeMetricFamily("oldest_pending_job_age_seconds", "Age of the oldest job waiting for a miner (0: none)")
        age.add_metric([], (now - oldest).total_seconds() if oldest else 0)
        yield age

        miners = GaugeMetricFamily("registered_miners", "Registered miners by status", labels=["status"])
        counts: dict[str, int] = {}
        for miner in Miner.objects.only("status", "last_heartbeat", "disabled_at"):
            status = "disabled" if miner.disabled_at else effective_miner_status(miner)
            counts[status] = counts.get(status, 0) + 1
        for status in ("active", "draining", "inactive", "disabled"):
            miners.add_metric([status], counts.get(status, 0))
        yield miners

        def total(name: str, documentation: str, count: int) -> CounterMetricFamily:
            family = CounterMetricFamily(name, documentation)
            family.add_metric([], count)
            return family

        events = JobEvent.objects
        yield total(
            "job_leases_expired",
            "Leases that lapsed",
            JobAttempt.objects.filter(outcome=AttemptOutcome.LEASE_EXPIRED).count(),
        )
        yield total(
            "jobs_requeued",
            "Running jobs sent back to the queue",
            events.filter(from_status=JobStatus.RUNNING, to_status=JobStatus.PENDING).count(),
        )
        yield total(
            "jobs_expired", "Jobs whose time to live ran out", events.filter(to_status=JobStatus.EXPIRED).count()
        )
        yield total("receipts_issued", "Signed receipts", Receipt.objects.count())
        yield total(
            "payments_credited",
            "Bitcoin payments credited",
            Payment.objects.filter(status=PaymentStatus.CONFIRMED).count(),
        )
        pending_payments = GaugeMetricFamily("payments_open", "Payments waiting for bitcoin", labels=["status"])
        for status in (PaymentStatus.PENDING, PaymentStatus.CONFIRMING):
            pending_payments.add_metric([status], Payment.objects.filter(status=status).count())
        yield pending_payments
        late = GaugeMetricFamily(
            "payment_late_deposits_unresolved", "Bitcoin that reached a closed payment's address, awaiting an operator"
        )
        late.add_metric([], LateDeposit.objects.filter(status=LateDepositStatus.OPEN).count())
        yield late
        yield total(
            "payment_receive_addresses_skipped",
            "Receive indexes skipped because the chain already showed history for them",
            SkippedAddress.objects.count(),
        )


def metrics_view(request: HttpRequest) -> HttpResponse:
    if settings.METRICS_TOKEN:
        offered = request.META.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(offered.encode(), settings.METRICS_TOKEN.encode()):
            return json_error_response(401, "AUTHENTICATION_REQUIRED", "Metrics need Authorization: Bearer <token>.")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    database = CollectorRegistry()
    database.register(DatabaseCollector())
    # Two expositions one after the other are one valid exposition: their metric names differ.
    return HttpResponse(generate_latest(processes) + generate_latest(database), content_type=CONTENT_TYPE_LATEST)
