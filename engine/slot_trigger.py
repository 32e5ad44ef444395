"""An APScheduler 3.x trigger that fires at a rule's slots, as `engine.triggers` computes them.

Cron strings keep crontab's meaning (day-of-week 0 and 7 are Sunday; when both day fields are
restricted either may match), which APScheduler's own `CronTrigger` does not give (its
`day_of_week` counts from Monday and ANDs the day fields). `every: D` slots are the multiples
of D from 1970-01-01 00:00 in the project timezone.

The trigger only wakes the daemon up: whether a rule is due, and for which slot, is decided
from the engine's own tables (`rule_ticks`), so a restart or a missed wake-up loses nothing.
"""
from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from apscheduler.triggers.base import BaseTrigger

from .rules.model import Trigger
from .triggers import due_slot, next_slot


class SlotTrigger(BaseTrigger):
    __slots__ = ("trigger", "tz")

    def __init__(self, trigger: Trigger, tz: tzinfo) -> None:
        if trigger.kind not in ("schedule", "every"):
            raise ValueError(f"not a scheduled trigger: {trigger.kind}")
        self.trigger = trigger
        self.tz = tz

    @property
    def signature(self) -> tuple[str, str, str]:
        """Equal signatures: the same slots (a changed rule with the same one keeps its job)."""
        every = self.trigger.every or timedelta(0)
        what = self.trigger.cron.text if self.trigger.cron is not None else \
            str(every // timedelta(microseconds=1))
        return (self.trigger.kind, what, str(self.tz))

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        """The next slot after `now`; but after a run, if slots were missed meanwhile (a long
        tick, a suspended machine), the latest missed one, so that it runs once at once."""
        if previous_fire_time is not None:
            missed = due_slot(self.trigger, now, previous_fire_time, timedelta(0), self.tz)
            if missed is not None:
                return missed[0]
            return next_slot(self.trigger, max(previous_fire_time, now), self.tz)
        return next_slot(self.trigger, now, self.tz)

    def __str__(self) -> str:
        if self.trigger.cron is not None:
            return f"cron[{self.trigger.cron.text}, {self.tz}]"
        return f"every[{self.trigger.every}, {self.tz}]"

    def __repr__(self) -> str:
        return f"<SlotTrigger {self}>"
