"""The one reader of JSON request bodies: it refuses, before anything recursive sees them, bodies nested too deep,
and then refuses what JSON can carry but the API cannot keep exactly (duplicate keys, non-finite numbers, integers
past 64 bits, text that is not Unicode, NUL characters), so every database stores and every answer renders what
was accepted.

Why each refusal: Python's C JSON decoder and DRF's validators recurse once per level, and a body of 60,000 `[`
overflows a worker thread's C stack (the worker dies with every request in flight on it). A lone surrogate is
stored by SQLite but cannot be encoded as UTF-8 when answered; PostgreSQL refuses it and NUL outright. `1e999`
decodes to infinity, which standard JSON cannot write back. Duplicate keys leave which value counts to the parser.
"""

import itertools
import json
import re
from array import array
from typing import Any

from rest_framework import parsers

from aitbc_site.exceptions import ApplicationError, ValidationFailed

MAX_JSON_DEPTH = 64
# The largest integer a 64-bit column holds, and JSON numbers at most as long as ±(2⁶³-1) written out.
MAX_JSON_INTEGER = 2**63 - 1
_LONGEST_INTEGER_DIGITS = len(str(MAX_JSON_INTEGER))

# Escapes, then strings, are cut out so that brackets inside strings are not counted as nesting. Two passes of
# patterns that cannot backtrack keep this linear: one pattern for a string with its escapes rescans the rest of
# the body from every quote of an unterminated string full of `\"`, quadratic in the body's size.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
# Every byte but the four brackets is deleted; openers become +1 and closers -1 as signed bytes.
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", bytes([1, 1, 255, 255]))
_DIGIT_RUN_PAST_64_BITS = re.compile(rb"\d{%d}" % (_LONGEST_INTEGER_DIGITS,))
_NOT_UNICODE_OR_NUL = re.compile("[\x00\ud800-\udfff]")


class JsonTooDeep(ApplicationError):
    code = "JSON_TOO_DEEP"
    default_message = f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted."


class MalformedJson(ApplicationError):
    code = "MALFORMED_JSON"
    default_message = "The body is not valid JSON."


def nesting_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body`, read as JSON, nests arrays and objects deeper than `limit` (counted from the root).

    Linear and without recursion, in C loops only: a body with no more openers than the limit cannot exceed it;
    otherwise strings are cut out and the running sum of +1 per opener and -1 per closer is taken."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", _ESCAPE.sub(b"", body)).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(itertools.accumulate(array("b", brackets)), default=0) > limit


def decode_json(body: bytes) -> Any:
    """Parse a request body as strict JSON, or raise the API's error for what is wrong with it."""
    if nesting_exceeds(body):
        raise JsonTooDeep()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedJson(f"The body is not UTF-8: {error.reason} at byte {error.start}.") from None
    # Each hook costs a call per value, so the one for integers is given only when a digit run long enough to pass
    # 64 bits exists at all; the walk below then finds where such an integer is.
    may_hold_large_integers = _DIGIT_RUN_PAST_64_BITS.search(body) is not None
    try:
        value = json.loads(
            text, object_pairs_hook=_object_without_duplicates, parse_constant=_refuse_constant,
            parse_float=_finite_float, parse_int=_integer_of_bounded_length if may_hold_large_integers else None,
        )
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise MalformedJson(f"The body is not valid JSON: {error.msg} ({where}).") from None
    # Lone surrogates and NUL can only come from \u escapes: raw ones are not valid UTF-8 or JSON.
    may_hold_bad_text = b"\\u" in body
    if may_hold_bad_text or may_hold_large_integers:
        _refuse_values_kept_inexactly(value, texts=may_hold_bad_text, integers=may_hold_large_integers)
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise MalformedJson(
            f"The key {_printable(duplicate)!r} appears twice in one object.", details={"key": _printable(duplicate)}
        )
    return value


def _refuse_constant(name: str) -> Any:
    raise MalformedJson(f"{name} is not a JSON number; numbers must be finite.")


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise MalformedJson(f"The number {text[:40]} is too large to be kept; numbers must be finite.")
    return number


# Stands in for an integer too long to be worth converting (Python's int() is quadratic in the digits), so that the
# walk below refuses it naming where it is, like any other integer out of range.
_OVERSIZED_INTEGER = object()


def _integer_of_bounded_length(text: str) -> Any:
    return _OVERSIZED_INTEGER if len(text) > _LONGEST_INTEGER_DIGITS + 1 else int(text)


_OUT_OF_RANGE = "Integers must lie within ±(2⁶³-1)."
_BAD_TEXT = {
    "\x00": "NUL characters are not accepted.",
    "": "Text must be valid Unicode: a lone UTF-16 surrogate is not.",
}


def _refuse_values_kept_inexactly(value: Any, *, texts: bool, integers: bool) -> None:
    """Walk the decoded value (its depth is already bounded) for a key or string holding a lone surrogate or NUL,
    or an integer past 64 bits, and refuse the first found, naming where it is."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            if texts:
                _check_text(item, path)
        elif item is _OVERSIZED_INTEGER or (
            integers and isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_JSON_INTEGER
        ):
            _refuse(path, _OUT_OF_RANGE)
        elif isinstance(item, dict):
            for key, member in item.items():
                member_path = f"{path}.{key}" if path else key
                if texts:
                    _check_text(key, member_path)
                pending.append((member_path, member))
        elif isinstance(item, list):
            pending.extend((f"{path}[{index}]", member) for index, member in enumerate(item))


def _check_text(text: str, path: str) -> None:
    found = _NOT_UNICODE_OR_NUL.search(text)
    if found is not None:
        _refuse(path, _BAD_TEXT.get(found.group(), _BAD_TEXT[""]))


def _refuse(path: str, problem: str) -> None:
    """Raise VALIDATION_ERROR under the body's top-level field, as a serializer's error would be, saying where."""
    where = _printable(path)
    field = re.split(r"[.\[]", where, maxsplit=1)[0] if where else ""
    message = f"At {where}: {problem}" if where and where != field else problem
    raise ValidationFailed(f"{where or 'The body'}: {problem}", details={field or "non_field_errors": [message]})


def _printable(text: str) -> str:
    return _NOT_UNICODE_OR_NUL.sub("\N{REPLACEMENT CHARACTER}", text)


class StrictJSONParser(parsers.JSONParser):
    """DRF's JSON parser, reading through `decode_json`. JSON between systems is UTF-8 (RFC 8259), whatever
    charset a Content-Type may name."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        return decode_json(stream.read() if stream is not None else b"")
