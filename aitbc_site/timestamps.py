"""How the API writes a moment, in job documents and signed receipts alike."""

from datetime import UTC, datetime


def iso_utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with "Z" for "+00:00": what DRF's DateTimeField writes with TIME_ZONE "UTC". Written here since
    DRF's field looks up its settings and the current time zone anew for every value (six per job document)."""
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
