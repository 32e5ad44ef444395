"""`engine report`: what the rules did over a window, whether they paid off, and retention.

The window is [at - since, at): a fire belongs to it when its tick time does. Per rule: the
fires (matched), their outcomes, suppressions by reason, the delivery status of the fires
that acted, goal conversions per group with 95% Wilson intervals, uplift of each variant
against the holdout (Newcombe's hybrid score interval, pooled two-proportion z-test) and a
winner (every pairwise z-test between variants, Holm-Bonferroni at 0.05). Then daily
activity (DAU/WAU/MAU) and retention cohorts by signup week. All counting happens in SQL
(engine/store/report_sql.py); this module names and shapes the figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import combinations
from typing import Any, Iterable

from . import stats
from .durations import BadLiteral, format_duration, parse_duration
from .errors import EngineError
from .lang.to_python import local_day
from .lang.values import days_to_date, local_midnight_us
from .project import Project
from .rules.model import Rule
from .store import Store
from .store import report_sql as sql
from .timeutil import to_micros

ALPHA = 0.05
COHORT_LOOKBACK = timedelta(days=30)
MAX_WINDOW = timedelta(days=1000)  # cohorts start this long before the window
RETENTION_DAYS = (1, 7, 30)
STATUSES = ("sent", "failed", "unknown", "pending")


class BadSince(EngineError):
    code = "BAD_SINCE"
    exit_code = 1


def parse_since(text: str) -> timedelta:
    """`--since 30d`: the window's length (a duration: 12h, 7d, 2w ...)."""
    try:
        return parse_duration(text)
    except BadLiteral as exc:
        raise BadSince(f"--since: {exc}") from None


@dataclass(frozen=True)
class Group:
    name: str
    users: int
    conversions: int

    def as_json(self) -> dict[str, Any]:
        ci = stats.wilson(self.conversions, self.users)
        return {"name": self.name, "users": self.users, "conversions": self.conversions,
                "rate": _r(stats.rate(self.conversions, self.users)),
                "low": _r(ci[0]) if ci else None, "high": _r(ci[1]) if ci else None}


@dataclass(frozen=True)
class Uplift:
    variant: str
    vs: str
    difference: float | None
    low: float | None
    high: float | None
    p_value: float | None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA

    def as_json(self) -> dict[str, Any]:
        return {"variant": self.variant, "vs": self.vs, "difference": _r(self.difference),
                "low": _r(self.low), "high": _r(self.high), "p_value": _p(self.p_value),
                "significant": self.significant}


def uplift(variant: Group, holdout: Group) -> Uplift:
    diff = stats.newcombe(variant.conversions, variant.users, holdout.conversions,
                          holdout.users)
    p = stats.z_test(variant.conversions, variant.users, holdout.conversions, holdout.users)
    if diff is None:
        return Uplift(variant.name, holdout.name, None, None, None, p)
    return Uplift(variant.name, holdout.name, diff[0], diff[1], diff[2], p)


def winner(variants: list[Group]) -> str | None:
    """The variant significantly better than every other variant: pooled two-proportion
    z-tests of every pair, Holm-Bonferroni adjusted over the pairs, at ALPHA."""
    if len(variants) < 2 or any(g.users == 0 for g in variants):
        return None
    pairs = list(combinations(range(len(variants)), 2))
    raw = [stats.z_test(variants[i].conversions, variants[i].users, variants[j].conversions,
                        variants[j].users) for i, j in pairs]
    adjusted = stats.holm([1.0 if p is None else p for p in raw])
    beats: dict[int, int] = {}
    for (i, j), p in zip(pairs, adjusted):
        if p >= ALPHA:
            continue
        a, b = variants[i], variants[j]
        better = i if a.conversions * b.users > b.conversions * a.users else j
        beats[better] = beats.get(better, 0) + 1
    for i, n in beats.items():
        if n == len(variants) - 1:
            return variants[i].name
    return None


