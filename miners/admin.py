
from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.timesince import timesince

from aitbc_site.admin_site import ReadOnlyModelAdmin, operator_name, short_id
from miners.models import Miner, MinerStatus
from miners.selectors import effective_miner_status, silent_since
from miners.services import miner_disable, miner_enable, miner_set_draining


class EffectiveStatusFilter(admin.SimpleListFilter):
    """The status as it reads now: a miner silent for MINER_HEARTBEAT_TIMEOUT is inactive before maintenance says so."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(MinerStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Miner]) -> QuerySet[Miner]:
        silent = Q(last_heartbeat__lt=silent_since(now=timezone.now()))
        if self.value() == MinerStatus.INACTIVE:
            return queryset.filter(silent | Q(status=MinerStatus.INACTIVE))
        if self.value() in MinerStatus.values:
            return queryset.filter(~silent, status=self.value())
        return queryset


class DisabledFilter(admin.SimpleListFilter):
    title = "disabled by an operator"
    parameter_name = "disabled"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Miner]) -> QuerySet[Miner]:
        if self.value() in ("yes", "no"):
            return queryset.filter(disabled_at__isnull=self.value() == "no")
        return queryset


@admin.register(Miner)
class MinerAdmin(ReadOnlyModelAdmin):
    list_display = [
        short_id, "effective_status", "is_disabled", "heartbeat_age", "capability_list", "max_concurrent_jobs",
        "address",
    ]
    list_filter = [EffectiveStatusFilter, DisabledFilter]
    search_fields = ["^id", "address", "owner__username", "owner__wallet_address", "endpoint"]
    search_help_text = "A miner id or its beginning, its payout address, its owner, its endpoint."
    actions = ["drain_miners", "disable_miners", "enable_miners"]
    fieldsets = [
        (None, {"fields": ["id", "effective_status", "status", "owner", "address", "endpoint"]}),
        ("Operator", {"fields": ["disabled_at", "disabled_by"]}),
        ("Hardware", {"fields": ["capabilities", "resources", "max_concurrent_jobs"]}),
        ("Times", {"fields": ["last_heartbeat", "registered_at", "updated_at"]}),
    ]

    @admin.display(description="status")
    def effective_status(self, miner: Miner) -> str:
        return MinerStatus(effective_miner_status(miner)).label

    @admin.display(description="disabled", boolean=True, ordering="disabled_at")
    def is_disabled(self, miner: Miner) -> bool:
        return miner.disabled_at is not None

    @admin.display(description="last heartbeat", ordering="-last_heartbeat")
    def heartbeat_age(self, miner: Miner) -> str:
        return f"{timesince(miner.last_heartbeat)} ago"

    @admin.display(description="capabilities")
    def capability_list(self, miner: Miner) -> str:
        return ", ".join(miner.capabilities)

    @admin.action(description="Drain selected miners (no new jobs)", permissions=["operate"])
    def drain_miners(self, request: HttpRequest, queryset: QuerySet[Miner]) -> None:
        self.apply_service(request, queryset, service=lambda miner: miner_set_draining(miner=miner), done="drained")

    @admin.action(description="Disable selected miners", permissions=["operate"])
    def disable_miners(self, request: HttpRequest, queryset: QuerySet[Miner]) -> None:
        name = operator_name(request)
        self.apply_service(
            request, queryset, service=lambda miner: miner_disable(miner=miner, operator=name), done="disabled"
        )

    @admin.action(description="Re-enable selected miners", permissions=["operate"])
    def enable_miners(self, request: HttpRequest, queryset: QuerySet[Miner]) -> None:
        self.apply_service(request, queryset, service=lambda miner: miner_enable(miner=miner), done="re-enabled")
