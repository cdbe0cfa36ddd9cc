from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import User
from exchange.exceptions import PaymentNotFound
from exchange.models import ExchangeRate, Payment


def current_rate() -> ExchangeRate:
    """The newest rate; the first read seeds the history with BTC_TO_AITBC_RATE."""
    rate = ExchangeRate.objects.order_by("-created_at", "-id").first()
    if rate is None:
        rate = ExchangeRate.objects.create(
            btc_to_aitbc=settings.BTC_TO_AITBC_RATE, source="BTC_TO_AITBC_RATE", created_at=timezone.now()
        )
    return rate


def payment_get_for_user(*, payment_id: UUID | str, user: User) -> Payment:
    try:
        return Payment.objects.get(pk=payment_id, user=user)
    except (Payment.DoesNotExist, ValueError, ValidationError):
        raise PaymentNotFound() from None


def payments_for_user(*, user: User) -> QuerySet[Payment]:
    return Payment.objects.filter(user=user)
