"""`engine explain RULE USER --at T`: every part of a rule evaluated for one user.

Prints the value of every sub-expression of the audience (and `unless`, and the trigger's
`where`), e.g. `days_since(last(order_paid)) = 9`, then `... >= 7  true`; the trigger state;
and the final decision with its reason, computed by the same `plan` code that runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .config import fen_to_yuan
from .durations import format_duration
from .errors import CannotRun
from .lang import typed as t
from .lang.to_python import Ctx, EventRow, compile_value
from .lang.values import days_to_date
from .plan import Decision, Snapshot, _uses_rfm, decide, window_start
from .project import Project
from .rules.model import Condition, Rule
from .store import Store
from .store import queries as q
from .timeutil import from_micros, to_micros
from .triggers import due_slot, event_eval_time


@dataclass(frozen=True)
class Step:
    depth: int
    text: str
    value: str
    is_condition: bool


@dataclass
class Explanation:
    rule: Rule
    user_id: str
    at: datetime
    trigger: list[str] = field(default_factory=list)
    sections: list[tuple[str, list[Step]]] = field(default_factory=list)
    decision: str = ""
    reason: str = ""
    variant: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule.id, "user": self.user_id, "at": self.at.isoformat(),
            "trigger": self.trigger,
            "conditions": {name: [{"depth": s.depth, "expr": s.text, "value": s.value}
                                  for s in steps] for name, steps in self.sections},
            "decision": self.decision, "reason": self.reason or None, "variant": self.variant,
        }

    def format_text(self) -> str:
        lines = [f"rule {self.rule.id}" + (f" ({self.rule.name})" if self.rule.name else "")
                 + f" for user {self.user_id} at {self.at.isoformat()}"]
        lines += [f"  trigger: {x}" for x in self.trigger]
        for name, steps in self.sections:
            lines.append(f"  {name}:")
            for s in steps:
                pad = "    " + "  " * s.depth
                lines.append(f"{pad}{s.text}  {s.value}" if s.is_condition
                             else f"{pad}{s.text} = {s.value}")
        why = f" ({self.reason})" if self.reason else ""
        var = f", variant {self.variant}" if self.variant else ""
        lines.append(f"  decision: {self.decision}{why}{var}")
        return "\n".join(lines)


def show(value: Any, type_: str, tz: Any) -> str:
    if value is None:
        return "unknown" if type_ == t.BOOL else "null"
    if type_ == t.BOOL:
        return "true" if value else "false"
    if type_ == t.TIMESTAMP and isinstance(value, int):
        return from_micros(value, tz).isoformat()
    if type_ == t.DATE and isinstance(value, int):
        return days_to_date(value).isoformat()
    if type_ == t.MONEY and isinstance(value, int):
        return f"¥{fen_to_yuan(value)}"
    if type_ == t.MONEY:
        return f"¥{value / 100:.4f}"
    if type_ == t.DURATION and isinstance(value, int):
        return format_duration(timedelta(microseconds=value))
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _steps(cond: Condition, ctx: Ctx) -> list[Step]:
    out: list[Step] = []
    text = cond.text

    def visit(n: t.TExpr, depth: int) -> None:
        if isinstance(n, (t.TLit, t.TList)):
            return
        snippet = text[n.span[0]:n.span[1]] if n.span[1] > n.span[0] else type(n).__name__
        value = compile_value(n)(ctx)
        out.append(Step(depth, " ".join(snippet.split()), show(value, n.type, ctx.tz),
                        n.type == t.BOOL))
        if isinstance(n, t.TAgg):
            return  # the where-filter runs per event row: its value here would mislead
        for child in t.tchildren(n):
            visit(child, depth + 1)

    visit(cond.expr, 0)
    return out


def explain(project: Project, store: Store, rule_id: str, user_id: str,
            at: datetime) -> Explanation:
    rule = project.rule(rule_id)
    if rule is None:
        from .lang.checker import suggest
        raise CannotRun(f"no rule `{rule_id}` in the project",
                        hint=suggest(rule_id, [r.id for r in project.rules]))
    if not q.user_exists(store.conn, user_id):
        raise CannotRun(f"no user `{user_id}` in the database")
    tz = project.config.tz
    snap = Snapshot(project, store, to_micros(at))
    exp = Explanation(rule, user_id, at)
    kind = rule.trigger.kind
    eval_at, event = snap.T, None
    if kind in ("schedule", "every"):
        last = q.last_tick(store.conn, rule.id)
        due = due_slot(rule.trigger, at, from_micros(last, tz) if last else None,
                       project.config.schedule_grace, tz)
        exp.trigger.append(f"{kind}; last tick "
                           f"{from_micros(last, tz).isoformat() if last else 'never'}; "
                           + (f"due at slot {due[0].isoformat()}" if due else
                              "not due at this time (plan evaluates it as if due)"))
        members = q.members(store.conn, rule.id)
        if rule.fire == "on_enter":
            exp.trigger.append("fire: on_enter; the user "
                               + ("was" if user_id in members else "was not")
                               + " in the audience at the previous tick")
    elif kind == "event" and rule.trigger.event is not None:
        start = window_start(snap, rule)
        wait = rule.trigger.wait // timedelta(microseconds=1) if rule.trigger.wait else 0
        rows = q.events_between(store.conn, project.datamodel,
                                store.type_ids.get(rule.trigger.event), rule.trigger.event,
                                -2**62, snap.T - wait - (0 if wait else 1), user_id)
        if rows:
            event = rows[-1]
            eval_at = event_eval_time(rule.trigger, event.ts)
            state = "in this tick's window" if eval_at > start else "before this tick's window"
            exp.trigger.append(f"event {rule.trigger.event} {event.event_id} at "
                               f"{from_micros(event.ts, tz).isoformat()}, evaluated at "
                               f"{from_micros(eval_at, tz).isoformat()} ({state})")
        else:
            exp.trigger.append(f"no {rule.trigger.event} event of this user is due by this time")
    elif kind == "date" and rule.trigger.date_attr:
        value = snap.facts(user_id, False).attrs.get(rule.trigger.date_attr)
        field_ = project.datamodel.user[rule.trigger.date_attr]
        exp.trigger.append(f"user.{rule.trigger.date_attr} = "
                           f"{show(value, str(field_.type), tz)}")
    else:
        exp.trigger.append(f"{kind}")
    facts = snap.facts(user_id, _uses_rfm(rule))
    ctx = Ctx(facts, eval_at, tz, event, snap.lifecycle())
    if rule.trigger.where is not None and event is not None:
        exp.sections.append(("trigger where", _steps(rule.trigger.where, ctx)))
    if rule.audience is not None:
        exp.sections.append(("audience", _steps(rule.audience, ctx)))
    if rule.unless is not None:
        exp.sections.append(("unless", _steps(rule.unless, ctx)))
    exp.decision, exp.reason, exp.variant = _decision(snap, rule, user_id)
    return exp


def _decision(snap: Snapshot, rule: Rule, user_id: str) -> tuple[str, str, str | None]:
    """The decision `plan` makes (policy included) for this user."""
    from .plan import plan

    result = plan(snap.project, snap.store, from_micros(snap.T, snap.project.config.tz),
                  [rule.id])
    mine: list[Decision] = [d for d in result.rules[0].decisions if d.user_id == user_id]
    if not mine:
        if rule.trigger.kind != "schedule" and rule.trigger.kind != "every":
            return "not matched", "no_occurrence_due", None
        return "not matched", "not_in_audience", None
    d = mine[-1]
    return d.outcome, d.reason or "", d.variant


__all__ = ["Explanation", "explain", "decide", "EventRow"]
