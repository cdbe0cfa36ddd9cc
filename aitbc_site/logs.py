"""Structured logs: one JSON object per line, with the request id, and nothing secret in them.

Django's loggers and gunicorn's own (deploy/gunicorn.conf.py routes gunicorn.error and gunicorn.access here too) share
this formatter, so every line a process writes is JSON.
"""

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aitbc_site.requests import current_request_id

# Keys, session tokens and signatures never reach the logs, whatever a message or an exception happens to quote.
_SECRETS = re.compile(
    r"(aitbc_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}"  # issued API keys
    r"|0x[0-9a-fA-F]{130}"  # wallet signatures
    r"|(?i:x-api-key|x-session-token|authorization)[\"']?\s*[:=]\s*[\"']?[^\s\"',}]+)"
)
# gunicorn's access log hands its "atoms" (request line, status, every request header and environ entry …) to the
# logger as the record's args. Only these few become fields: the rest holds X-Api-Key and X-Session-Token.
_RESPONSE_REQUEST_ID = "{x-request-id}o"


def redact(text: str) -> str:
    return _SECRETS.sub("[redacted]", text)


def _access_atoms(record: logging.LogRecord) -> Mapping[str, Any] | None:
    return record.args if record.name == "gunicorn.access" and isinstance(record.args, Mapping) else None


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        atoms = _access_atoms(record)
        if request_id is None and atoms is not None:
            # gunicorn writes the access line after the response has left Django, where the context variable is
            # already reset; the id is the one the response carried.
            offered = atoms.get(_RESPONSE_REQUEST_ID)
            request_id = offered if offered and offered != "-" else None
        record.request_id = request_id
        return True


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
        }
        atoms = _access_atoms(record)
        if atoms is not None:
            status = str(atoms.get("s") or "")
            entry["http"] = {
                "method": atoms.get("m"),
                "path": redact(str(atoms.get("U") or "")),
                "status": int(status) if status.isdigit() else None,
                "bytes": atoms.get("B"),
                "duration_ms": atoms.get("M"),
            }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)
