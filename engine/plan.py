"""`plan`: (rules, store snapshot, T) -> who matches and what happens to each of them.

Pure: it reads the store and writes nothing. `engine plan`, `engine explain`, `engine test`,
`engine run` and the daemon all go through it, so what an operator previews is what runs.

Every matched user gets exactly one outcome: `fire`, `deferred` (quiet hours) or
`suppressed` with one reason. Reasons decided here (see docs/plan.md):

- `already_entered`: `fire: on_enter` and the user was already inside the audience at the
  rule's previous tick; they are re-armed only after leaving it.
- `holdout`: the experiment's holdout group (kept for measuring uplift, never acted on).

Policy reasons (caps, consent, quiet hours, budgets) plug into the same decision list.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from .experiments import assigner
from .lang import typed as t
from .lang.to_python import Ctx, EventRow, Lifecycle, compile_condition
from .lang.values import days_to_date
from .project import Project
from .rules.model import Rule
from .store import Store
from .store import queries as q
from .store.audience import Env, select_users
from .store.facts import StoredFacts, lazy_facts
from .store.rfm_sql import SegmentMeans
from .timeutil import from_micros, to_micros
from .triggers import date_fire_offset_us, event_eval_time
from . import rfm as rfmlib
from .policy import POLICY_REASONS, Policy

REASONS = {
    "already_entered": "fire: on_enter, and the user was already in the audience last tick",
    "holdout": "in the experiment's holdout group (measured, never acted on)",
    **POLICY_REASONS,
}


class Decision(NamedTuple):
    """What happens to one matched user. An immutable record like the frozen dataclasses
    elsewhere, but a NamedTuple: a plan builds one or two per matched user (hundreds of
    thousands), and a NamedTuple is built in a third of the time of a frozen dataclass."""

    user_id: str
    outcome: str  # fire | deferred | suppressed
    reason: str | None
    occurrence: str  # with rule id and user id: the fire's idempotency key
    eval_at: int  # µs: the instant the audience was evaluated
    variant: str | None = None
    event_id: str | None = None
    channels: tuple[str, ...] = ()  # per action step: the channel it will use ("" internal)
    deferred_until: int | None = None  # µs, for `deferred` (quiet hours)

    def decided(self, outcome: str, reason: str | None, channels: tuple[str, ...],
                deferred_until: int | None) -> "Decision":
        """This decision with its outcome decided by the policy, built directly (positional
        arguments, in field order): `_replace` costs several times more over hundreds of
        thousands of decisions. A field added above must be carried here too."""
        return Decision(self.user_id, outcome, reason, self.occurrence, self.eval_at,
                        self.variant, self.event_id, channels, deferred_until)


@dataclass(frozen=True)
class RulePlan:
    rule_id: str
    decisions: tuple[Decision, ...]
    left: tuple[str, ...] = ()  # on_enter members no longer in the audience: re-armed
    entered: tuple[str, ...] = ()  # on_enter audience now (the new membership)

    @property
    def matched(self) -> int:
        return len(self.decisions)

    def count(self, outcome: str) -> int:
        return sum(1 for d in self.decisions if d.outcome == outcome)

    def suppressed(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.decisions:
            if d.outcome == "suppressed" and d.reason:
                out[d.reason] = out.get(d.reason, 0) + 1
        return dict(sorted(out.items()))

    def as_json(self, users: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.rule_id, "matched": self.matched,
                               "fire": self.count("fire"), "deferred": self.count("deferred"),
                               "suppressed": self.suppressed()}
        if users:
            out["users"] = {"matched": [d.user_id for d in self.decisions],
                            "fire": [d.user_id for d in self.decisions if d.outcome == "fire"]}
        return out


@dataclass(frozen=True)
class Plan:
    at: datetime
    rules: tuple[RulePlan, ...]

    def as_json(self, users: bool = False) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "rules": [r.as_json(users) for r in self.rules]}


@dataclass
class Snapshot:
    """The store as the planner reads it at one T (RFM materialised once, lazily)."""

    project: Project
    store: Store
    T: int
    _rfm: str | None = None
    _facts: dict[str, StoredFacts] = field(default_factory=dict)
    _no_rfm: set[str] = field(default_factory=set)

    @property
    def conn(self) -> Any:
        return self.store.conn

    def rfm_table(self) -> str:
        if self._rfm is None:
            event = self.project.config.purchase_event
            type_id = self.store.type_ids.get(event)
            self._rfm = rfmlib.materialise(
                self.store, from_micros(self.T), event, scores=_reads_rfm_scores(self.project),
                source=self.summary(type_id) if type_id is not None else None)
        return self._rfm

    _summaries: dict[int, str] = field(default_factory=dict)
    _fresh: bool | None = None
    _means: tuple[int, SegmentMeans] | None = None

    @property
    def rfm_inline(self) -> Callable[[], tuple[int, SegmentMeans]] | None:
        """For the audience compiler (Env.rfm_means): when no rule reads rfm.r/f/m, the
        segment and metrics are computed in each query from the purchase summary, with the
        means of this T (computed once, lazily), and no RFM table is built for it."""
        event = self.project.config.purchase_event
        if _reads_rfm_scores(self.project) or self.store.type_ids.get(event) is None:
            return None
        return self.rfm_means

    def rfm_means(self) -> tuple[int, SegmentMeans]:
        if self._means is None:
            type_id = self.store.type_ids[self.project.config.purchase_event]
            self._means = (type_id, rfmlib.segment_means(self.conn, self.summary(type_id),
                                                         self.T))
        return self._means

    @property
    def stored_summary(self) -> bool:
        """Whether the stored event summary is fresh (read once per snapshot)."""
        if self._fresh is None:
            from .store.event_summary import is_fresh
            self._fresh = is_fresh(self.conn)
        return self._fresh

    def summary(self, type_id: int) -> str:
        """Per-user count, first/last ts and amount of one event type before T, once per
        snapshot: shared by the rules' unwindowed aggregates and RFM."""
        if type_id not in self._summaries:
            from .store.audience import materialise_summary
            self._summaries[type_id] = materialise_summary(self.conn, self.T, type_id,
                                                           self.stored_summary)
        return self._summaries[type_id]

    def drop_tables(self) -> None:
        """Drop the per-snapshot event summaries: a long-lived connection (the daemon) would
        otherwise keep one set per tick."""
        for name in self._summaries.values():
            self.conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
        self._summaries.clear()
        self._means = None
        self._rfm = None  # without scores, temp.rfm is a view over a summary just dropped

    def facts(self, user_id: str, needs_rfm: bool) -> StoredFacts:
        """A user's facts, loaded once per snapshot. They hold every stored event (the
        evaluation instant filters them), so one load serves every occurrence of the tick;
        a load without RFM is replaced when a rule needs RFM."""
        cached = self._facts.get(user_id)
        if cached is None or (needs_rfm and not cached.rfm and user_id not in self._no_rfm):
            cached = lazy_facts(self.conn, self.project.datamodel, user_id,
                                self.rfm_table() if needs_rfm else None)
            self._facts[user_id] = cached
            if needs_rfm and not cached.rfm:
                self._no_rfm.add(user_id)  # no RFM row (never bought): do not reload
        return cached

    def lifecycle(self) -> Lifecycle:
        lc = self.project.config.lifecycle
        us = timedelta(microseconds=1)
        return Lifecycle(lc.new_within // us, lc.active_within // us, lc.sleeping_within // us)


def _reads_rfm_scores(project: Project) -> bool:
    """Whether any rule of the project reads rfm.r, rfm.f or rfm.m (not only the segment and
    the metrics): only then are the users ranked when RFM is materialised."""
    return any(isinstance(n, t.TRfm) and n.name in ("r", "f", "m")
               for r in project.rules for c in (r.audience, r.unless, r.trigger.where)
               if c is not None for n in t.walk(c.expr))


def _uses_rfm(rule: Rule) -> bool:
    return any(isinstance(n, t.TRfm) for c in (rule.audience, rule.unless)
               if c is not None for n in t.walk(c.expr))


def window_start(snap: Snapshot, rule: Rule) -> int:
    """Events and dates are due when their instant lies in (start, T]."""
    last = q.last_tick(snap.conn, rule.id)
    grace = snap.project.config.schedule_grace // timedelta(microseconds=1)
    return last if last is not None and last < snap.T else snap.T - grace


# -- who matches ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Occurrence:
    user_id: str
    key: str
    eval_at: int
    event: EventRow | None = None


def scheduled_matches(snap: Snapshot, rule: Rule, slot: int) -> list[Occurrence]:
    """Audience of a schedule/every rule at T, selected in SQL."""
    env = Env(snap.T, snap.project.config.tz, snap.store.type_ids, lifecycle=_lc_tuple(snap),
              summary=snap.summary, stored_summary=snap.stored_summary,
              rfm_means=snap.rfm_inline)
    has_signup = _has_signup(snap)
    if rule.audience is not None:
        users = select_users(snap.conn, rule.audience.expr, env, has_signup, snap.rfm_table)
    else:
        users = q.all_user_ids(snap.conn)
    if rule.unless is not None and users:
        excluded = set(select_users(snap.conn, rule.unless.expr,
                                    Env(snap.T, snap.project.config.tz, snap.store.type_ids,
                                        rfm_table=env.rfm_table, lifecycle=_lc_tuple(snap),
                                        summary=snap.summary, stored_summary=snap.stored_summary,
                                        rfm_means=snap.rfm_inline),
                                    has_signup, snap.rfm_table))
        users = [u for u in users if u not in excluded]
    key = from_micros(slot, snap.project.config.tz).isoformat()
    return [Occurrence(u, key, snap.T) for u in users]


def _lc_tuple(snap: Snapshot) -> tuple[int, int, int]:
    lc = snap.lifecycle()
    return (lc.new_within, lc.active_within, lc.sleeping_within)


def _has_signup(snap: Snapshot) -> bool:
    f = snap.project.datamodel.user.get("signup_at")
    return f is not None and str(f.type) == "timestamp"


def _evaluate(snap: Snapshot, rule: Rule, user_id: str, at: int,
              event: EventRow | None) -> bool:
    """Audience (and not unless) for one user at one instant: Python closures, point facts."""
    facts = snap.facts(user_id, _uses_rfm(rule))
    ctx = Ctx(facts, at, snap.project.config.tz, event, snap.lifecycle())
    if rule.audience is not None and not compile_condition(rule.audience.expr)(ctx):
        return False
    if rule.unless is not None and compile_condition(rule.unless.expr)(ctx):
        return False
    return True


def event_matches(snap: Snapshot, rule: Rule, start: int) -> list[Occurrence]:
    trigger = rule.trigger
    assert trigger.event is not None
    wait = trigger.wait // timedelta(microseconds=1) if trigger.wait is not None else 0
    # evaluation instant in (start, T]  <=>  ts in (start - wait - eps, T - wait - eps]
    eps = 0 if trigger.wait is not None else 1
    rows = q.events_between(snap.conn, snap.project.datamodel,
                            snap.store.type_ids.get(trigger.event), trigger.event,
                            start - wait - eps, snap.T - wait - eps)
    where = compile_condition(trigger.where.expr) if trigger.where is not None else None
    out = []
    for ev in rows:
        at = event_eval_time(trigger, ev.ts)
        if where is not None:
            facts = snap.facts(ev.user_id, False)
            if not where(Ctx(facts, at, snap.project.config.tz, ev, snap.lifecycle())):
                continue
        if _evaluate(snap, rule, ev.user_id, at, ev):
            out.append(Occurrence(ev.user_id, f"event:{ev.event_id}", at, ev))
    return out


def date_matches(snap: Snapshot, rule: Rule, start: int) -> list[Occurrence]:
    trigger = rule.trigger
    attr = trigger.date_attr
    assert attr is not None
    field_ = snap.project.datamodel.user[attr]
    offset = date_fire_offset_us(trigger)
    tz = snap.project.config.tz
    candidates: list[tuple[str, str, int]] = []  # user, occurrence key, fire instant
    if str(field_.type) == "timestamp":
        for user_id, value in q.dated_users(snap.conn, snap.project.datamodel, attr,
                                            start - offset, snap.T - offset):
            candidates.append((user_id, f"{attr}:{value}", value + offset))
    else:
        lo, hi = from_micros(start - offset, tz), from_micros(snap.T - offset, tz)
        dates = q.local_dates_between(lo, hi, tz)
        if trigger.annual:
            wanted = {d.strftime("%m-%d") for d in dates}
            if any(d.month == 2 and d.day == 28 and not _leap(d.year) for d in dates):
                wanted.add("02-29")  # Feb 29 anniversaries are kept on Feb 28 in common years
            by_md = {d.strftime("%m-%d"): d for d in dates}
            for user_id, days in q.users_with_dates(snap.conn, attr, wanted):
                md = days_to_date(days).strftime("%m-%d")
                d = by_md.get(md) or by_md.get("02-28")
                assert d is not None
                fire = to_micros(datetime(d.year, d.month, d.day, tzinfo=tz)) + offset
                candidates.append((user_id, f"{attr}:{d.year}", fire))
        else:
            wanted_full = {d.isoformat() for d in dates}
            for user_id, days in q.users_with_dates(snap.conn, attr,
                                                    {x[5:] for x in wanted_full}):
                d = days_to_date(days)
                if d.isoformat() in wanted_full:
                    fire = to_micros(datetime(d.year, d.month, d.day, tzinfo=tz)) + offset
                    candidates.append((user_id, f"{attr}:{d.isoformat()}", fire))
    out = []
    for user_id, key, _fire in candidates:
        if _evaluate(snap, rule, user_id, snap.T, None):
            out.append(Occurrence(user_id, key, snap.T))
    return out


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


# -- what happens to each matched user --------------------------------------------------------

def decide(rule: Rule, matches: Sequence[Occurrence], previous_members: set[str] | None,
           ) -> RulePlan:
    on_enter = rule.fire == "on_enter" and rule.trigger.kind in ("schedule", "every")
    decisions = []
    assign_user = assigner(rule.id, rule.experiment)
    for m in matches:
        a = assign_user(m.user_id)
        event_id = m.event.event_id if m.event is not None else None
        if on_enter and previous_members is not None and m.user_id in previous_members:
            decisions.append(Decision(m.user_id, "suppressed", "already_entered", m.key,
                                      m.eval_at, a.variant, event_id))
        elif a.holdout:
            decisions.append(Decision(m.user_id, "suppressed", "holdout", m.key, m.eval_at,
                                      None, event_id))
        else:
            decisions.append(Decision(m.user_id, "fire", None, m.key, m.eval_at, a.variant,
                                      event_id))
    left: tuple[str, ...] = ()
    entered: tuple[str, ...] = ()
    if on_enter:
        now = {m.user_id for m in matches}
        entered = tuple(sorted(now))
        left = tuple(sorted((previous_members or set()) - now))
    return RulePlan(rule.id, tuple(decisions), left, entered)


def plan_rule(snap: Snapshot, rule: Rule, slot: int | None = None) -> RulePlan:
    kind = rule.trigger.kind
    if kind in ("schedule", "every"):
        matches = scheduled_matches(snap, rule, slot if slot is not None else snap.T)
        return decide(rule, matches, q.members(snap.conn, rule.id))
    start = window_start(snap, rule)
    if kind == "event":
        return decide(rule, event_matches(snap, rule, start), None)
    if kind == "date":
        return decide(rule, date_matches(snap, rule, start), None)
    return decide(rule, coupon_expiring_matches(snap, rule, start), None)


def coupon_expiring_matches(snap: Snapshot, rule: Rule, start: int) -> list[Occurrence]:
    """Coupons this engine issued that expire in `before`: they exist once the engine issues
    coupons (the actions stage); until then there is nothing to match."""
    table = snap.conn.execute("SELECT name FROM sqlite_master WHERE name = 'issued_coupons'"
                              ).fetchone()
    if table is None:
        return []
    before = rule.trigger.before // timedelta(microseconds=1) if rule.trigger.before else 0
    sql = ("SELECT coupon_id, user_id, expires_at FROM issued_coupons WHERE used_at IS NULL "
           "AND expires_at - ? > ? AND expires_at - ? <= ?")
    params: list[Any] = [before, start, before, snap.T]
    if rule.trigger.stock:
        sql += " AND stock = ?"
        params.append(rule.trigger.stock)
    out = []
    for coupon_id, user_id, _ in snap.conn.execute(sql + " ORDER BY user_id", params):
        if _evaluate(snap, rule, user_id, snap.T, None):
            out.append(Occurrence(user_id, f"coupon:{coupon_id}", snap.T))
    return out


def plan(project: Project, store: Store, at: datetime, rule_ids: Iterable[str] = (),
         slots: dict[str, int] | None = None, policy: bool = True) -> Plan:
    """Evaluate the named rules (default: every enabled rule) as if due at `at`.

    `slots` gives scheduled rules their due slot (`engine run`); policy (caps, consent,
    budgets, quiet hours) is applied across the rules in priority order."""
    from .errors import CannotRun

    chosen = list(rule_ids)
    rules = []
    for rid in chosen:
        r = project.rule(rid)
        if r is None:
            from .lang.checker import suggest
            raise CannotRun(f"no rule `{rid}` in the project",
                            hint=suggest(rid, [x.id for x in project.rules]))
        rules.append(r)
    if not chosen:
        rules = [r for r in project.rules if r.enabled]
    snap = Snapshot(project, store, to_micros(at))
    try:
        plans = {r.id: plan_rule(snap, r, (slots or {}).get(r.id)) for r in rules}
        if policy:
            pol = Policy(snap)
            for r in sorted(rules, key=lambda r: (-r.priority, r.id)):
                rp = plans[r.id]
                plans[r.id] = RulePlan(rp.rule_id, tuple(pol.apply(r, rp.decisions)), rp.left,
                                       rp.entered)
    finally:
        snap.drop_tables()
    return Plan(at, tuple(plans[r] for r in sorted(plans)))
