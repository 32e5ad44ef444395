"""Duration, percentage and clock-time literals shared by rule files and the language."""
from __future__ import annotations

import re
from datetime import time, timedelta

UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION_RE = re.compile(r"^(?:\d+[wdhms])+$")
_PART = re.compile(r"(\d+)([wdhms])")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")


class BadLiteral(ValueError):
    """A literal that does not parse; the message says what was expected."""


def parse_duration(text: str) -> timedelta:
    """`30s`, `15m`, `2h`, `1h30m`, `7d`, `2w`; no months or years (they have no fixed length)."""
    s = str(text).strip()
    if not DURATION_RE.match(s):
        if re.match(r"^\d+(mo|y|M|Y)$", s):
            raise BadLiteral(f"`{s}`: months and years have no fixed length; use days or weeks")
        raise BadLiteral(f"`{s}` is not a duration; write e.g. 30s, 15m, 2h, 1h30m, 7d or 2w")
    seen: set[str] = set()
    seconds = 0
    for amount, unit in _PART.findall(s):
        if unit in seen:
            raise BadLiteral(f"`{s}` repeats the unit `{unit}`")
        seen.add(unit)
        seconds += int(amount) * UNITS[unit]
    if seconds == 0:
        raise BadLiteral(f"`{s}` is a zero duration")
    return timedelta(seconds=seconds)


def format_duration(td: timedelta) -> str:
    seconds = int(td.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def parse_clock(text: str) -> time:
    """`HH:MM` in 24-hour time, as in quiet hours."""
    m = _HHMM.match(str(text).strip())
    if not m:
        raise BadLiteral(f"`{text}` is not a time of day; write HH:MM, e.g. 21:30")
    return time(int(m.group(1)), int(m.group(2)))


def parse_percent(value: object) -> float:
    """`10%` (or a number 0..100) -> 0.10."""
    if isinstance(value, bool):
        raise BadLiteral(f"`{value}` is not a percentage")
    if isinstance(value, (int, float)) or type(value).__name__ == "Decimal":
        pct = float(value)  # type: ignore[arg-type]
    else:
        m = _PERCENT.match(str(value).strip())
        if not m:
            raise BadLiteral(f"`{value}` is not a percentage; write e.g. 10%")
        pct = float(m.group(1))
    if not 0 <= pct <= 100:
        raise BadLiteral(f"`{value}` must be between 0% and 100%")
    return pct / 100.0
