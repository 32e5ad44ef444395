"""When rules are due, and at which instant each occurrence is evaluated.

- `schedule` (cron) and `every`: a rule is due at T when one of its slots falls in
  (previous tick, T]; a rule that never ticked looks back only `schedule_grace`. Several
  missed slots coalesce into one tick: the latest slot is the occurrence.
- `every: D` slots are the multiples of D counted from 1970-01-01 00:00 in the project
  timezone (so `every: 1d` is local midnight, `every: 1h` the top of each hour).
- `event` (with optional `wait`): each event is an occurrence, evaluated at the end of its
  wait, `event.ts + wait`; without a wait, just after the event (`ts + 1 µs`), so the
  triggering event itself is visible to the audience (`streak(checkin)` counts today).
- `date`: the occurrence is the user's dated attribute; it fires at `attr - before`,
  `attr + after`, or (annual) on its month and day each year, at local midnight.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from .rules.model import Rule, Trigger
from .timeutil import from_micros, to_micros

EVENT_EPSILON_US = 1


@dataclass(frozen=True)
class Due:
    """A scheduled rule is due at `slot` (the occurrence of its idempotency key)."""

    rule_id: str
    slot: datetime
    coalesced: int  # how many slots fell in the window (1 = none missed)


def schedule_window_start(T: datetime, last_tick: datetime | None, grace: timedelta) -> datetime:
    return last_tick if last_tick is not None else T - grace


def due_slot(trigger: Trigger, T: datetime, last_tick: datetime | None, grace: timedelta,
             tz: tzinfo) -> tuple[datetime, int] | None:
    """The latest slot in (start, T] and how many slots there were, or None if not due."""
    start = schedule_window_start(T, last_tick, grace)
    if start >= T:
        return None
    if trigger.kind == "schedule" and trigger.cron is not None:
        slots = trigger.cron.slots(start, T, tz)  # type: ignore[arg-type]
        return (slots[-1], len(slots)) if slots else None
    if trigger.kind == "every" and trigger.every is not None:
        step = trigger.every // timedelta(microseconds=1)
        origin = to_micros(datetime(1970, 1, 1, tzinfo=tz))
        lo, hi = to_micros(start) - origin, to_micros(T) - origin
        last = hi // step
        first = lo // step + 1  # slots strictly after `start`
        if last < first:
            return None
        return from_micros(origin + last * step, tz), last - first + 1
    return None


def next_slot(trigger: Trigger, after: datetime, tz: tzinfo,
              horizon: timedelta = timedelta(days=8 * 366)) -> datetime | None:
    """The first slot strictly after `after` (None: no slot within `horizon`, or not a
    scheduled trigger). The daemon's scheduler wakes up at these instants."""
    if trigger.kind == "schedule" and trigger.cron is not None:
        found = trigger.cron.slots(after, after + horizon, tz, limit=1)  # type: ignore[arg-type]
        return found[0] if found else None
    if trigger.kind == "every" and trigger.every is not None:
        step = trigger.every // timedelta(microseconds=1)
        origin = to_micros(datetime(1970, 1, 1, tzinfo=tz))
        return from_micros(origin + ((to_micros(after) - origin) // step + 1) * step, tz)
    return None


def is_scheduled(rule: Rule) -> bool:
    return rule.trigger.kind in ("schedule", "every")


def event_eval_time(trigger: Trigger, event_ts_us: int) -> int:
    """The instant (µs) at which an event occurrence is evaluated."""
    if trigger.wait is not None:
        return event_ts_us + trigger.wait // timedelta(microseconds=1)
    return event_ts_us + EVENT_EPSILON_US


def date_fire_offset_us(trigger: Trigger) -> int:
    """Fire time = attribute value + this offset (negative for `before`)."""
    if trigger.before is not None:
        return -(trigger.before // timedelta(microseconds=1))
    if trigger.after is not None:
        return trigger.after // timedelta(microseconds=1)
    return 0
