"""Structured logs: one JSON object per line, with the request id, and nothing secret in them."""

import json
import logging
import re
from datetime import UTC, datetime

from aitbc_site.requests import current_request_id

# Keys, session tokens and signatures never reach the logs, whatever a message or an exception happens to quote.
_SECRETS = re.compile(
    r"(aitbc_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}"  # issued API keys
    r"|0x[0-9a-fA-F]{130}"  # wallet signatures
    r"|(?i:x-api-key|x-session-token|authorization)[\"']?\s*[:=]\s*[\"']?[^\s\"',}]+)"
)


def redact(text: str) -> str:
    return _SECRETS.sub("[redacted]", text)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)
