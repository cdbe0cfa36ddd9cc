"""The figures of the operators' dashboard on the admin index: how the queue, the miners and the exchange stand now.

Each figure is one aggregate query, so the page costs the same however many jobs, miners or payments there are.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Case, Count, F, Q, Value, When
from django.db.models.functions import TruncHour
from django.utils import timezone

from exchange.models import Payment, PaymentStatus
from jobs import selectors as job_selectors
from jobs.models import Job, JobEvent, JobStatus
from miners import selectors as miner_selectors
from miners.models import Miner, MinerStatus

CHART_HOURS = 24
# The chart's drawing area in SVG user units; the browser scales the whole picture to the width it has.
CHART_BAR_WIDTH = 20
CHART_BAR_GAP = 4
CHART_HEIGHT = 120


@dataclass(frozen=True)
class StatusCount:
    status: str
    label: str
    count: int


@dataclass(frozen=True)
class MinerCounts:
    """Every miner in exactly one group: disabled by an operator, else silent (inactive), else its own status."""

    active: int
    draining: int
    inactive: int
    disabled: int


@dataclass(frozen=True)
class HourBar:
    """One hour of the chart: jobs completed from `start` to an hour later, and its bar in SVG user units."""

    start: datetime
    count: int
    x: int
    y: int
    width: int
    height: int

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=1)

    @property
    def center(self) -> int:
        return self.x + self.width // 2


@dataclass(frozen=True)
class Chart:
    bars: list[HourBar]
    peak: int
    width: int
    height: int


@dataclass(frozen=True)
class Dashboard:
    now: datetime
    jobs_by_status: list[StatusCount]
    miners: MinerCounts
    oldest_pending_since: datetime | None
    completed_per_hour: Chart
    payments_pending: int
    payments_to_review: int

    @property
    def oldest_pending_age(self) -> timedelta | None:
        return None if self.oldest_pending_since is None else self.now - self.oldest_pending_since


def jobs_by_status(*, now: datetime) -> list[StatusCount]:
    """Jobs per status as clients read it: a pending job past its deadline counts as expired before maintenance
    stores it (the rule of jobs.selectors.effective_status)."""
    effective = Case(When(job_selectors.overdue(now=now), then=Value(JobStatus.EXPIRED.value)), default=F("status"))
    counts = dict(
        Job.objects.order_by().annotate(effective=effective).values("effective").annotate(n=Count("pk"))
        .values_list("effective", "n")
    )
    return [StatusCount(status, label, counts.get(status, 0)) for status, label in JobStatus.choices]


def miner_counts(*, now: datetime) -> MinerCounts:
    """Miners by how they read now: one silent for MINER_HEARTBEAT_TIMEOUT is inactive whatever its stored status."""
    disabled = Q(disabled_at__isnull=False)
    silent = ~disabled & miner_selectors.reads_inactive(now=now)
    working = ~disabled & ~silent
    counts = Miner.objects.aggregate(
        active=Count("pk", filter=working & Q(status=MinerStatus.ACTIVE)),
        draining=Count("pk", filter=working & Q(status=MinerStatus.DRAINING)),
        inactive=Count("pk", filter=silent),
        disabled=Count("pk", filter=disabled),
    )
    return MinerCounts(**counts)


def completed_per_hour(*, now: datetime, hours: int = CHART_HOURS) -> list[tuple[datetime, int]]:
    """Jobs completed in each of the last `hours` clock hours (UTC), oldest first, the current hour last.

    Counted from the timeline's `completed` events (indexed by status and time), so a job counts once, in the hour it
    completed, whichever path completed it.
    """
    current_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    first_hour = current_hour - timedelta(hours=hours - 1)
    counted = dict(
        JobEvent.objects.filter(to_status=JobStatus.COMPLETED, at__gte=first_hour, at__lte=now)
        .order_by()
        .annotate(hour=TruncHour("at", tzinfo=UTC))
        .values("hour")
        .annotate(n=Count("pk"))
        .values_list("hour", "n")
    )
    hours_shown = [first_hour + timedelta(hours=index) for index in range(hours)]
    return [(hour, counted.get(hour, 0)) for hour in hours_shown]


def bar_chart(counts: list[tuple[datetime, int]]) -> Chart:
    """Lay hourly counts out as bars, the tallest filling the chart; a non-zero count is always at least 1 unit high."""
    peak = max((count for _, count in counts), default=0)
    bars = []
    for index, (start, count) in enumerate(counts):
        height = 0 if peak == 0 else max(round(count * CHART_HEIGHT / peak), 1 if count else 0)
        bars.append(
            HourBar(
                start=start, count=count, x=index * (CHART_BAR_WIDTH + CHART_BAR_GAP), y=CHART_HEIGHT - height,
                width=CHART_BAR_WIDTH, height=height,
            )
        )
    return Chart(
        bars=bars, peak=peak, width=len(counts) * (CHART_BAR_WIDTH + CHART_BAR_GAP) - CHART_BAR_GAP, height=CHART_HEIGHT
    )


def payment_counts() -> tuple[int, int]:
    """(payments waiting for their bitcoin or its confirmations, payments held for an operator's review)."""
    counts = Payment.objects.aggregate(
        pending=Count("pk", filter=Q(status__in=[PaymentStatus.PENDING, PaymentStatus.CONFIRMING])),
        review=Count("pk", filter=Q(status__in=[PaymentStatus.UNDERPAID, PaymentStatus.NEEDS_REVIEW])),
    )
    return counts["pending"], counts["review"]


def dashboard(*, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    payments_pending, payments_to_review = payment_counts()
    return Dashboard(
        now=now,
        jobs_by_status=jobs_by_status(now=now),
        miners=miner_counts(now=now),
        oldest_pending_since=job_selectors.oldest_waiting_since(now=now),
        completed_per_hour=bar_chart(completed_per_hour(now=now)),
        payments_pending=payments_pending,
        payments_to_review=payments_to_review,
    )
