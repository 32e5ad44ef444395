"""Timestamps: parsing with the project-timezone default, and the storage representation.

Every timestamp inside the engine is timezone-aware. Text without an offset is read in the
project's timezone. In the database a timestamp is an INTEGER count of microseconds since the
Unix epoch (UTC), so `ts < T` comparisons are exact and indexes are compact.
"""
from __future__ import annotations

from datetime import date, datetime, timezone, tzinfo

from .errors import EngineError

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class BadTimestamp(EngineError):
    code = "BAD_TIMESTAMP"
    exit_code = 2


def parse_timestamp(text: str, tz: tzinfo) -> datetime:
    """ISO 8601 date-time (or a bare date, meaning its midnight) -> aware datetime."""
    raw = str(text).strip()
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            return datetime(d.year, d.month, d.day, tzinfo=tz)
        value = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise BadTimestamp(f"`{raw}` is not a timestamp",
                           hint="write ISO 8601, e.g. 2026-11-20T10:00:00+08:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value


def to_micros(ts: datetime) -> int:
    """Aware datetime -> integer microseconds since the epoch (exact, no float)."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime")
    delta = ts - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int, tz: tzinfo = timezone.utc) -> datetime:
    from datetime import timedelta
    return (EPOCH + timedelta(microseconds=us)).astimezone(tz)
