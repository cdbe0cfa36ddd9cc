"""The BTC→AITBC rate: each new value is a row of its history, checked against the current one."""

from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from aitbc_site import amounts
from exchange.backends import SATOSHI
from exchange.models import ExchangeRate
from exchange.selectors import current_rate


def rate_set(*, btc_to_aitbc: Decimal, source: str, force: bool = False) -> ExchangeRate:
    """Record a new rate. A change of more than RATE_MAX_CHANGE is refused unless forced."""
    if btc_to_aitbc <= 0 or not amounts.in_range(btc_to_aitbc):
        raise ValueError(f"the rate must be positive and at most {amounts.MAX_TEXT}")
    current = current_rate()
    change = abs(btc_to_aitbc - current.btc_to_aitbc) / current.btc_to_aitbc
    if change > settings.RATE_MAX_CHANGE and not force:
        raise ValueError(
            f"the rate would change by {change:.1%} (from {current.btc_to_aitbc} to {btc_to_aitbc}), more than "
            f"RATE_MAX_CHANGE {settings.RATE_MAX_CHANGE:.0%}; use --force if that is right"
        )
    return ExchangeRate.objects.create(
        btc_to_aitbc=btc_to_aitbc.quantize(SATOSHI), source=source[:500], created_at=timezone.now()
    )