@dataclass(frozen=True)
class RuleReport:
    id: str
    name: str
    category: str
    matched: int = 0
    fired: int = 0
    deferred: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)
    delivery: dict[str, int] = field(default_factory=dict)  # sent/failed/unknown/pending
    goal: dict[str, Any] | None = None
    groups: tuple[Group, ...] = ()
    holdout: Group | None = None

    @property
    def conversions(self) -> int | None:
        if self.goal is None:
            return None
        return sum(g.conversions for g in self.all_groups())

    def all_groups(self) -> list[Group]:
        return ([self.holdout] if self.holdout is not None else []) + list(self.groups)

    def uplifts(self) -> list[Uplift]:
        if self.holdout is None:
            return []
        return [uplift(g, self.holdout) for g in self.groups]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "category": self.category,
                "matched": self.matched, "fired": self.fired, "deferred": self.deferred,
                "suppressed": dict(sorted(self.suppressed.items())),
                **{s: self.delivery.get(s, 0) for s in STATUSES},
                "goal": self.goal, "conversions": self.conversions,
                "groups": [g.as_json() for g in self.all_groups()],
                "uplift": [u.as_json() for u in self.uplifts()],
                "winner": winner(list(self.groups)) if self.goal is not None else None}


@dataclass(frozen=True)
class Day:
    date: date
    fired: int = 0
    deferred: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)
    delivery: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"date": self.date.isoformat(), "fired": self.fired, "deferred": self.deferred,
                **{s: self.delivery.get(s, 0) for s in STATUSES},
                "suppressed": dict(sorted(self.suppressed.items()))}


@dataclass(frozen=True)
class Cohort:
    start: date
    users: int
    retention: tuple[float | None, ...]  # one per RETENTION_DAYS

    @property
    def week(self) -> str:
        year, week, _ = self.start.isocalendar()
        return f"{year}-W{week:02d}"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"week": self.week, "start": self.start.isoformat(),
                               "users": self.users}
        out.update({f"d{k}": _r(v) for k, v in zip(RETENTION_DAYS, self.retention)})
        return out


@dataclass(frozen=True)
class Report:
    at: datetime
    since: datetime
    timezone: str
    rules: tuple[RuleReport, ...]
    daily: tuple[Day, ...]
    dau: int
    wau: int
    mau: int
    series: tuple[tuple[date, int], ...]
    cohorts: tuple[Cohort, ...]

    def totals(self) -> dict[str, int]:
        out = {k: 0 for k in ("matched", "fired", "deferred", "sent", "suppressed", "failed",
                              "unknown", "pending", "conversions")}
        for r in self.rules:
            out["matched"] += r.matched
            out["fired"] += r.fired
            out["deferred"] += r.deferred
            out["suppressed"] += sum(r.suppressed.values())
            for s in STATUSES:
                out[s] += r.delivery.get(s, 0)
            out["conversions"] += r.conversions or 0
        return out

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "since": self.since.isoformat(),
                "timezone": self.timezone, "totals": self.totals(),
                "rules": [r.as_json() for r in self.rules],
                "daily": [d.as_json() for d in self.daily],
                "activity": {"dau": self.dau, "wau": self.wau, "mau": self.mau,
                             "series": [{"date": d.isoformat(), "dau": n}
                                        for d, n in self.series]},
                "cohorts": [c.as_json() for c in self.cohorts]}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _p(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.4g}")


# -- building ------------------------------------------------------------------------------

def build_report(project: Project, store: Store, at: datetime,
                 since: timedelta | datetime) -> Report:
    tz = project.config.tz
    at = at.astimezone(tz)
    start = (at - since if isinstance(since, timedelta) else since).astimezone(tz)
    if start >= at:
        raise BadSince("the report's window is empty: --since must lie before --at")
    if at - start > MAX_WINDOW:
        raise BadSince(f"--since: at most {MAX_WINDOW.days}d (one figure per day)")
    T, lo = to_micros(at), to_micros(start)
    conn = store.conn
    first_day, last_day = local_day(lo, tz), local_day(T - 1, tz)
    sql.load_window(conn, tz, lo, T)
    try:
        counts = sql.window_counts(conn)
        acted = sql.window_variants(conn)
        rules = [_rule_report(project, store, rule_id, at, counts, acted)
                 for rule_id in _rule_ids(project, counts)]
    finally:
        sql.drop_window(conn)
    per_day = {d: _Counts() for d in range(first_day, last_day + 1)}
    for _, d, outcome, reason, status, n in counts:
        if d in per_day:
            _add(per_day[d], outcome, reason, status, n)
    daily = tuple(Day(days_to_date(d), c.fired, c.deferred, c.suppressed, c.delivery)
                  for d, c in per_day.items())
    monday = local_day(lo - COHORT_LOOKBACK // timedelta(microseconds=1), tz)
    monday -= (monday + 3) % 7  # the cohorts start on the Monday of that week
    act = sql.load_activity(conn, tz, monday, last_day, T)
    try:
        dau, wau, mau = sql.activity(conn, act)
        series_days = range(first_day, last_day + 1)
        series = tuple(zip((days_to_date(d) for d in series_days),
                           sql.daily_active(conn, act, series_days)))
        cohorts = _cohorts(project, store, act)
    finally:
        sql.drop_window(conn)
    return Report(at, start, project.config.timezone, tuple(rules), daily,
                  dau, wau, mau, series, cohorts)


def _rule_ids(project: Project, counts: Iterable[tuple[Any, ...]]) -> list[str]:
    """Every rule of the project (in file order), then rules that fired in the window but
    are no longer in the project."""
    ids = [r.id for r in project.rules]
    known = set(ids)
    return ids + sorted({c[0] for c in counts if c[0] not in known})


@dataclass
class _Counts:
    """A running tally while the report is built (the finished figures are frozen)."""

    fired: int = 0
    deferred: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)
    delivery: dict[str, int] = field(default_factory=dict)


