"""Cron strings with exactly the meaning crontab(5) gives them.

Five fields: minute hour day-of-month month day-of-week. Day-of-week 0 and 7 are both Sunday,
names (`mon`, `jan`) are accepted, and when both day fields are restricted a day matches if
EITHER matches (crontab's rule, which many scheduler libraries get wrong). `@hourly`, `@daily`,
`@weekly`, `@monthly` and `@yearly` are shorthands. Schedules are evaluated in the project's
timezone; slots are computed here, never by the scheduler library's own convention.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {m: i + 1 for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
           ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))


class CronError(ValueError):
    def __init__(self, message: str, offset: int = 0, length: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.length = length


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday .. 6 = Saturday (7 folded into 0)
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, local: datetime) -> bool:
        """Does the minute of `local` (a wall-clock time in the project timezone) match?"""
        if local.minute not in self.minutes or local.hour not in self.hours:
            return False
        if local.month not in self.months:
            return False
        dom = local.day in self.days
        dow = (local.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def slots(self, after: datetime, until: datetime, tz: ZoneInfo,
              limit: int = 100_000) -> list[datetime]:
        """Slot times s with after < s <= until (aware datetimes), in order."""
        out: list[datetime] = []
        t = after.astimezone(tz).replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = until.astimezone(tz)
        while t <= end and len(out) < limit:
            if t.month not in self.months:
                t = _next_month(t)
                continue
            if not self._day_ok(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute in self.minutes:
                out.append(t)
            t = t + timedelta(minutes=1)
        return out

    def _day_ok(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow


def _next_month(t: datetime) -> datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=1, hour=0, minute=0)


def parse(text: str) -> Cron:
    """Parse a cron string; CronError carries the offset of the bad field."""
    raw = str(text)
    stripped = raw.strip()
    lead = len(raw) - len(raw.lstrip())
    if stripped.startswith("@"):
        if stripped not in MACROS:
            raise CronError(f"unknown cron shorthand `{stripped}`; use one of "
                            + ", ".join(MACROS), lead, len(stripped))
        return _parse_fields(MACROS[stripped], [0] * 5, raw)
    parts = [(m.start(), m.group()) for m in re.finditer(r"\S+", raw)]
    if len(parts) != 5:
        raise CronError(f"a cron schedule has 5 fields (minute hour day month weekday), "
                        f"found {len(parts)}", lead, max(1, len(stripped)))
    return _parse_fields(" ".join(p for _, p in parts), [o for o, _ in parts], raw)


def _parse_fields(spec: str, offsets: list[int], original: str) -> Cron:
    fields = spec.split()
    sets: list[frozenset[int]] = []
    for (name, lo, hi, names), field_text, off in zip(_FIELDS, fields, offsets):
        sets.append(frozenset(_parse_field(field_text, name, lo, hi, names, off)))
    weekdays = frozenset(7 % 7 if d == 7 else d for d in sets[4])
    # crontab(5): a day field is "restricted" unless it starts with `*` (so `*/2` is not)
    return Cron(original, sets[0], sets[1], sets[2], sets[3], weekdays,
                days_restricted=not fields[2].startswith("*"),
                weekdays_restricted=not fields[4].startswith("*"))


def _value(tok: str, name: str, lo: int, hi: int, names: dict[str, int], off: int) -> int:
    key = tok.lower()
    if key in names:
        return names[key]
    if not tok.isdigit():
        raise CronError(f"`{tok}` is not a valid {name}", off, len(tok))
    v = int(tok)
    if not lo <= v <= hi:
        extra = " (0 and 7 are Sunday)" if name == "day of week" else ""
        raise CronError(f"{name} {v} is out of range {lo}-{hi}{extra}", off, len(tok))
    return v


def _parse_field(text: str, name: str, lo: int, hi: int, names: dict[str, int],
                 off: int) -> set[int]:
    out: set[int] = set()
    pos = off
    for item in text.split(","):
        if not item:
            raise CronError(f"empty item in the {name} field", pos, 1)
        step = 1
        body = item
        if "/" in item:
            body, step_text = item.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"`{step_text}` is not a valid step in the {name} field",
                                pos + len(body) + 1, max(1, len(step_text)))
            step = int(step_text)
        if body == "*":
            start, end = lo, hi
        elif "-" in body:
            a, b = body.split("-", 1)
            start = _value(a, name, lo, hi, names, pos)
            end = _value(b, name, lo, hi, names, pos + len(a) + 1)
            if end < start:
                raise CronError(f"range `{body}` in the {name} field runs backwards", pos,
                                len(body))
        else:
            start = _value(body, name, lo, hi, names, pos)
            end = hi if "/" in item else start
        if name == "day of week" and body == "*":
            end = 6
        out.update(range(start, end + 1, step))
        pos += len(item) + 1
    return out
