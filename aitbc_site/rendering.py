"""The API's JSON bodies: one renderer for every response, a strict check for answers that must go out exactly as
they are, and a way out for stored values JSON cannot carry.

A value can be stored that no JSON body can hold: SQLite keeps a JSON column as text, so a lone UTF-16 surrogate
(`"\\ud800"`) or a NaN read back from it becomes a Python value that UTF-8 cannot encode or strict JSON refuses. The
renderer raising on it would turn every read of that row into a 500 (and Django renders the response after the
view, so no exception handler sees it). Two rules follow:

- What a miner is handed must be exactly what was stored: a hand-out renders its documents with `render` before it
  commits, and sets aside a job whose document raises `Unrenderable` instead of handing it out.
- What a client reads may be shown with such values replaced (U+FFFD for a lone surrogate, null for a non-finite
  number): `JSONRenderer` does that only after the plain rendering failed, so a normal response costs nothing more.
"""

import logging
import math
import re
from typing import Any

from rest_framework import renderers

logger = logging.getLogger(__name__)

_SURROGATES = re.compile("[\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"


class Unrenderable(ValueError):
    """A document the API's renderer cannot write. `reason` says why in words that themselves render (never the
    offending value), `fields` the top-level keys whose values fail."""

    def __init__(self, reason: str, *, fields: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fields = fields


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer; a body holding stored values JSON cannot carry is answered with them replaced.

    Only the two failures stored JSON can cause are recovered, and only when replacing changed something: a value our
    code forgot to convert (a TypeError) or a circular structure still fails as the bug it is.
    """

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: dict[str, Any] | None = None
    ) -> bytes:
        try:
            return self.render_strict(data, accepted_media_type, renderer_context)
        except (UnicodeEncodeError, ValueError):
            replaced, count = renderable(data)
            if not count:
                raise
            logger.warning("A response held %d stored value(s) JSON cannot carry; they were answered replaced", count)
            return self.render_strict(replaced, accepted_media_type, renderer_context)

    def render_strict(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: dict[str, Any] | None = None
    ) -> bytes:
        """DRF's rendering as it is: raises on what it cannot write."""
        rendered: bytes = super().render(data, accepted_media_type, renderer_context)
        return rendered


_RENDERER = JSONRenderer()


def render(data: Any) -> bytes:
    """`data` as the API's renderer writes it as a response body, byte for byte; `Unrenderable` if it cannot.

    Only the failures a stored value can cause count as unrenderable (a lone surrogate, a non-finite number); any
    other (a value our code forgot to convert, a circular structure) is our bug and is raised as it is, rather than
    failing every job a poll meets."""
    try:
        return _RENDERER.render_strict(data)
    except (UnicodeEncodeError, ValueError) as error:
        if not isinstance(error, UnicodeEncodeError) and "Out of range float" not in str(error):
            raise
        # Only on failure: which top-level values fail, and why (the first problem of each).
        problems = {str(key): _problem(value) for key, value in data.items()} if isinstance(data, dict) else {}
        failing = {key: why for key, why in problems.items() if why is not None}
        reasons = list(dict.fromkeys(failing.values())) or [_why(error)]
        raise Unrenderable("; ".join(reasons), fields=list(failing)) from None


def _problem(value: Any) -> str | None:
    try:
        _RENDERER.render_strict(value)
    except (UnicodeEncodeError, ValueError, TypeError) as error:
        return _why(error)
    return None


def _why(error: Exception) -> str:
    if isinstance(error, UnicodeEncodeError):
        code_point = ord(error.object[error.start]) if isinstance(error.object, str) else None
        named = f" (U+{code_point:04X})" if code_point is not None else ""
        return f"a string holds a lone UTF-16 surrogate{named}, which UTF-8 cannot encode"
    if isinstance(error, ValueError) and "Out of range float" in str(error):
        return "a number is not finite (NaN or Infinity), which JSON cannot carry"
    if isinstance(error, TypeError):
        return f"a value is not JSON-serialisable: {error}"
    return f"it cannot be written as JSON: {error}"


def renderable(value: Any) -> tuple[Any, int]:
    """A copy of a JSON-like value with every lone surrogate replaced by U+FFFD (in keys too) and every non-finite
    number by None, and how many replacements were made. Anything else is left as it is."""
    if isinstance(value, str):
        return _SURROGATES.subn(REPLACEMENT_CHARACTER, value)
    if isinstance(value, float):
        return (value, 0) if math.isfinite(value) else (None, 1)
    if isinstance(value, dict):
        copy: dict[Any, Any] = {}
        count = 0
        for key, item in value.items():
            new_key, replaced_in_key = renderable(key) if isinstance(key, str) else (key, 0)
            copy[new_key], replaced_in_item = renderable(item)
            count += replaced_in_key + replaced_in_item
        return copy, count
    if isinstance(value, list | tuple):
        items = [renderable(item) for item in value]
        return [item for item, _ in items], sum(count for _, count in items)
    return value, 0

