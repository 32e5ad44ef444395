"""`engine backtest [RULE...] --from T1 --to T2`: replay history through the rules, tick by tick.

Each tick is the real `engine.commit.tick` (plan with policy, then the commit of fires, the cap
ledger, consent uses, coupon reservations, rule ticks and on_enter membership) against a
scratch database (`engine.store.scratch`): the real database is read, never written, and the
engine's own tables start empty at T1, so nothing from before T1 (earlier fires, caps, members)
leaks in. Nothing is delivered; coupon steps are issued at their due time in the scratch
database so that `coupon_expiring` rules have coupons to find.

The ticks: a scheduled rule (`schedule`, `every`) ticks at each of its own slots in (T1, T2];
event, date and coupon_expiring rules tick at T1 + step, T1 + 2 step, ... and at T2. Rules
due at the same instant tick together, so they compete for caps by priority as in the daemon.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .commit import tick
from .durations import BadLiteral, parse_duration
from .errors import EngineError
from .plan import Plan
from .project import Project
from .rules.model import Rule
from .store.scratch import drop_tick_tables, issue_coupons, scratch_store, start_ticks
from .timeutil import BadTimestamp, from_micros, parse_timestamp, to_micros
from .triggers import is_scheduled, next_slot

DEFAULT_STEP = "1h"
US = timedelta(microseconds=1)
CAP_REASONS = ("capped_rule", "capped_global")
MAX_TICKS = 200_000


class BadArguments(EngineError):
    """A flag value the command cannot use (a bad time span, an unknown rule): exit 1."""

    code = "BAD_ARGUMENT"
    exit_code = 1


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    step: timedelta


def parse_span(project: Project, start: str, end: str, step: str = DEFAULT_STEP) -> Span:
    """--from, --to and --step as given on the command line (in the project timezone)."""
    tz = project.config.tz
    try:
        t1 = parse_timestamp(start, tz).astimezone(tz)
        t2 = parse_timestamp(end, tz).astimezone(tz)
    except BadTimestamp as exc:
        raise BadArguments(exc.message, hint=exc.hint) from None
    if t1 >= t2:
        raise BadArguments(f"--from {t1.isoformat()} is not before --to {t2.isoformat()}")
    d = parse_flag_duration("--step", step)
    if (t2 - t1) // d > MAX_TICKS:
        raise BadArguments(f"--step {step} gives more than {MAX_TICKS} ticks over the span",
                           hint="use a longer --step or a shorter span")
    return Span(t1, t2, d)


def parse_flag_duration(flag: str, text: str) -> timedelta:
    try:
        return parse_duration(text)
    except BadLiteral as exc:
        raise BadArguments(f"{flag}: {exc}") from None


def choose_rules(project: Project, ids: Sequence[str]) -> list[Rule]:
    """The named rules (a disabled one too: backtesting before enabling is the point), or every
    enabled rule; unknown names are an input problem."""
    if not ids:
        return [r for r in project.rules if r.enabled and r.trigger.kind != "invalid"]
    from .lang.checker import suggest

    out = []
    for rid in dict.fromkeys(ids):
        r = project.rule(rid)
        if r is None:
            hint = suggest(rid, [x.id for x in project.rules])
            raise BadArguments(f"no rule `{rid}` in the project", hint=hint)
        out.append(r)
    return out


@dataclass(frozen=True)
class Tick:
    at: int  # µs
    rules: tuple[str, ...]
    slots: tuple[tuple[str, int], ...]  # scheduled rules: their slot (= at)


def slots_between(rule: Rule, start: datetime, end: datetime, tz: Any) -> list[int]:
    """Every slot of a scheduled rule in (start, end], in µs."""
    out: list[int] = []
    t = start
    while True:
        nxt = next_slot(rule.trigger, t, tz, horizon=end - t + timedelta(days=1))
        if nxt is None or nxt > end:
            return out
        out.append(to_micros(nxt))
        t = nxt


def timeline(project: Project, rules: Sequence[Rule], span: Span) -> list[Tick]:
    tz = project.config.tz
    at: dict[int, list[str]] = {}
    slotted: set[tuple[str, int]] = set()
    others = [r.id for r in rules if not is_scheduled(r)]
    for r in rules:
        if is_scheduled(r):
            for s in slots_between(r, span.start, span.end, tz):
                at.setdefault(s, []).append(r.id)
                slotted.add((r.id, s))
    if others:
        t1, t2, step = to_micros(span.start), to_micros(span.end), span.step // US
        k = t1 + step
        while k < t2:
            at.setdefault(k, []).extend(others)
            k += step
        at.setdefault(t2, []).extend(others)
    return [Tick(t, tuple(sorted(ids)), tuple((i, t) for i in sorted(ids) if (i, t) in slotted))
            for t, ids in sorted(at.items())]


# -- the report -------------------------------------------------------------------------------

def _blank() -> Counter[str]:
    return Counter()


@dataclass
class Tally:
    """Counts per (local day, rule): matched, fire, deferred, and one key per reason."""

    days: dict[tuple[date, str], Counter[str]] = field(default_factory=dict)
    ticks: Counter[str] = field(default_factory=Counter)

    def add(self, result: Plan, midnights: list[int], first_day: date) -> None:
        for rp in result.rules:
            self.ticks[rp.rule_id] += 1
            for d in rp.decisions:
                i = bisect_right(midnights, d.eval_at) - 1
                day = first_day + timedelta(days=max(i, 0))
                c = self.days.setdefault((day, rp.rule_id), _blank())
                c["matched"] += 1
                c[d.reason if d.outcome == "suppressed" and d.reason else d.outcome] += 1


def _row(c: Counter[str]) -> dict[str, Any]:
    sup = {k: v for k, v in sorted(c.items()) if k not in ("matched", "fire", "deferred")}
    return {"matched": c["matched"], "fire": c["fire"], "deferred": c["deferred"],
            "suppressed": sup, "cap_hits": sum(c[k] for k in CAP_REASONS)}


@dataclass(frozen=True)
class BacktestReport:
    span: Span
    rules: tuple[str, ...]
    ticks: int
    tally: Tally
    coupons_issued: int

    def day_list(self) -> list[date]:
        return sorted({d for d, _ in self.tally.days})

    def as_json(self) -> dict[str, Any]:
        days = []
        for day in self.day_list():
            per = {r: c for (d, r), c in self.tally.days.items() if d == day}
            total: Counter[str] = sum(per.values(), _blank())
            days.append({"date": day.isoformat(),
                         "rules": [{"id": r, **_row(per[r])} for r in sorted(per)],
                         "total": _row(total)})
        by_rule: dict[str, Counter[str]] = {r: _blank() for r in self.rules}
        for (_, r), c in self.tally.days.items():
            by_rule[r] += c
        return {"from": self.span.start.isoformat(), "to": self.span.end.isoformat(),
                "step": _fmt_step(self.span.step), "ticks": self.ticks,
                "days": days,
                "rules": [{"id": r, "ticks": self.tally.ticks[r], **_row(by_rule[r])}
                          for r in self.rules],
                "total": _row(sum(by_rule.values(), _blank())),
                "coupons_issued": self.coupons_issued}

    def format_text(self) -> str:
        data = self.as_json()
        lines = [f"backtest {data['from']} .. {data['to']}, step {data['step']}: "
                 f"{self.ticks} tick(s), {len(self.rules)} rule(s), nothing sent"]
        width = max([len(r) for r in self.rules] + [7])
        head = (f"  {'rule':<{width}}  {'matched':>8}  {'fire':>8}  {'deferred':>8}  "
                f"{'cap hits':>8}  suppressed")

        def line(name: str, row: dict[str, Any]) -> str:
            sup = ", ".join(f"{k} {v}" for k, v in row["suppressed"].items()) or "-"
            return (f"  {name:<{width}}  {row['matched']:>8}  {row['fire']:>8}  "
                    f"{row['deferred']:>8}  {row['cap_hits']:>8}  {sup}")

        for day in data["days"]:
            lines += ["", day["date"], head]
            lines += [line(r["id"], r) for r in day["rules"]]
            lines.append(line("(all)", day["total"]))
        if not data["days"]:
            lines += ["", "no rule matched anyone in the span"]
        lines += ["", "whole span", head + "  (ticks)"]
        lines += [line(r["id"], r) + f"  ({r['ticks']})" for r in data["rules"]]
        lines.append(line("(all)", data["total"]))
        if self.coupons_issued:
            lines.append(f"coupons issued (simulated): {self.coupons_issued}")
        return "\n".join(lines)


def _fmt_step(step: timedelta) -> str:
    from .durations import format_duration

    return format_duration(step)


# -- running it -------------------------------------------------------------------------------

def backtest(project: Project, db_path: Path, rules: Sequence[Rule], span: Span,
             progress: Callable[[int], None] | None = None,
             ticks: Iterable[Tick] | None = None) -> BacktestReport:
    """Replay (span.start, span.end] for `rules` on a scratch copy of `db_path`."""
    tz = project.config.tz
    plan_ticks = list(ticks) if ticks is not None else timeline(project, rules, span)
    first_day = span.start.date()
    midnights = []
    d = first_day
    while True:
        m = to_micros(datetime(d.year, d.month, d.day, tzinfo=tz))
        midnights.append(m)
        if m > to_micros(span.end):
            break
        d += timedelta(days=1)
    stocks = {name: (s.value_fen, s.valid_for // US) for name, s in project.coupons.items()}
    tally = Tally()
    issued = 0
    with scratch_store(db_path, project.datamodel) as store:
        with store.transaction():
            start_ticks(store.conn, [r.id for r in rules], to_micros(span.start))
        for t in plan_ticks:
            result = tick(project, store, from_micros(t.at, tz), t.rules, dict(t.slots))
            if result.outbox_items and stocks:
                with store.transaction():
                    issued += issue_coupons(store.conn, t.at, stocks)
            drop_tick_tables(store.conn)
            tally.add(result.plan, midnights, first_day)
            if progress is not None:
                progress(1)
    return BacktestReport(span, tuple(sorted(r.id for r in rules)), len(plan_ticks), tally,
                          issued)
