"""Time handling: every timestamp in the database is naive UTC (`timestamp without time zone`)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from salesarck.errors import ValidationError

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def utcnow() -> datetime:
    """Now, as the naive UTC datetime the schema stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(value: datetime) -> datetime:
    """Convert an aware datetime to naive UTC; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def parse_time(text: str | datetime | date) -> datetime:
    """Parse RFC 3339 with an offset (`2026-11-01T09:30:00Z`) or a plain date (midnight UTC).

    A datetime without an offset is refused: guessing the zone of a finance timestamp is how
    reports end up an hour off.
    """
    if isinstance(text, datetime):
        return to_naive_utc(text)
    if isinstance(text, date):
        return datetime(text.year, text.month, text.day)
    raw = str(text).strip()
    if len(raw) > 64:
        raise ValidationError("time is too long to be an RFC 3339 timestamp")
    if _DATE_ONLY.match(raw):
        try:
            return datetime.fromisoformat(raw)
        except ValueError as exc:
            raise ValidationError(f"not a valid date: {raw!r}") from exc
    try:
        parsed = datetime.fromisoformat(raw.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(
            f"not an RFC 3339 time: {raw!r} (use e.g. 2026-11-01T09:30:00Z or 2026-11-01)"
        ) from exc
    if parsed.tzinfo is None:
        raise ValidationError(f"time {raw!r} has no UTC offset (add Z or +HH:MM)")
    return to_naive_utc(parsed)


def iso_utc(value: datetime | None) -> str | None:
    """Format a stored naive-UTC datetime as RFC 3339 with `Z`."""
    if value is None:
        return None
    return to_naive_utc(value).isoformat(timespec="microseconds").rstrip("0").rstrip(".") + "Z"
