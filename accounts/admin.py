import uuid
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME, AdminForm
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts import ledger
from accounts.models import AccountKind, ApiKey, LedgerAccount, LedgerEntry, User
from accounts.selectors import ledger_entries_for, user_balance
from accounts.services import api_key_issue, api_key_revoke
from aitbc_site.admin_site import OperatorModelAdmin, ReadOnlyModelAdmin, operator_name
from aitbc_site.amounts import AmountFormField
from aitbc_site.exceptions import ApplicationError

# Ledger entries shown on a user's or an account's page, newest first; the full history is in the database.
ENTRIES_SHOWN = 100


def _table_row(cells: tuple[str, ...], tag: str = "td") -> SafeString:
    return format_html("<tr>{}</tr>", format_html_join("", f"<{tag}>{{}}</{tag}>", ((cell,) for cell in cells)))


def _entries_table(entries: QuerySet[LedgerEntry], *, with_account: bool) -> SafeString:
    rows = [
        (
            f"{entry.created_at:%Y-%m-%d %H:%M:%S}",
            *([entry.account.get_kind_display()] if with_account else []),
            f"{entry.amount:+}",
            entry.posting.get_kind_display(),
            entry.posting.memo,
            entry.posting.actor,
            entry.posting.reference,
        )
        for entry in entries[:ENTRIES_SHOWN]
    ]
    if not rows:
        return format_html("<p>{}</p>", "No ledger entries.")
    headings = ("When (UTC)", *(["Account"] if with_account else []), "Amount", "Kind", "Memo", "Actor", "Reference")
    cut = len(rows) == ENTRIES_SHOWN
    more = format_html('<p class="help">The newest {} entries.</p>', ENTRIES_SHOWN) if cut else ""
    return format_html(
        "<table><thead>{}</thead><tbody>{}</tbody></table>{}",
        _table_row(headings, tag="th"),
        format_html_join("", "{}", ((_table_row(row),) for row in rows)),
        more,
    )


# --- users and balances -------------------------------------------------------------------------------------------


class BalanceAdjustmentForm(forms.Form):
    amount = AmountFormField(help_text="AITBC added to the available balance; negative to take some away.")
    reason = forms.CharField(
        max_length=500, widget=forms.Textarea(attrs={"rows": 3}), help_text="Recorded with the posting."
    )
    # Made when the form is first shown and part of the posting's reference: submitting the form twice (a double
    # click, a reload) applies the adjustment once.
    reference = forms.UUIDField(widget=forms.HiddenInput)

    def clean_amount(self) -> Decimal:
        amount: Decimal = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("An adjustment of zero changes nothing.")
        return amount


