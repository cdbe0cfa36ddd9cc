from collections.abc import Callable
from functools import partial

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest

from aitbc_site.admin_site import ReadOnlyModelAdmin, ReadOnlyTabularInline, TimelineInline, operator_name, short_id
from exchange.models import ExchangeRate, LateDeposit, LateDepositStatus, Payment, PaymentEvent, SkippedAddress
from exchange.services.crediting import payment_confirm_by_operator
from exchange.services.expiry import payment_expire_by_operator
from exchange.services.late_deposits import late_deposit_close, late_deposit_credit


class PaymentEventInline(TimelineInline):
    model = PaymentEvent


class LateDepositInline(ReadOnlyTabularInline):
    model = LateDeposit
    fields = ["txid", "vout", "amount_btc", "confirmations", "status", "seen_at", "resolved_by", "resolution_note"]
    readonly_fields = fields
    show_change_link = True


@admin.register(Payment)
class PaymentAdmin(ReadOnlyModelAdmin):
    list_display = [
        short_id, "user", "status", "btc_amount", "aitbc_amount", "received_btc", "confirmations_seen", "created_at",
        "expires_at", "credited_aitbc",
    ]
    list_filter = ["status", "watching"]
    list_select_related = ["user"]
    search_fields = ["^id", "address", "txid", "user__username", "user__wallet_address"]
    search_help_text = "A payment id or its beginning, a bitcoin address or transaction id, the buyer."
    date_hierarchy = "created_at"
    actions = ["confirm_payments", "expire_payments"]
    inlines = [PaymentEventInline, LateDepositInline]
    fieldsets = [
        (None, {"fields": ["id", "user", "status", "note"]}),
        ("Amounts", {"fields": ["btc_amount", "aitbc_amount", "rate", "received_btc", "credited_aitbc"]}),
        ("Chain", {"fields": [
            "address", "derivation_index", "chain_height", "watching", "required_confirmations", "confirmations",
            "txid", "vout", "counted_outputs",
        ]}),
        ("Times", {"fields": [
            "created_at", "expires_at", "seen_at", "confirmed_at", "last_checked_at", "deposit_watch_until",
            "updated_at",
        ]}),
    ]

    @admin.display(description="confirmations")
    def confirmations_seen(self, payment: Payment) -> str:
        return f"{payment.confirmations}/{payment.required_confirmations}"

    @admin.action(description="Confirm and credit selected payments", permissions=["operate"])
    def confirm_payments(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        self._as_operator(request, queryset, payment_confirm_by_operator, done="confirmed")

    @admin.action(description="Expire selected payments (no credit)", permissions=["operate"])
    def expire_payments(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        self._as_operator(request, queryset, payment_expire_by_operator, done="expired")

    def _as_operator(
        self, request: HttpRequest, queryset: QuerySet[Payment], service: Callable[..., Payment], *, done: str
    ) -> None:
        name = operator_name(request)
        self.apply_service(
            request, queryset, service=lambda payment: service(payment=payment, operator=name), done=done
        )


@admin.register(ExchangeRate)
class ExchangeRateAdmin(ReadOnlyModelAdmin):
    """The rate's history; `manage.py update_rate` (with its check on large moves) records a new one."""

    list_display = ["created_at", "btc_to_aitbc", "source"]
    date_hierarchy = "created_at"


class LateDepositActionForm(ActionForm):
    reason = forms.CharField(
        max_length=500, required=False, help_text="Recorded with the resolution (and the posting, when credited)."
    )


@admin.register(LateDeposit)
class LateDepositAdmin(ReadOnlyModelAdmin):
    """Bitcoin that reached a closed payment's address. Resolved only through the actions, each with a reason."""

    list_display = [
        "seen_at", "status", "amount_btc", "confirmations", "payment_link", "txid", "vout", "resolved_by",
        "credited_aitbc",
    ]
    list_filter = ["status"]
    list_select_related = ["payment", "payment__user"]
    search_fields = ["txid", "payment__address", "=payment__id", "payment__user__wallet_address"]
    search_help_text = "A transaction id, a payment's address or id, the buyer's wallet address."
    date_hierarchy = "seen_at"
    action_form = LateDepositActionForm
    actions = ["credit_deposits", "mark_refunded", "mark_ignored"]
    fieldsets = [
        (None, {"fields": ["payment", "status", "amount_btc", "txid", "vout", "block_height", "confirmations"]}),
        ("Resolution", {"fields": ["seen_at", "resolved_by", "resolved_at", "resolution_note", "credited_aitbc"]}),
    ]

    @admin.display(description="payment", ordering="payment__created_at")
    def payment_link(self, deposit: LateDeposit) -> str:
        return f"{str(deposit.payment_id)[:8]} ({deposit.payment.status}) {deposit.payment.user}"

    def _resolve(
        self, request: HttpRequest, queryset: QuerySet[LateDeposit], *, service: Callable[..., object], done: str
    ) -> None:
        name, reason = operator_name(request), request.POST.get("reason", "")
        self.apply_service(
            request, queryset, service=lambda deposit: service(deposit=deposit, operator=name, reason=reason), done=done
        )

    @admin.action(description="Credit to the buyer at the current rate (give a reason)", permissions=["operate"])
    def credit_deposits(self, request: HttpRequest, queryset: QuerySet[LateDeposit]) -> None:
        self._resolve(request, queryset, service=late_deposit_credit, done="credited")

    @admin.action(description="Mark refunded to the sender (give a reason)", permissions=["operate"])
    def mark_refunded(self, request: HttpRequest, queryset: QuerySet[LateDeposit]) -> None:
        refund = partial(late_deposit_close, status=LateDepositStatus.REFUNDED)
        self._resolve(request, queryset, service=refund, done="marked refunded")

    @admin.action(description="Mark ignored, nothing credited (give a reason)", permissions=["operate"])
    def mark_ignored(self, request: HttpRequest, queryset: QuerySet[LateDeposit]) -> None:
        ignore = partial(late_deposit_close, status=LateDepositStatus.IGNORED)
        self._resolve(request, queryset, service=ignore, done="marked ignored")


@admin.register(SkippedAddress)
class SkippedAddressAdmin(ReadOnlyModelAdmin):
    """Receive indexes never handed out because the chain already showed history for them (a reused xpub)."""

    list_display = ["derivation_index", "address", "created_at"]
    search_fields = ["address"]