def _add(target: "_Counts", outcome: str, reason: str | None, status: str | None,
         n: int) -> None:
    if outcome == "fire":
        target.fired += n
    elif outcome == "deferred":
        target.deferred += n
    else:
        key = reason or outcome
        target.suppressed[key] = target.suppressed.get(key, 0) + n
    if status is not None:
        target.delivery[status] = target.delivery.get(status, 0) + n


def _rule_report(project: Project, store: Store, rule_id: str, at: datetime,
                 counts: list[tuple[str, int, str, str | None, str | None, int]],
                 acted: list[tuple[str, str | None]]) -> RuleReport:
    rule = project.rule(rule_id)
    c = _Counts()
    matched = 0
    for r, _, outcome, reason, status, n in counts:
        if r == rule_id:
            matched += n
            _add(c, outcome, reason, status, n)
    base = RuleReport(rule_id, rule.name if rule else "", rule.category if rule else "",
                      matched, c.fired, c.deferred, c.suppressed, c.delivery)
    if rule is None or rule.goal is None:
        return base
    goal = rule.goal
    applied = goal.where is not None and sql.where_supported(goal.where.expr)
    query = sql.GoalQuery(rule.id, store.type_ids.get(goal.event), sql.within_us(goal.within),
                          goal.where.expr if applied and goal.where is not None else None)
    found = sql.conversions(store.conn, project.config.tz, to_micros(at), query, goal.event)
    summary: dict[str, Any] = {"event": goal.event, "within": format_duration(goal.within)}
    if goal.where is not None:
        summary["where"] = goal.where.text
        summary["where_applied"] = applied
    groups, holdout = _groups(rule, found, {v for r, v in acted if r == rule_id})
    return RuleReport(base.id, base.name, base.category, base.matched, base.fired,
                      base.deferred, base.suppressed, base.delivery, summary, groups, holdout)


def _groups(rule: Rule, found: list[tuple[bool, str | None, int, int]],
            acted: set[str | None]) -> tuple[tuple[Group, ...], Group | None]:
    """Variant groups in the order the rule declares them ("all" without variants), only
    those that fired in the window; the holdout group when the rule has a holdout."""
    exp = rule.experiment
    holdout = None
    if exp is not None and exp.holdout > 0:
        users = sum(n for h, _, n, _ in found if h)
        holdout = Group("holdout", users, sum(k for h, _, _, k in found if h))
    declared = [v.name for v in exp.variants] if exp is not None else []
    names: list[str | None] = [v for v in declared if v in acted]
    names += sorted((v for v in acted if v not in declared and v is not None), key=str)
    if None in acted:
        names.append(None)
    groups = []
    for name in names:
        rows = [(n, k) for h, v, n, k in found if not h and v == name]
        groups.append(Group(name if name is not None else "all", sum(n for n, _ in rows),
                            sum(k for _, k in rows)))
    return tuple(groups), holdout


def _cohorts(project: Project, store: Store, act: sql.Activity) -> tuple[Cohort, ...]:
    tz = project.config.tz
    f = project.datamodel.user.get("signup_at")
    rows = sql.cohorts(store.conn, tz, act, f is not None and str(f.type) == "timestamp",
                       RETENTION_DAYS)
    out = []
    for start, users, latest, active in rows:
        retention = tuple(
            a / users if local_midnight_us(latest + k + 1, tz) <= act.T else None
            for k, a in zip(RETENTION_DAYS, active))
        out.append(Cohort(days_to_date(start), users, retention))
    return tuple(out)


__all__ = ["Report", "RuleReport", "Group", "Uplift", "Cohort", "Day", "BadSince",
           "build_report", "parse_since", "uplift", "winner"]
