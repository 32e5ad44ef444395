"""`engine pressure`: how hard the playbook pushes on each user, and which rules lose out.

Four parts (docs/backtest.md):

1. the worst case per user before caps, per enabled marketing rule that sends messages: fires
   per day and per week from its trigger (slots in the busiest day or week, one per dated
   attribute, unbounded for events and coupons), its fire mode and its `limits`, times its
   messages per fire; and, from the data at T, users by how many message rules' audiences
   hold for them at once (audiences selected in SQL);
2. each `policy.caps` entry against the worst case of the rules it covers: binds or not;
3. rules that starve: a backtest of the `window` before T, and the rules most of whose
   would-be fires were `capped_global` (the cap taken first by other rules: of higher priority
   in the same tick, or of any priority earlier in the cap's window);
4. rules that can never fire, with the reason.

Every finding has a stable code (FINDINGS).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

from .backtest import Span, backtest, slots_between, timeline
from .durations import format_duration
from .lang import typed as t
from .plan import Snapshot, date_matches, scheduled_matches
from .project import Project
from .rules.model import CouponAction, MessageAction, Rule
from .store import Store
from .store import pressure_sql as sql
from .store.scratch import scratch_store
from .timeutil import to_micros
from .triggers import is_scheduled, next_slot

DAY, WEEK = timedelta(days=1), timedelta(days=7)
STARVE_SHARE = 0.5

FINDINGS = {
    "CAP_BINDS": "the rules a cap covers can fire more often than the cap allows: it decides",
    "UNBOUNDED_RULE": "a marketing rule with no bound before caps (events or coupons, no limits)",
    "RULE_STARVES": "most would-be fires were capped_global: other rules took the cap first",
    "NO_MATCH_IN_WINDOW": "the rule matched nobody in the backtest window before T",
    "NEVER_DISABLED": "the rule is disabled",
    "NEVER_HOLDOUT": "the experiment's holdout is 100%: every matched user is held out",
    "NEVER_EVENT_ABSENT": "the trigger's event type never occurs in the data",
    "NEVER_DATE_ABSENT": "the trigger's dated attribute is set for no user",
    "NEVER_NO_CONSENT": "a one-time subscription message with no accepts of its template in the "
                        "data and no fallback channel",
    "NEVER_NO_COUPON": "coupon_expiring, but no enabled rule issues a coupon of that stock",
    "NEVER_CONTRADICTION": "the audience is contradictory (e.g. x >= 7 and x < 3)",
}


@dataclass(frozen=True)
class Finding:
    code: str
    rule: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "rule": self.rule, "message": self.message}


@dataclass(frozen=True)
class WorstCase:
    rule: str
    per_day: int | None  # messages; None = unbounded
    per_week: int | None
    fires_day: int | None
    fires_week: int | None
    why: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.rule, "per_day": self.per_day, "per_week": self.per_week,
                "fires_per_day": self.fires_day, "fires_per_week": self.fires_week,
                "why": self.why}


@dataclass(frozen=True)
class CapCheck:
    label: str
    max: int
    per: timedelta
    rules: tuple[str, ...]
    worst: int | None  # fires the covered rules could make in one `per` window
    binds: bool
    over_day: int | None  # users matched by more covered rules than `max` in the day before T

    def as_json(self) -> dict[str, Any]:
        return {"cap": self.label, "max": self.max, "per": format_duration(self.per),
                "rules": list(self.rules), "worst_case": self.worst, "binds": self.binds,
                "users_over_day": self.over_day}


@dataclass(frozen=True)
class PressureReport:
    at: datetime
    window: timedelta | None
    worst: tuple[WorstCase, ...]
    overlap: dict[int, int]
    not_counted: tuple[str, ...]  # message rules whose audience needs an event (not in SQL)
    caps: tuple[CapCheck, ...]
    starving: dict[str, dict[str, int]]  # backtest totals per rule (matched, capped_global ...)
    findings: tuple[Finding, ...] = field(default=())

    def totals(self) -> tuple[int | None, int | None]:
        return (_sum([w.per_day for w in self.worst]), _sum([w.per_week for w in self.worst]))

    def as_json(self) -> dict[str, Any]:
        day, week = self.totals()
        return {"at": self.at.isoformat(),
                "worst_case": {"rules": [w.as_json() for w in self.worst],
                               "per_day": day, "per_week": week},
                "overlap_day_before": {str(k): v for k, v in self.overlap.items()},
                "overlap_not_counted": list(self.not_counted),
                "caps": [c.as_json() for c in self.caps],
                "window": format_duration(self.window) if self.window else None,
                "backtest": self.starving,
                "findings": [f.as_json() for f in self.findings]}

    def format_text(self) -> str:
        day, week = self.totals()
        lines = [f"pressure at {self.at.isoformat()}", "",
                 "worst case per user before caps (marketing messages):"]
        width = max([len(w.rule) for w in self.worst] + [5])
        lines.append(f"  {'rule':<{width}}  {'per day':>9}  {'per week':>9}  from")
        for w in self.worst:
            lines.append(f"  {w.rule:<{width}}  {_n(w.per_day):>9}  {_n(w.per_week):>9}  {w.why}")
        lines.append(f"  {'(all)':<{width}}  {_n(day):>9}  {_n(week):>9}")
        lines += ["", "users by how many message rules matched them in the day before T:"]
        lines += [f"  {k:>3} rule(s)  {v:>10,}" for k, v in self.overlap.items()]
        if self.not_counted:
            lines.append("  not counted (coupon rules, audiences reading the event): "
                         + ", ".join(self.not_counted))
        lines += ["", "caps:"]
        for c in self.caps:
            state = "binds" if c.binds else "never reached"
            over = f"; {c.over_day:,} users matched more rules than that in one day" \
                if c.over_day else ""
            lines.append(f"  {c.label}: {state} (worst case {_n(c.worst)} per "
                         f"{format_duration(c.per)} from {len(c.rules)} rule(s)){over}")
        if not self.caps:
            lines.append("  none configured (engine.yaml policy.caps)")
        lines += ["", "findings:"]
        lines += [f"  {f.code}  {f.rule or '-'}: {f.message}" for f in self.findings]
        if not self.findings:
            lines.append("  none")
        return "\n".join(lines)


def _n(v: int | None) -> str:
    return "unbounded" if v is None else str(v)


def _sum(values: Sequence[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


# -- 1. worst case ----------------------------------------------------------------------------

def messages_per_fire(rule: Rule) -> int:
    """Messages one fire sends (the largest of the rule's and its variants' action lists)."""
    options = [rule.actions] + [v.actions for v in (rule.experiment.variants if rule.experiment
                                                    else ()) if v.actions]
    return max(sum(1 for a in acts if isinstance(a, MessageAction)) for acts in options)


def busiest(slots: Sequence[int], window: timedelta) -> int:
    """The most slots in any window of this length (rolling)."""
    w = window // timedelta(microseconds=1)
    best, lo = 0, 0
    for hi, s in enumerate(slots):
        while slots[lo] <= s - w:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def fires_bound(project: Project, rule: Rule, window: timedelta, at: datetime) -> tuple[
        int | None, str]:
    """At most how many times the rule can fire for one user in any window of this length."""
    kind = rule.trigger.kind
    bound: int | None
    if is_scheduled(rule):
        # five weeks of slots give the busiest day and week; a rule with fewer slots than
        # that (monthly, yearly) fires at most once in a week anyway
        tz = project.config.tz
        n = busiest(slots_between(rule, at, at + timedelta(days=35), tz), window)
        if n == 0 and next_slot(rule.trigger, at, tz) is not None:
            n = 1
        bound = (n + 1) // 2 if rule.fire == "on_enter" else n  # on_enter: leave between
        what = (rule.trigger.cron.text if rule.trigger.cron is not None
                else f"every {format_duration(rule.trigger.every or DAY)}")
        why = f"{what} ({rule.fire})"
    elif kind == "date":
        bound, why = 1, f"date {rule.trigger.date_attr} (one occurrence)"
    elif kind == "event":
        bound, why = None, f"each {rule.trigger.event} event"
    else:
        bound, why = None, "each expiring coupon"
    if rule.limits is not None:
        per = rule.limits.per
        lim = rule.limits.max * -(-window // per)  # ceil(window / per) windows of the limit
        bound = lim if bound is None else min(bound, lim)
        why += f", limits {rule.limits.max} per {format_duration(per)}"
    return bound, why


def worst_cases(project: Project, rules: Sequence[Rule], at: datetime) -> list[WorstCase]:
    out = []
    for r in rules:
        m = messages_per_fire(r)
        if not r.marketing or m == 0:
            continue
        day, why = fires_bound(project, r, DAY, at)
        week, _ = fires_bound(project, r, WEEK, at)
        out.append(WorstCase(r.id, None if day is None else day * m,
                             None if week is None else week * m, day, week, why))
    return out


# -- 2. caps ----------------------------------------------------------------------------------

def cap_label(cap: Any) -> str:
    scope = " ".join(x for x in (f"category {cap.category}" if cap.category else "",
                                 f"channel {cap.channel}" if cap.channel else "") if x)
    return f"{scope or 'all marketing'}: max {cap.max} per {format_duration(cap.per)}"


def covered(cap: Any, rule: Rule) -> bool:
    if not rule.marketing or (cap.category is not None and cap.category != rule.category):
        return False
    if cap.channel is None:
        return True
    return any(isinstance(a, MessageAction) and cap.channel in (a.channel, *a.fallback)
               for a in rule.all_actions())


def check_caps(project: Project, rules: Sequence[Rule], at: datetime,
               matches: dict[str, list[str]], conn: Any) -> list[CapCheck]:
    out = []
    for cap in project.config.policy.caps:
        mine = [r for r in rules if covered(cap, r)]
        worst = _sum([fires_bound(project, r, cap.per, at)[0] for r in mine])
        over = None
        if matches:
            dist = sql.overlap_distribution(conn, {r.id: matches[r.id] for r in mine
                                                   if r.id in matches})
            over = sum(v for k, v in dist.items() if k > cap.max)
        out.append(CapCheck(cap_label(cap), cap.max, cap.per, tuple(r.id for r in mine), worst,
                            worst is None or worst > cap.max, over))
    return out


# -- 4. never fires ---------------------------------------------------------------------------

@dataclass
class _Range:
    lo: Any = None
    hi: Any = None
    lo_in: bool = True
    hi_in: bool = True
    eq: set[Any] | None = None

    def add(self, op: str, v: Any) -> bool:
        """Narrow by `x op v`; False when no value is left."""
        if op == "==":
            self.eq = {v} if self.eq is None else self.eq & {v}
            op_list = [(">=", v), ("<=", v)] if isinstance(v, (int, float)) else []
        else:
            op_list = [(op, v)]
        for o, w in op_list:
            if o in (">", ">=") and (self.lo is None or w > self.lo
                                     or (w == self.lo and o == ">")):
                self.lo, self.lo_in = w, o == ">="
            elif o in ("<", "<=") and (self.hi is None or w < self.hi
                                       or (w == self.hi and o == "<")):
                self.hi, self.hi_in = w, o == "<="
        if self.eq == set():
            return False
        if self.lo is not None and self.hi is not None:
            if self.lo > self.hi or (self.lo == self.hi and not (self.lo_in and self.hi_in)):
                return False
        return True


FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}


def contradiction(expr: t.TExpr) -> bool:
    """A top-level `and` whose comparisons of one expression with literals leave no value
    (`x >= 7 and x < 3`, `x == "a" and x == "b"`). Only these simple cases are detected."""
    items = expr.items if isinstance(expr, t.TAnd) else (expr,)
    ranges: list[tuple[t.TExpr, _Range]] = []
    for c in items:
        if not isinstance(c, t.TCompare) or c.op not in FLIP:
            continue
        if isinstance(c.right, t.TLit) and not isinstance(c.left, t.TLit):
            x, op, v = c.left, c.op, c.right.value
        elif isinstance(c.left, t.TLit) and not isinstance(c.right, t.TLit):
            x, op, v = c.right, FLIP[c.op], c.left.value
        else:
            continue
        if v is None or isinstance(v, bool):
            continue
        rng = next((r for e, r in ranges if e == x), None)
        if rng is None:
            rng = _Range()
            ranges.append((x, rng))
        try:
            if not rng.add(op, v):
                return True
        except TypeError:  # values that do not order (mixed types): not a simple case
            continue
    return False


def never_fires(project: Project, store: Store, rules: Sequence[Rule]) -> list[Finding]:
    conn = store.conn
    out: list[Finding] = []
    enabled = [r for r in rules if r.enabled]
    consented: set[str] | None = None
    for r in rules:
        tr = r.trigger
        if not r.enabled:
            out.append(Finding("NEVER_DISABLED", r.id, "the rule is disabled (`enabled: false`)"))
            continue
        if r.experiment is not None and r.experiment.holdout >= 1.0:
            out.append(Finding("NEVER_HOLDOUT", r.id, "experiment holdout is 100%"))
        if tr.kind == "event" and not sql.event_type_present(conn, store.type_ids.get(
                tr.event or "")):
            out.append(Finding("NEVER_EVENT_ABSENT", r.id,
                               f"no `{tr.event}` event in the data"))
        if tr.kind == "date" and tr.date_attr and tr.date_attr in project.datamodel.user \
                and not sql.attribute_present(conn, tr.date_attr):
            out.append(Finding("NEVER_DATE_ABSENT", r.id,
                               f"no user has `{tr.date_attr}` set"))
        if tr.kind == "coupon_expiring":
            issuers = [x.id for x in enabled if any(
                isinstance(a, CouponAction) and (tr.stock is None or a.stock == tr.stock)
                for a in x.all_actions())]
            if not issuers:
                out.append(Finding("NEVER_NO_COUPON", r.id,
                                   f"no enabled rule issues {tr.stock or 'any'} coupons"))
        for a in r.actions:
            if not isinstance(a, MessageAction) or not a.template or a.fallback:
                continue
            ch = project.config.channels.get(a.channel)
            tpl = project.templates.get(a.template)
            if ch is None or ch.kind != "wechat_subscribe" or tpl is None \
                    or tpl.kind != "one_time":
                continue
            if consented is None:
                consented = sql.consented_templates(conn)
            if a.template not in consented:
                out.append(Finding("NEVER_NO_CONSENT", r.id,
                                   f"nobody ever accepted template `{a.template}` and the "
                                   "message has no fallback"))
        if r.audience is not None:
            if contradiction(r.audience.expr):
                out.append(Finding("NEVER_CONTRADICTION", r.id,
                                   f"the audience cannot hold: {r.audience.text.strip()}"))
    return out


# -- putting it together ----------------------------------------------------------------------

def audience_matches(project: Project, store: Store, rules: Sequence[Rule], at: datetime
                     ) -> tuple[dict[str, list[str]], list[str]]:
    """Per message rule, the users it matched in the day before T: a scheduled rule's audience
    as if it were due at T (whatever its slots); an event rule's audience at T among the users
    with its trigger event that day; a date rule's occurrences that day. Audiences are
    selected in SQL. Rules whose audience reads the triggering event, and coupon_expiring
    rules, are left out (returned apart)."""
    snap = Snapshot(project, store, to_micros(at))
    since = snap.T - DAY // timedelta(microseconds=1)
    out: dict[str, list[str]] = {}
    skipped: list[str] = []
    for r in rules:
        conds = [c for c in (r.audience, r.unless) if c is not None]
        kind = r.trigger.kind
        if kind == "coupon_expiring" or any(isinstance(n, t.TEventField)
                                            for c in conds for n in t.walk(c.expr)):
            skipped.append(r.id)
        elif is_scheduled(r):
            out[r.id] = [o.user_id for o in scheduled_matches(snap, r, snap.T)]
        elif kind == "event":
            audience = {o.user_id for o in scheduled_matches(snap, r, snap.T)}
            out[r.id] = [u for u in sql.users_with_event(
                store.conn, store.type_ids.get(r.trigger.event or ""), since, snap.T)
                if u in audience]
        else:
            out[r.id] = sorted({o.user_id for o in date_matches(snap, r, since)})
    return out, skipped


def starving(project: Project, totals: dict[str, dict[str, int]], window: timedelta
             ) -> list[Finding]:
    """RULE_STARVES and NO_MATCH_IN_WINDOW from the backtest totals per rule."""
    out = []
    for rid, row in totals.items():
        rule = project.rule(rid)
        if rule is None:
            continue
        wanted = row["matched"] - row.get("holdout", 0) - row.get("already_entered", 0)
        starved = row.get("capped_global", 0)
        if starved and wanted and starved / wanted >= STARVE_SHARE:
            takers = sorted(x.id for x in project.rules if x.marketing and x.id in totals
                            and x.priority > rule.priority
                            and totals[x.id]["fire"] + totals[x.id]["deferred"] > 0)
            out.append(Finding(
                "RULE_STARVES", rid,
                f"{starved} of {wanted} would-be fires capped_global over the "
                f"{format_duration(window)} before T"
                + (f"; higher-priority rules that fired: {', '.join(takers)}" if takers
                   else "")))
        if row["matched"] == 0:
            out.append(Finding("NO_MATCH_IN_WINDOW", rid, f"matched nobody in the "
                               f"{format_duration(window)} before T"))
    return out


def pressure(project: Project, db_path: Path, at: datetime, window: timedelta | None,
             step: timedelta, progress: Callable[[int], None] | None = None,
             on_ticks: Callable[[int], None] | None = None) -> PressureReport:
    rules = list(project.rules)
    enabled = [r for r in rules if r.enabled and r.trigger.kind != "invalid"]
    worst = worst_cases(project, enabled, at)
    message_rules = [r for r in enabled if r.marketing and messages_per_fire(r) > 0]
    findings: list[Finding] = []
    with scratch_store(db_path, project.datamodel) as store:
        matches, skipped = audience_matches(project, store, message_rules, at)
        overlap = sql.overlap_distribution(store.conn, matches)
        caps = check_caps(project, enabled, at, matches, store.conn)
        findings += never_fires(project, store, rules)
    for w in worst:
        if w.per_week is None:
            findings.append(Finding("UNBOUNDED_RULE", w.rule, f"{w.why}: no limit before caps"))
    for c in caps:
        if c.binds:
            findings.append(Finding("CAP_BINDS", None, f"{c.label}: the rules it covers can "
                                    f"make {_n(c.worst)} fires per {format_duration(c.per)}"))
    totals: dict[str, dict[str, int]] = {}
    if window is not None and enabled:
        span = Span(at - window, at, step)
        ticks = timeline(project, enabled, span)
        if on_ticks is not None:
            on_ticks(len(ticks))
        report = backtest(project, db_path, enabled, span, progress, ticks)
        for row in report.as_json()["rules"]:
            totals[row["id"]] = {"matched": row["matched"], "fire": row["fire"],
                                 "deferred": row["deferred"], **row["suppressed"]}
        findings += starving(project, totals, window)
    never = {f.rule for f in findings if f.code.startswith("NEVER_")}
    findings = [f for f in findings if not (f.code == "NO_MATCH_IN_WINDOW" and f.rule in never)]
    order = list(FINDINGS)
    findings.sort(key=lambda f: (order.index(f.code), f.rule or ""))
    return PressureReport(at, window, tuple(worst), overlap, tuple(skipped), tuple(caps),
                          totals, tuple(findings))