def _balance_of(kind: str) -> Subquery:
    return Subquery(LedgerAccount.objects.filter(user=OuterRef("pk"), kind=kind).values("balance")[:1])


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    """Users are made by wallet logins and key issuance; operators only switch access and set passwords here."""

    list_display = [
        "username", "wallet_address", "available_balance", "held_balance", "is_service", "is_staff", "is_active",
        "date_joined",
    ]
    list_filter = ["is_staff", "is_superuser", "is_active", "is_service"]
    search_fields = ["username", "wallet_address", "email"]
    actions = ["adjust_balance"]
    fieldsets = [
        (None, {"fields": ["username", "password", "email"]}),
        ("Wallet", {"fields": ["wallet_address", "is_service", "balance"]}),
        ("Access", {"fields": ["is_active", "is_staff", "is_superuser"]}),
        ("Dates", {"fields": ["date_joined", "last_login"]}),
        ("Ledger", {"fields": ["ledger_entries"]}),
    ]
    change_readonly_fields = [
        "username", "email", "wallet_address", "is_service", "balance", "is_superuser", "date_joined", "last_login",
        "ledger_entries",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return (
            super()
            .get_queryset(request)
            .annotate(available=_balance_of(AccountKind.AVAILABLE), held=_balance_of(AccountKind.HELD))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> list[str]:
        # Adding is the operator account form (user name and password); everything else about a user is made by
        # the services, so only access and the password change here.
        return [] if obj is None else self.change_readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        # Jobs, keys and the ledger keep their users; an operator deactivates one instead.
        return False

    def has_adjust_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.change_ledgeraccount")

    @admin.display(description="available", ordering="available")
    def available_balance(self, user: User) -> Decimal:
        return user.available or Decimal("0")  # type: ignore[attr-defined]  (annotated by get_queryset)

    @admin.display(description="held", ordering="held")
    def held_balance(self, user: User) -> Decimal:
        return user.held or Decimal("0")  # type: ignore[attr-defined]

    @admin.display(description="balance (AITBC)")
    def balance(self, user: User) -> str:
        figures = user_balance(user=user)
        return f"{figures['available']} available, {figures['held']} held"

    @admin.display(description="ledger entries")
    def ledger_entries(self, user: User) -> SafeString:
        return _entries_table(ledger_entries_for(user=user), with_account=True)

    @admin.action(description="Adjust balance…", permissions=["adjust"])
    def adjust_balance(self, request: HttpRequest, queryset: QuerySet[User]) -> TemplateResponse | None:
        """Ask for the amount and the reason, then post the adjustment to each selected user's available balance."""
        if "apply" in request.POST:
            form = BalanceAdjustmentForm(request.POST)
            if form.is_valid():
                self._apply_adjustment(request, queryset, **form.cleaned_data)
                return None
        else:
            form = BalanceAdjustmentForm(initial={"reference": uuid.uuid4()})
        context = {
            **self.admin_site.each_context(request),
            "title": "Adjust balance",
            "opts": self.opts,
            "users": queryset,
            "form": form,
            "adminform": AdminForm(form, [(None, {"fields": ["amount", "reason"]})], {}),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/accounts/user/adjust_balance.html", context)

    def _apply_adjustment(
        self, request: HttpRequest, queryset: QuerySet[User], *, amount: Decimal, reason: str, reference: uuid.UUID
    ) -> None:
        operator = operator_name(request)
        for user in queryset:
            try:
                posting = ledger.adjust(
                    user_id=user.pk, amount=amount, reason=reason, operator=operator,
                    reference=f"adjustment:{reference}:{user.pk}",
                )
            except ApplicationError as error:
                self.message_user(request, f"{user}: {error.message}", messages.ERROR)
                continue
            if posting is None:
                self.message_user(request, f"{user}: this adjustment was already applied.", messages.WARNING)
                continue
            self.log_change(request, user, f"Balance adjusted by {amount:+} AITBC by operator {operator}: {reason}")
            self.message_user(
                request, f"Adjusted the available balance of {user} by {amount:+} AITBC.", messages.SUCCESS
            )


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "owner", "kind", "balance"]
    list_filter = ["kind"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__wallet_address"]
    fieldsets = [(None, {"fields": ["id", "user", "kind", "balance"]}), ("Ledger", {"fields": ["entries"]})]

    @admin.display(description="owner", ordering="user__username")
    def owner(self, account: LedgerAccount) -> str:
        return str(account.user) if account.user else "platform"

    @admin.display(description="ledger entries")
    def entries(self, account: LedgerAccount) -> SafeString:
        return _entries_table(account.entries.select_related("posting"), with_account=False)


# --- API keys -----------------------------------------------------------------------------------------------------


class ApiKeyIssueForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["role", "name", "user"]
        labels = {"user": "Owner"}
        help_texts = {"user": "Leave empty to issue the key to a new service user of its own (never billed)."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "user" in self.fields:
            self.fields["user"].required = False


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() in ("yes", "no"):
            return queryset.filter(revoked_at__isnull=self.value() == "no")
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(OperatorModelAdmin):
    """Keys are issued by the service, which shows the plaintext once; only its hash is stored, and never shown."""

    form = ApiKeyIssueForm
    list_display = ["name", "prefix", "role", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["role", RevokedFilter]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username", "user__wallet_address"]
    autocomplete_fields = ["user"]
    actions = ["revoke_keys"]
    add_fields = ["role", "name", "user"]
    view_fields = ["id", "name", "role", "prefix", "user", "created_at", "last_used_at", "revoked_at"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return self.add_fields if obj is None else self.view_fields

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return [] if obj is None else self.view_fields

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # A revoked key stays, so its requests in logs and its last use can still be traced.
        return False

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        # Only the add form gets here (keys are never edited). The service writes the row; `obj` then becomes that
        # row, so the admin's log entry and redirect name the issued key.
        issued, raw_key = api_key_issue(role=obj.role, name=obj.name, user=form.cleaned_data["user"])
        obj.pk = issued.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            format_html(
                "The new key of “{}” is <code>{}</code> — copy it now: it is not stored and cannot be shown again.",
                issued.name, raw_key,
            ),
            messages.SUCCESS,
        )

    @admin.action(description="Revoke selected keys", permissions=["operate"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        self.apply_service(request, queryset, service=lambda key: api_key_revoke(api_key=key), done="revoked")
