from argparse import ArgumentParser
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError

from exchange.services.rates import rate_set


def _read_field(document: Any, path: str) -> Decimal:
    value = document
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise CommandError(f"the answer has no field {path!r}")
    # Decimal() reads any Unicode digit (an Arabic-Indic one is 1); a rate is spelt in ASCII.
    if isinstance(value, bool) or not str(value).isascii():
        raise CommandError(f"field {path!r} is not a number: {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise CommandError(f"field {path!r} is not a number: {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise CommandError(f"field {path!r} is not a positive number: {value!r}")
    return number


class Command(BaseCommand):
    help = "Set the BTC→AITBC rate, given (--rate) or read from a JSON price endpoint (--source URL --field PATH)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        given = parser.add_mutually_exclusive_group(required=True)
        given.add_argument("--rate", help="AITBC per BTC, a decimal")
        given.add_argument("--source", help="URL of a JSON document holding the rate")
        parser.add_argument("--field", default="btc_to_aitbc", help="dotted path of the number in the document")
        parser.add_argument("--force", action="store_true", help="accept a change above RATE_MAX_CHANGE")

    def handle(self, *args: Any, rate: str | None, source: str | None, field: str, force: bool, **options: Any) -> None:
        if rate is not None:
            value, origin = _read_field({"rate": rate}, "rate"), "update_rate --rate"
        else:
            try:
                response = httpx.get(source, timeout=10, follow_redirects=True)
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as error:
                raise CommandError(f"could not read a JSON document from {source}: {error}") from None
            value, origin = _read_field(document, field), source
        try:
            new = rate_set(btc_to_aitbc=value, source=origin, force=force)
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"rate set: 1 BTC = {new.btc_to_aitbc} AITBC")
