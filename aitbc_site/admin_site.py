"""The operators' admin site: the dashboard on its index, and the base classes the apps' admin modules build on.

Operators change state only through actions that call the apps' services, never by editing a row: the models whose
rows services own are registered read-only, and their actions are gated by the model's `change` permission.

This module is also where INSTALLED_APPS finds the admin's AppConfig, so it is imported while the app registry is
still loading: it must not import any models at module level.
"""

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth import get_permission_codename
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from aitbc_site.exceptions import ApplicationError


class CoordinatorAdminSite(admin.AdminSite):
    site_header = "AITBC Coordinator"
    site_title = "AITBC Coordinator"
    index_title = "Operations"
    # The coordinator has no site of its own at "/" to link to.
    site_url = None

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        # Imported here, not at the top: the dashboard reads models, and this module loads before they exist.
        from aitbc_site.dashboard import dashboard

        # The figures are about jobs above all; a staff account that may not see jobs gets the plain index.
        figures = dashboard() if request.user.has_perm("jobs.view_job") else None
        return super().index(request, extra_context={"dashboard": figures, **(extra_context or {})})


class CoordinatorAdminConfig(AdminConfig):
    default_site = "aitbc_site.admin_site.CoordinatorAdminSite"


def operator_name(request: HttpRequest) -> str:
    """The name services record as the operator who acted (events say `operator:<name>`)."""
    return request.user.get_username()


class OperatorModelAdmin(admin.ModelAdmin):
    """An admin whose actions call services, each object on its own, and report what each did."""

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Acting on rows through services needs the model's change permission, even where rows are read-only."""
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def apply_service(
        self, request: HttpRequest, queryset: QuerySet[Any], *, service: Callable[[Any], object], done: str
    ) -> None:
        """Call `service` on every selected object; log each success under the operator's name and show each refusal.

        `done` completes "… by operator <name>" in the log and the summary ("cancelled", "disabled" …). Each call is
        its own transaction: one object the service refuses does not undo the others.
        """
        operator = operator_name(request)
        succeeded = 0
        for obj in queryset:
            try:
                service(obj)
            except ApplicationError as error:
                self.message_user(request, f"{obj}: {error.message}", messages.ERROR)
                continue
            self.log_change(request, obj, f"{done.capitalize()} by operator {operator}.")
            succeeded += 1
        if succeeded:
            noun = self.opts.verbose_name if succeeded == 1 else self.opts.verbose_name_plural
            self.message_user(request, f"{done.capitalize()} {succeeded} {noun}.", messages.SUCCESS)


class ReadOnlyModelAdmin(OperatorModelAdmin):
    """Rows that only services write: operators look at them, and act through actions."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        # Everything shown is read-only, the fields a form could never hold (ids, timestamps) included.
        if self.fieldsets:
            return flatten_fieldsets(self.fieldsets)
        return [*all_field_names(self.model), *self.readonly_fields]


class ReadOnlyTabularInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class TimelineInline(ReadOnlyTabularInline):
    """An object's stored status events (a job's, a payment's), oldest first, as its timeline."""

    verbose_name = "event"
    verbose_name_plural = "timeline"
    fields = ["at", "from_status", "to_status", "actor", "reason"]


@admin.display(description="id", ordering="pk")
def short_id(obj: Model) -> str:
    """The first 8 digits of a UUID key: enough to tell rows apart in a list, and what the lists' search takes."""
    return str(obj.pk)[:8]


def all_field_names(model: type[Model]) -> list[str]:
    """The model's own fields in declaration order, for read-only pages that show everything."""
    return [field.name for field in model._meta.concrete_fields]
