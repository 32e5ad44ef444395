"""`engine run --once --at T`: tick the due rules, commit, then deliver the outbox.

A scheduled rule is due when one of its slots falls in (its previous tick, T] (a rule that
never ticked looks back `schedule_grace`); missed slots coalesce into one tick. Event, date
and coupon_expiring rules tick every time: their occurrences are the events, dates and
coupons whose instant lies in (previous tick, T]. Re-running the same tick is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from .channels.base import Channel
from .commit import CommitResult, tick
from .errors import EngineError
from .outbox import DeliveryReport, deliver
from .project import Project
from .store import Store
from .store import queries as q
from .timeutil import from_micros, to_micros
from .triggers import due_slot, is_scheduled


@dataclass
class RunReport:
    at: datetime
    due: list[str]
    commit: CommitResult | None
    delivery: DeliveryReport
    unavailable: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        plan = self.commit.plan.as_json() if self.commit else {"rules": []}
        return {"at": self.at.isoformat(), "due": self.due, "rules": plan["rules"],
                "new_fires": self.commit.new_fires if self.commit else 0,
                "repeated_fires": self.commit.repeated if self.commit else 0,
                "outbox_items": self.commit.outbox_items if self.commit else 0,
                "delivery": self.delivery.as_json(),
                "unavailable_channels": self.unavailable}


def due_rules(project: Project, store: Store, at: datetime) -> tuple[list[str], dict[str, int]]:
    ids: list[str] = []
    slots: dict[str, int] = {}
    tz = project.config.tz
    for rule in project.rules:
        if not rule.enabled or rule.trigger.kind == "invalid":
            continue
        if is_scheduled(rule):
            last = q.last_tick(store.conn, rule.id)
            due = due_slot(rule.trigger, at, from_micros(last, tz) if last is not None else None,
                           project.config.schedule_grace, tz)
            if due is None:
                continue
            slots[rule.id] = to_micros(due[0])
        ids.append(rule.id)
    return ids, slots


def build_channels(project: Project, env: Mapping[str, str] | None = None,
                   **kw: Any) -> tuple[dict[str, Channel], dict[str, str]]:
    """Every configured channel that can be built; the others with the reason (e.g. an
    environment variable that is not set). Their items wait in the outbox."""
    from .channels import build_channel

    env = os.environ if env is None else env
    built: dict[str, Channel] = {}
    missing: dict[str, str] = {}
    for name, cfg in project.config.channels.items():
        try:
            built[name] = build_channel(cfg, env, **kw)
        except EngineError as exc:
            missing[name] = exc.message
    return built, missing


def run_once(project: Project, store: Store, at: datetime,
             channels: Mapping[str, Channel], git_commit: str = "",
             unavailable: Mapping[str, str] | None = None) -> RunReport:
    ids, slots = due_rules(project, store, at)
    result = tick(project, store, at, ids, slots, git_commit)
    report = deliver(project, store, channels, at)
    return RunReport(at, ids, result, report, dict(unavailable or {}))
