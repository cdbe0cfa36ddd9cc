"""Amounts of money (AITBC, and BTC too: both have 8 decimal places): exact in Python, in the database and in SQL.

An amount is a `Decimal` in code and a 64-bit integer count of 10⁻⁸ units in its column, on SQLite and PostgreSQL
alike. SQLite keeps a DecimalField as a binary REAL (15 significant digits: the eighth decimal drifts from 10⁷ AITBC
on, and SUM(0.1, 0.2, -0.3) is not zero); integers are exact there, so comparisons, CHECK constraints, ORDER BY and
unique indexes on amounts are exact integer arithmetic on both databases.

The largest amount accepted anywhere (a request, a price, a user's balance, a payment) is MAX_AMOUNT, 10¹⁰, in
either sign: 10¹⁸ units, a ninth of what the column holds (2⁶³ - 1, COLUMN_MAX), so adding two amounts in range
never overflows it. Only the platform's ledger accounts, the counterparts of all users together, may go beyond
MAX_AMOUNT, up to COLUMN_MAX.
"""

import re
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from aitbc_site.exceptions import AmountOutOfRange

PLACES = 8
QUANTUM = Decimal(1).scaleb(-PLACES)
UNITS_PER_COIN = 10**PLACES
MAX_AMOUNT = Decimal(10**10)
MAX_TEXT = f"{MAX_AMOUNT:.8f}"
# What the column itself can hold; only values stored before MAX_AMOUNT existed may lie between the two.
_COLUMN_MAX_UNITS = 2**63 - 1
COLUMN_MAX = Decimal(_COLUMN_MAX_UNITS).scaleb(-PLACES)

# ASCII digits only: `\d` (and Decimal()) take any Unicode digit, so "\u0661" (Arabic-Indic one) would be read as 1.
# The whole part's length is bounded so that parsing stays cheap; anything beyond MAX_AMOUNT is refused anyway.
AMOUNT_PATTERN = r"-?[0-9]{1,32}(\.[0-9]{1,8})?"
_AMOUNT_TEXT = re.compile(AMOUNT_PATTERN, re.ASCII)


def parse(text: str) -> Decimal:
    """The amount a decimal string spells (ASCII digits, at most 8 places, no exponent); ValueError otherwise.
    The range is not checked here: see `check_range`."""
    if not isinstance(text, str) or not _AMOUNT_TEXT.fullmatch(text):
        raise ValueError(f"not a decimal string with at most {PLACES} decimal places, e.g. \"1.5\"")
    return Decimal(text)


def in_range(amount: Decimal) -> bool:
    return -MAX_AMOUNT <= amount <= MAX_AMOUNT


def fits_column(amount: Decimal) -> bool:
    """Whether an amount column can hold `amount`: platform accounts, the counterparts of every user, may hold
    totals beyond MAX_AMOUNT up to this."""
    return abs(amount) <= COLUMN_MAX


def check_range(amount: Decimal, *, what: str = "amount") -> Decimal:
    """`amount`, or AmountOutOfRange (400) if it is beyond ±MAX_AMOUNT."""
    if not in_range(amount):
        raise AmountOutOfRange(
            f"The {what} is beyond the largest amount accepted, {MAX_TEXT}.",
            details={"field": what, "value": str(amount), "max": MAX_TEXT},
        )
    return amount


def to_units(amount: Decimal) -> int:
    """The whole number of 10⁻⁸ units of `amount`. A value with more places is refused rather than rounded:
    rounding money silently is a bug's way of hiding."""
    if not amount.is_finite():
        raise ValueError(f"{amount} is not an amount")
    # Before quantize: a value far beyond the column has more digits at 8 places than Decimal's precision.
    if abs(amount) > COLUMN_MAX:
        raise ValueError(f"{amount} does not fit an amount column")
    if amount != amount.quantize(QUANTUM):
        raise ValueError(f"{amount} is not an amount with at most {PLACES} decimal places")
    return int(amount.scaleb(PLACES))


def from_units(units: int) -> Decimal:
    return Decimal(units).scaleb(-PLACES)


class AmountFormField(forms.DecimalField):
    """An amount in a form (the admin): ASCII digits, at most 8 places, within ±MAX_AMOUNT."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_value", MAX_AMOUNT)
        kwargs.setdefault("min_value", -MAX_AMOUNT)
        kwargs.pop("max_digits", None)
        kwargs.pop("decimal_places", None)
        super().__init__(max_digits=PLACES + 11, decimal_places=PLACES, **kwargs)

    def to_python(self, value: Any) -> Decimal | None:
        # Django's own parsing (Decimal()) reads any Unicode digit; the places and the range its validators check.
        if isinstance(value, str) and not value.isascii():
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class AmountField(models.Field):
    """A model field holding an amount: `Decimal` in Python, a bigint of 10⁻⁸ units in the column.

    Not a DecimalField subclass on purpose: nothing (SQLite's float converter, DRF's or the admin's decimal
    handling) may take the column for a decimal one. A value with more than 8 places, or beyond the column, is
    refused with ValueError, never rounded. Expressions mixing it with a bare Decimal (`F("balance") + amount`)
    have no output type and fail: such a Decimal would be in the wrong unit.
    """

    description = "An amount with 8 decimal places, stored as whole 10⁻⁸ units"

    def get_internal_type(self) -> str:
        return "BigIntegerField"

    def to_python(self, value: Any) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return Decimal(value)
        try:
            return parse(str(value))
        except ValueError:
            raise ValidationError(f"“{value}” is not an amount with at most {PLACES} decimal places.") from None

    def get_prep_value(self, value: Any) -> int | None:
        value = super().get_prep_value(value)
        if value is None:
            return None
        if isinstance(value, float):
            raise ValueError(f"an amount must not be a float: {value!r}")
        amount = self.to_python(value)
        assert amount is not None
        return to_units(amount)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Decimal | None:
        if value is None:
            return None
        # An int from the column; a Decimal from PostgreSQL's SUM(bigint), which is numeric.
        if isinstance(value, Decimal) and value == value.to_integral_value():
            value = int(value)
        if not isinstance(value, int):
            raise ValueError(f"an amount column holds {value!r}, not a whole number of units")
        return from_units(value)

    def value_to_string(self, obj: models.Model) -> str:
        value = self.value_from_object(obj)
        return "" if value is None else f"{value:.8f}"

    def formfield(self, **kwargs: Any) -> forms.Field | None:
        return super().formfield(**{"form_class": AmountFormField, **kwargs})
