from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from aitbc_site.admin_site import ReadOnlyModelAdmin, operator_name, short_id
from exchange.models import ExchangeRate, Payment
from exchange.services import payment_confirm_by_operator, payment_expire_by_operator


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
    fieldsets = [
        (None, {"fields": ["id", "user", "status", "note"]}),
        ("Amounts", {"fields": ["btc_amount", "aitbc_amount", "rate", "received_btc", "credited_aitbc"]}),
        ("Chain", {"fields": [
            "address", "derivation_index", "watching", "required_confirmations", "confirmations", "txid", "vout",
        ]}),
        ("Times", {"fields": [
            "created_at", "expires_at", "seen_at", "confirmed_at", "last_checked_at", "updated_at",
        ]}),
    ]

    @admin.display(description="confirmations")
    def confirmations_seen(self, payment: Payment) -> str:
        return f"{payment.confirmations}/{payment.required_confirmations}"

    @admin.action(description="Confirm and credit selected payments", permissions=["operate"])
    def confirm_payments(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        name = operator_name(request)
        self.apply_service(
            request,
            queryset,
            service=lambda payment: payment_confirm_by_operator(payment=payment, operator=name),
            done="confirmed",
        )

    @admin.action(description="Expire selected payments (no credit)", permissions=["operate"])
    def expire_payments(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        name = operator_name(request)
        self.apply_service(
            request,
            queryset,
            service=lambda payment: payment_expire_by_operator(payment=payment, operator=name),
            done="expired",
        )


@admin.register(ExchangeRate)
class ExchangeRateAdmin(ReadOnlyModelAdmin):
    """The rate's history; `manage.py update_rate` (with its check on large moves) records a new one."""

    list_display = ["created_at", "btc_to_aitbc", "source"]
    date_hierarchy = "created_at"
