"""Hostile JSON values, and otherwise valid request bodies built from each operation's request schema with one
hostile value spliced in, so the value reaches that field's own validation rather than only an unknown-field check.

A hostile value is raw JSON text, not a Python value: a lone surrogate escape, `NaN`, `1e999` and a duplicate key
have no Python value that `json.dumps` would write back as the same text.
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

BODY_CAP = 1024 * 1024  # DATA_UPLOAD_MAX_MEMORY_SIZE
MAX_DEPTH = 64  # the deepest JSON the API must accept; one level more is JSON_TOO_DEEP
_VALUE = "\x01hostile-value\x01"
_KEY = "\x01hostile-key\x01"
_AMOUNT = re.compile(r"\\d\{1,16\}")


@dataclass(frozen=True)
class Slot:
    """A place in a baseline body: a path of keys and indexes, the schema there, and whether it lies inside a
    free-form object (a job's `parameters`, a result), where any JSON value is legal content."""

    path: tuple[str | int, ...]
    schema: dict[str, Any]
    free: bool

    @property
    def name(self) -> str:
        return "body" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in self.path)

    @property
    def is_object(self) -> bool:
        return self.schema.get("type") == "object" or "properties" in self.schema or self.free

    @property
    def is_amount(self) -> bool:
        return bool(_AMOUNT.search(self.schema.get("pattern", "")))

    @property
    def kind(self) -> str:
        """What the field's validation must insist on: a JSON type, or "any" (free-form content)."""
        if self.free:
            return "any"
        if "enum" in self.schema:
            return "string"
        return str(self.schema.get("type", "any"))

    @property
    def checks_digits(self) -> bool:
        """Whether the field is a number, an amount, an id or a pattern, where non-ASCII digits must be refused."""
        schema = self.schema
        return not self.free and (
            self.kind in ("integer", "number") or "pattern" in schema or schema.get("format") == "uuid"
        )


@dataclass(frozen=True)
class Hostile:
    """A hostile JSON fragment, the category it belongs to, and the issue's answer to it: `refuse` (a 4xx);
    `status`/`code` when the answer is exact."""

    category: str
    text: str
    refuse: bool
    status: int | None = None
    code: str | None = None

    def describe(self) -> str:
        shown = self.text if len(self.text) <= 60 else f"{self.text[:40]}…({len(self.text)} chars)"
        return f"{self.category}: {shown}"


# --- schemas ------------------------------------------------------------------------------------------------------


def resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema or ("allOf" in schema and len(schema["allOf"]) == 1):
        if "$ref" in schema:
            named = components[schema["$ref"].rsplit("/", 1)[1]]
            schema = {**named, **{key: value for key, value in schema.items() if key != "$ref"}}
        else:
            inner = resolve(schema["allOf"][0], components)
            schema = {**inner, **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema


# Values that get a field past its own checks and onto the world's real objects.
def named_values(ids: dict[str, str]) -> dict[str, Any]:
    return {
        "miner_id": ids["miner_id"],
        "job_id": ids["job_id"],
        "address": "ait1" + "ab" * 20,
        "signature": "0x" + "ab" * 65,
        "nonce": "0123456789abcdef",
        "endpoint": "http://127.0.0.1:9/miner",
        "max_concurrent_jobs": 64,
        "max_price": "100",
        "aitbc_amount": "1",
        "btc_amount": "0.0001",
        "name": "hostile gate",
        "prompt": "hello",
        "progress": 0.5,
        # The original dialect's job: its type inside the otherwise free payload.
        "payload": {"type": "inference", "prompt": "hello", "nested": {"list": [1, "two", None, True]}},
    }


def baseline(schema: dict[str, Any], components: dict[str, Any], names: dict[str, Any], name: str = "") -> Any:
    """A valid-looking instance of the schema (every property, the world's ids where a name says so)."""
    schema = resolve(schema, components)
    if name in names:
        return names[name]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        if not properties:
            return {"prompt": "hello", "nested": {"list": [1, "two", None, True]}}
        return {key: baseline(value, components, names, key) for key, value in properties.items()}
    if kind == "array":
        return [baseline(schema.get("items", {}), components, names, name)]
    if kind == "integer":
        return schema.get("default", schema.get("minimum", 1))
    if kind == "number":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return schema.get("default", True)
    if schema.get("format") == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    return "x" * max(1, schema.get("minLength", 1))


def slots(value: Any, schema: dict[str, Any], components: dict[str, Any],
          path: tuple[str | int, ...] = (), free: bool = False) -> Iterator[Slot]:
    schema = resolve(schema, components)
    yield Slot(path, schema, free)
    free_here = free or (schema.get("type") == "object" and not schema.get("properties"))
    if isinstance(value, dict):
        for key, item in value.items():
            yield from slots(item, schema.get("properties", {}).get(key, {}), components, (*path, key), free_here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from slots(item, schema.get("items", {}), components, (*path, index), free_here)


def _set(document: Any, path: tuple[str | int, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[path[0]] = _set(document[path[0]], path[1:], value)  # type: ignore[index]
    return copy


def _get(document: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def _dumps(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def splice_value(document: Any, slot: Slot, text: str) -> bytes:
    return _dumps(_set(document, slot.path, _VALUE)).replace(json.dumps(_VALUE), text).encode("utf-8", "surrogatepass")


def splice_key(document: Any, slot: Slot, key_text: str) -> bytes:
    container = {**_get(document, slot.path), _KEY: 1}
    return _dumps(_set(document, slot.path, container)).replace(json.dumps(_KEY), key_text).encode("utf-8")


def duplicate_key(document: Any, slot: Slot) -> bytes:
    """The object at `slot` with its first key written twice (the second time with another value)."""
    container = _get(document, slot.path)
    key = next(iter(container))
    doubled = {**container, _KEY: "duplicate"}
    return _dumps(_set(document, slot.path, doubled)).replace(json.dumps(_KEY), json.dumps(key)).encode("utf-8")


# --- hostile values -----------------------------------------------------------------------------------------------

# Category 2: refused wherever they appear, in keys and values of every JSON field, free-form ones included.
SURROGATES = ['"\\ud800"', '"\\udfff"', '"a\\ud83d"', '"\\udc00\\ud800x"']
NULS = ['"\\u0000"', '"ab\\u0000cd"']
NON_FINITE = ["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1E400"]
BIG_INTEGERS = [str(2**63), str(-(2**63) - 1), "1" + "0" * 40]
# Category 7: non-ASCII decimal digits (Arabic-Indic, Devanagari, mathematical bold …).
UNICODE_DIGITS = ['"\u0661"', '"\u0661\u0662\u0663"', '"\u0663.\u0665"', '"\U0001d7cf"', '"\u0967\u0966"',
                  '"1\u0661"', '"\uff11\uff12"']
# Category 3: amounts of 16 or more digits, or above 10¹⁰.
BIG_AMOUNTS = ['"1234567890123456"', '"12345678901234567"', '"10000000001"', '"99999999999.5"',
               '"10000000000.00000001"']


def deep(depth: int, *, objects: bool = False) -> str:
    return ('{"a":' * depth + "1" + "}" * depth) if objects else ("[" * depth + "]" * depth)


def depth_of(slot: Slot) -> int:
    """How many containers enclose the slot's value, the body's root counting as one."""
    return len(slot.path) + 1


def wrong_types(slot: Slot) -> list[str]:
    return {
        "string": ["12", "1.5", "true", "[]", "{}"],
        "integer": ['"5"', "5.5", "true", "[]", "{}"],
        "number": ['"0.5"', "true", "[]", "{}"],
        "array": ['"x"', "1", "{}"],
        "object": ['"x"', "1", "[]"],
    }.get(slot.kind, [])


def huge_string(length: int) -> str:
    return '"' + "a" * length + '"'


def fixed_values(slot: Slot) -> list[Hostile]:
    """One of each hostile kind that fits the slot: the gate's fixed matrix, every category at every field."""
    too_deep = MAX_DEPTH + 2 - depth_of(slot)
    values = [
        Hostile("surrogate", SURROGATES[0], refuse=True),
        Hostile("nul", NULS[1], refuse=True),
        Hostile("non-finite", NON_FINITE[0], refuse=True, status=400, code="MALFORMED_JSON"),
        Hostile("non-finite", NON_FINITE[2], refuse=True, status=400, code="MALFORMED_JSON"),
        Hostile("big-integer", BIG_INTEGERS[0], refuse=True),
        Hostile("deep", deep(max(too_deep, 1)), refuse=True, status=400, code="JSON_TOO_DEEP"),
        # Deep, then a string that never ends, full of escaped quotes: a nesting count that matches strings with
        # their escapes in one pattern takes quadratic time here (minutes), which the request's time-out catches.
        Hostile("deep", "[" * max(too_deep, 1) + '"' + '\\"' * 100_000, refuse=True, status=400),
    ]
    values += [Hostile("wrong-type", text, refuse=True) for text in wrong_types(slot)[:2]]
    if slot.checks_digits:
        values.append(Hostile("unicode-digits", UNICODE_DIGITS[1], refuse=True))
    if slot.is_amount:
        values += [Hostile("amount", text, refuse=True, status=400, code="AMOUNT_OUT_OF_RANGE")
                   for text in BIG_AMOUNTS[1:3]]
    return values


@st.composite
def hostile_value(draw: st.DrawFn, slot: Slot) -> Hostile:
    """A generated hostile value for the slot, from every category that applies to it."""
    options = ["surrogate", "nul", "non-finite", "big-integer", "deep", "huge-string"]
    if wrong_types(slot):
        options.append("wrong-type")
    if slot.checks_digits:
        options.append("unicode-digits")
    if slot.is_amount:
        options += ["amount", "amount"]
    category = draw(st.sampled_from(options))
    if category in ("surrogate", "nul"):
        around = draw(st.text(max_size=12).map(lambda text: json.dumps(text)[1:-1]))
        where = draw(st.integers(0, len(around)))
        while where and around[where - 1] == "\\":  # never split an escape
            where -= 1
        poison = draw(st.sampled_from(["\\ud800", "\\udbff", "\\udc00", "\\udfff"] if category == "surrogate"
                                      else ["\\u0000"]))
        return Hostile(category, f'"{around[:where]}{poison}{around[where:]}"', refuse=True)
    if category == "non-finite":
        text = draw(st.sampled_from(NON_FINITE) | st.integers(309, 99999).map(lambda power: f"1e{power}"))
        return Hostile(category, text, refuse=True, status=400, code="MALFORMED_JSON")
    if category == "big-integer":
        number = draw(st.integers(2**63, 2**256) | st.integers(-(2**256), -(2**63) - 1))
        return Hostile(category, str(number), refuse=True)
    if category == "deep":
        least = max(MAX_DEPTH + 2 - depth_of(slot), 1)
        depth = draw(st.sampled_from([least, least + 10, 1000, 20000, 60000]))
        return Hostile(category, deep(depth, objects=draw(st.booleans())), refuse=True, status=400,
                       code="JSON_TOO_DEEP")
    if category == "huge-string":
        length = draw(st.sampled_from([1000, 65536, BODY_CAP // 2, BODY_CAP - 4096, BODY_CAP + 1]))
        return Hostile(category, huge_string(length), refuse=False)
    if category == "wrong-type":
        return Hostile(category, draw(st.sampled_from(wrong_types(slot))), refuse=True)
    if category == "unicode-digits":
        digits = st.characters(categories=["Nd"]).filter(lambda char: not char.isascii())
        text = draw(st.sampled_from(UNICODE_DIGITS) | st.text(digits, min_size=1, max_size=8).map(json.dumps))
        # As raw UTF-8 in the body (the fixed matrix sends them as \u escapes).
        return Hostile(category, json.dumps(json.loads(text), ensure_ascii=False), refuse=True)
    amount = draw(st.sampled_from(BIG_AMOUNTS)
                  | st.integers(10**10 + 1, 10**20).map(lambda number: f'"{number}"')
                  | st.integers(16, 40).map(lambda digits: '"' + "9" * digits + '"'))
    return Hostile("amount", amount, refuse=True, status=400, code="AMOUNT_OUT_OF_RANGE")


def hostile_key() -> st.SearchStrategy[Hostile]:
    """Keys for an object: surrogates, NUL, non-ASCII digits, a huge one."""
    return st.sampled_from([
        *(Hostile("surrogate-key", text, refuse=True) for text in SURROGATES),
        *(Hostile("nul-key", text, refuse=True) for text in NULS),
        Hostile("unicode-digit-key", '"\u0661\u0662"', refuse=False),
        Hostile("huge-key", huge_string(200_000), refuse=False),
    ])
