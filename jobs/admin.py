from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.db.models import Count, Field, Q, QuerySet
from django.forms import Field as FormField
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.timesince import timesince

from aitbc_site.admin_site import ReadOnlyModelAdmin, ReadOnlyTabularInline, TimelineInline, operator_name, short_id
from jobs.models import Job, JobAttempt, JobEvent, JobStatus, JobTypePrice
from jobs.selectors import effective_status, job_type_prices, reads_expired, waiting
from jobs.services.cancellation import job_cancel
from jobs.services.operator_actions import job_fail_by_operator, job_requeue_by_operator
from jobs.services.transitions import operator_actor
from miners.admin import MinerAdmin
from miners.models import Miner


class EffectiveStatusFilter(admin.SimpleListFilter):
    """The status clients read: a pending job past its deadline is expired before maintenance stores it."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(JobStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        now = timezone.now()
        if self.value() == JobStatus.PENDING:
            return queryset.filter(waiting(now=now))
        if self.value() == JobStatus.EXPIRED:
            return queryset.filter(reads_expired(now=now))
        if self.value() in JobStatus.values:
            return queryset.filter(status=self.value())
        return queryset


class JobEventInline(TimelineInline):
    model = JobEvent


class JobAttemptInline(ReadOnlyTabularInline):
    model = JobAttempt
    fields = ["number", "miner", "started_at", "finished_at", "outcome", "reported_status"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[JobAttempt]:
        return super().get_queryset(request).select_related("miner")


@admin.register(Job)
class JobAdmin(ReadOnlyModelAdmin):
    list_display = [
        short_id, "effective_status", "job_type", "client", "miner_id_short", "attempts_used", "age", "priority",
    ]
    list_filter = [EffectiveStatusFilter, "job_type", "billed"]
    list_select_related = ["client"]
    search_fields = ["^id", "client__username", "client__wallet_address", "^miner__id", "idempotency_key"]
    search_help_text = "A job id or its beginning, the client's wallet or user name, a miner id, an idempotency key."
    date_hierarchy = "created_at"
    # Counting every job for "N total" on each page is a full scan of the biggest table.
    show_full_result_count = False
    actions = ["cancel_jobs", "requeue_jobs", "fail_jobs"]
    inlines = [JobEventInline, JobAttemptInline]
    fieldsets = [
        (None, {"fields": ["id", "effective_status", "stored_status", "job_type", "client", "miner", "priority"]}),
        ("Attempts", {"fields": ["attempts", "max_attempts", "handouts", "max_runtime_seconds", "progress"]}),
        ("Billing", {"fields": ["price", "billed"]}),
        ("Times", {"fields": [
            "created_at", "updated_at", "started_at", "completed_at", "expires_at", "not_before", "lease_expires_at",
        ]}),
        ("Request", {"fields": ["parameters", "requirements", "idempotency_key"]}),
        ("Outcome", {"fields": ["result", "error"]}),
    ]

    @admin.display(description="status")
    def effective_status(self, job: Job) -> str:
        return JobStatus(effective_status(job)).label

    @admin.display(description="stored status")
    def stored_status(self, job: Job) -> str:
        return job.get_status_display()

    @admin.display(description="miner")
    def miner_id_short(self, job: Job) -> str | None:
        return str(job.miner_id)[:8] if job.miner_id else None

    @admin.display(description="attempts")
    def attempts_used(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="age", ordering="-created_at")
    def age(self, job: Job) -> str:
        return timesince(job.created_at)

    @admin.action(description="Cancel selected jobs", permissions=["operate"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        name = operator_name(request)
        self.apply_service(
            request,
            queryset,
            service=lambda job: job_cancel(job=job, actor=operator_actor(name), reason=f"cancelled by operator {name}"),
            done="cancelled",
        )

    @admin.action(description="Requeue selected running jobs", permissions=["operate"])
    def requeue_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        name = operator_name(request)
        self.apply_service(
            request, queryset, service=lambda job: job_requeue_by_operator(job=job, operator=name), done="requeued"
        )

    @admin.action(description="Fail selected jobs", permissions=["operate"])
    def fail_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        name = operator_name(request)
        self.apply_service(
            request, queryset, service=lambda job: job_fail_by_operator(job=job, operator=name), done="failed"
        )


@admin.register(JobTypePrice)
class JobTypePriceAdmin(admin.ModelAdmin):
    """Prices are configuration, not state: operators edit them directly; a new price applies to jobs submitted
    after it (a job's price is fixed at submission)."""

    list_display = ["job_type", "price", "updated_at"]
    list_editable = ["price"]
    fields = ["job_type", "price", "updated_at"]
    readonly_fields = ["job_type", "updated_at"]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # A configured type nobody priced yet has no row; list it at its JOB_PRICES seed so it can be edited.
        job_type_prices()
        return super().changelist_view(request, extra_context)

    def formfield_for_dbfield(self, db_field: Field, request: HttpRequest, **kwargs: Any) -> FormField | None:
        if db_field.name == "price":
            # The database refuses a negative price; say so in the form instead of failing the save.
            kwargs["min_value"] = Decimal("0")
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # The types are JOB_TYPES; each gets its row from the changelist above.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: JobTypePrice | None = None) -> bool:
        return False


# The miner's page gains what only the jobs app knows, how many jobs each miner runs now, so that miners never
# imports jobs. Importing MinerAdmin registers it first; this replaces it with the same page plus that count.
admin.site.unregister(Miner)


def _with_running_jobs(fields: list[Any], *, after: str) -> list[Any]:
    place = fields.index(after) + 1
    return [*fields[:place], "running_jobs", *fields[place:]]


@admin.register(Miner)
class MinerWithJobsAdmin(MinerAdmin):
    list_display = _with_running_jobs(MinerAdmin.list_display, after="capability_list")
    fieldsets = [
        (name, {**options, "fields": _with_running_jobs(options["fields"], after="max_concurrent_jobs")})
        if name == "Hardware"
        else (name, options)
        for name, options in MinerAdmin.fieldsets
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Miner]:
        # Counted in the list's own query: one query per page, not one per miner.
        running = Count("jobs", filter=Q(jobs__status=JobStatus.RUNNING))
        return super().get_queryset(request).annotate(running_jobs=running)

    @admin.display(description="running jobs", ordering="running_jobs")
    def running_jobs(self, miner: Miner) -> int:
        return miner.running_jobs  # type: ignore[attr-defined]  (the annotation of get_queryset)
