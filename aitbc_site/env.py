"""Typed readers for configuration from the environment.

Every reader raises ImproperlyConfigured with the variable's name and the offending value, so a bad deployment stops
at start with a message an operator can act on instead of failing on the first request.
"""

import json
import os
import re
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

from aitbc_site import amounts

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value in (None, "") else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false, 1/0, yes/no), got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {number}")
    return number


def env_positive_int(name: str, default: int) -> int:
    return env_int(name, default, minimum=1)


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def env_parsed(name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
    """Read a variable through `parse`, which raises ValueError on bad input; `expected` describes the format."""
    value = _raw(name)
    if value in (None, ""):
        return default
    try:
        return parse(value)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} must be {expected}, got {value!r} ({error})") from None


def parse_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError("not a decimal number") from None
    if not value.is_finite():
        raise ValueError("not a finite number")
    return value


def parse_positive_decimal(text: str) -> Decimal:
    value = parse_decimal(text)
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def parse_fee_rate(text: str) -> Decimal:
    rate = parse_decimal(text)
    if not 0 <= rate <= 1:
        raise ValueError("out of range")
    return rate


def parse_job_prices(text: str) -> dict[str, Decimal]:
    prices = json.loads(text)
    if not isinstance(prices, dict) or not all(isinstance(price, str) for price in prices.values()):
        raise ValueError("expected an object whose values are decimal strings")
    parsed = {job_type: amounts.parse(price) for job_type, price in prices.items()}
    if any(price < 0 or not amounts.in_range(price) for price in parsed.values()):
        raise ValueError(f"prices must be from 0 to {amounts.MAX_TEXT}")
    return parsed


def parse_rate(text: str) -> str:
    """A django-ratelimit rate: a count per s, m, h or d (e.g. 100/m, 5/10s)."""
    if not re.fullmatch(r"[1-9]\d*/\d*[smhd]", text):
        raise ValueError("expected COUNT/PERIOD")
    return text


def serving_greenlets() -> bool:
    """Whether gevent has patched this process: gunicorn's gevent worker does before it loads Django."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("threading"))
