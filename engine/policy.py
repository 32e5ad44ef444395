"""Policy: what may actually be sent to a matched user, decided inside `plan`.

Rules compete for a user's caps in one tick by `priority` (higher first), then rule id. For each
user a rule would fire for, the checks run in this order and the first that fails is the one
suppression reason the user gets:

1. `opted_out`       marketing rule, and the user carries the `optout` tag
2. `capped_rule`     the rule's own `limits` (fires of this rule in the window)
3. `capped_global`   an engine.yaml `policy.caps` entry (per category or channel, rolling)
4. `no_consent`      a subscription message without a consent quota, and no usable fallback
5. `budget_exhausted` a coupon stock's budget (count or amount) would be overspent

A user who passes is `fire`, or `deferred` when a marketing rule would send inside quiet hours
(the send waits for the end of quiet hours; it is never dropped). Transactional rules are
exempt from caps and quiet hours, never from consent. Caps, consent and budgets count what
earlier rules of the same tick took.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Callable, Sequence

from .config import CouponStock
from .rules.model import Action, CouponAction, MessageAction, Rule
from .store import ledger
from .timeutil import from_micros, to_micros

OPTOUT_TAG = "optout"
POLICY_REASONS = {
    "opted_out": "the user opted out of marketing (tag `optout`)",
    "capped_rule": "the rule's own `limits` are reached for this user",
    "capped_global": "a global frequency cap (engine.yaml policy.caps) is reached",
    "no_consent": "no subscription-message consent left, and no fallback channel",
    "budget_exhausted": "the coupon stock's budget would be overspent",
}
US = timedelta(microseconds=1)


@dataclass
class TickUsage:
    """What the fires decided so far in this tick have taken, keyed for cheap lookups in the
    per-candidate pass: rule id -> user -> fires; cap index -> user -> fires; template ->
    user -> consent uses; coupon stock -> count and fen."""

    rule: dict[str, Counter[str]] = field(default_factory=dict)
    caps: dict[int, Counter[str]] = field(default_factory=dict)
    consent: dict[str, Counter[str]] = field(default_factory=dict)
    coupons: Counter[str] = field(default_factory=Counter)
    coupon_fen: Counter[str] = field(default_factory=Counter)


def actions_for(rule: Rule, variant: str | None) -> tuple[Action, ...]:
    if variant and rule.experiment:
        for v in rule.experiment.variants:
            if v.name == variant and v.actions:
                return v.actions
    return rule.actions


def in_quiet_hours(local: time, start: time, end: time) -> bool:
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # the window wraps past midnight


def quiet_until(at: datetime, start: time, end: time) -> datetime | None:
    """The end of the quiet window `at` is in (the next allowed minute), or None."""
    local = at.timetz().replace(tzinfo=None)
    if not in_quiet_hours(local, start, end):
        return None
    day = at.date()
    if start > end and local >= start:
        day = day + timedelta(days=1)
    return datetime(day.year, day.month, day.day, end.hour, end.minute, tzinfo=at.tzinfo)


@dataclass(frozen=True)
class Step:
    """One action of a variant, resolved for a tick: a message's usable channels in order
    (name, is a subscription channel), or the fixed channel of any other action."""

    fixed: str = ""
    template: str | None = None
    options: tuple[tuple[str, bool], ...] | None = None  # None: not a message


@dataclass(frozen=True)
class VariantPlan:
    actions: tuple[Action, ...]
    steps: tuple[Step, ...]
    stocks: tuple[CouponStock, ...]  # one per coupon action of a known stock


class Policy:
    """Applies the checks for one tick. Everything a check needs is loaded in bulk, one query
    per rule and check (the rule's candidates sit in a temp table), never one per user; the
    per-candidate pass only looks values up in dicts."""

    def __init__(self, snap: Any) -> None:
        self.snap = snap
        self.project = snap.project
        self.conn = snap.conn
        self.T = snap.T
        self.usage = TickUsage()
        self.optout = {u for (u,) in self.conn.execute(
            "SELECT user_id FROM user_list_items WHERE attr = 'tags' AND value = ?",
            (OPTOUT_TAG,))} if "tags" in self.project.datamodel.user else set()
        self.committed: dict[str, tuple[int, int]] = {}
        channels = self.project.config.channels
        self.coupon_channel = next((n for n, c in channels.items()
                                    if c.kind == "wechat_coupon"), "")
        self.subscribe = {n for n, c in channels.items() if c.kind == "wechat_subscribe"}
        self.long_term = {n for n, t in self.project.templates.items() if t.kind == "long_term"}
        # per rule, filled by load():
        self.rule_counts: dict[str, int] = {}
        # the caps that apply to the rule: channel, max, fires in the window per candidate,
        # fires of this tick per user (shared by every rule the cap applies to)
        self.caps: list[tuple[str | None, int, dict[str, int], Counter[str]]] = []
        self.consent: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        self.absent: dict[str, set[str]] = {}

    def load(self, rule: Rule, users: Sequence[str]) -> None:
        ledger.load_candidates(self.conn, users)
        self.rule_counts = ledger.bulk_rule_fires(
            self.conn, rule.id, self.T - rule.limits.per // US) if rule.limits else {}
        self.caps = []
        if rule.marketing:
            for i, cap in enumerate(self.project.config.policy.caps):
                if cap.category is None or cap.category == rule.category:
                    self.caps.append((cap.channel, cap.max, ledger.bulk_caps(
                        self.conn, self.T - cap.per // US, cap.category, cap.channel),
                        self.usage.caps.setdefault(i, Counter())))
        self.consent = {}
        self.absent = {}
        type_id = self.snap.store.type_ids.get("subscribe_authorized")
        for a in rule.all_actions():
            if not isinstance(a, MessageAction):
                continue
            if a.template and a.template not in self.consent:
                self.consent[a.template] = ledger.bulk_consent(self.conn, type_id, a.template,
                                                               self.T)
            for name in (a.channel, *a.fallback):
                if name not in self.absent:
                    attr = self.recipient_attr(name)
                    if attr is not None and attr in self.project.datamodel.user:
                        self.absent[name] = ledger.bulk_absent(self.conn, attr)
                    elif attr is not None:
                        self.absent[name] = set(users)

    def recipient_attr(self, channel: str) -> str | None:
        from .outbox import RECIPIENT_FIELDS

        cfg = self.project.config.channels.get(channel)
        if cfg is None:
            return None
        field_opt, default = RECIPIENT_FIELDS.get(cfg.kind, ("", ""))
        return str(cfg.options.get(field_opt, default)) if field_opt else None

    def variant_plan(self, rule: Rule, variant: str | None) -> VariantPlan:
        actions = actions_for(rule, variant)
        steps: list[Step] = []
        stocks: list[CouponStock] = []
        for a in actions:
            if isinstance(a, MessageAction):
                options = tuple((n, n in self.subscribe) for n in (a.channel, *a.fallback)
                                if n in self.project.config.channels)
                steps.append(Step(template=a.template, options=options))
            elif isinstance(a, CouponAction):
                stock = self.project.coupons.get(a.stock)
                steps.append(Step(self.coupon_channel if stock is not None
                                  and stock.wechat_stock_id else ""))
                if stock is not None:
                    stocks.append(stock)
            elif a.kind == "webhook":
                steps.append(Step(getattr(a, "channel", "webhook")))
            else:
                steps.append(Step())
        return VariantPlan(actions, tuple(steps), tuple(stocks))

    # -- checks (called once per candidate: lookups in what load() read, nothing else) ------
    def router(self, plan: VariantPlan) -> Callable[[str], tuple[tuple[str, ...], str | None]]:
        """A function of the user giving the channel each step of one variant will use
        (consent and fallback resolved), or the reason there is none, for the rule load()
        read. Everything that does not depend on the user is resolved once: per message step,
        its options in order as (name, users without a recipient there or None, and for a
        subscription channel the template's consent lookups)."""
        absent = self.absent
        steps: list[tuple[str, tuple[tuple[Any, ...], ...] | None]] = []
        for step in plan.steps:
            if step.options is None:
                steps.append((step.fixed, None))
                continue
            options: list[tuple[Any, ...]] = []
            for name, subscribe in step.options:
                if subscribe and not step.template:
                    continue  # a subscription channel without a template is never usable
                consent = None
                if subscribe:
                    assert step.template is not None
                    granted, used = self.consent.get(step.template, ({}, {}))
                    consent = (granted, used,
                               self.usage.consent.setdefault(step.template, Counter()),
                               step.template in self.long_term)
                options.append((name, absent.get(name), consent))
            steps.append(("", tuple(options)))
        if all(o is None for _, o in steps):
            fixed = tuple(f for f, _ in steps)
            return lambda user_id: (fixed, None)

        def route(user_id: str) -> tuple[tuple[str, ...], str | None]:
            out: list[str] = []
            for fixed_channel, options in steps:
                if options is None:
                    out.append(fixed_channel)
                    continue
                for name, gone, consent in options:
                    if gone is not None and user_id in gone:
                        continue  # no openid / phone / WeCom id to send to
                    if consent is None:
                        out.append(name)
                        break
                    granted, used, taken, long_term = consent
                    g = granted.get(user_id, 0)
                    if g and (long_term or g - used.get(user_id, 0) - taken.get(user_id, 0) > 0):
                        out.append(name)
                        break
                else:
                    return (), "no_consent"
            return tuple(out), None
        return route

    def budget(self, stocks: Sequence[CouponStock]) -> str | None:
        for stock in stocks:
            if stock.name not in self.committed:
                self.committed[stock.name] = ledger.coupons_committed(self.conn, stock.name)
            count, fen = self.committed[stock.name]
            count += self.usage.coupons[stock.name]
            fen += self.usage.coupon_fen[stock.name]
            if stock.max_count is not None and count + 1 > stock.max_count:
                return "budget_exhausted"
            if stock.max_amount_fen is not None and fen + stock.value_fen > stock.max_amount_fen:
                return "budget_exhausted"
        return None

    # -- the pass over one rule's decisions ------------------------------------------------
    def apply(self, rule: Rule, decisions: Sequence[Any]) -> list[Any]:
        """The checks of the module docstring, in that order, for each decision that would
        fire, then what the fire uses (rule count, caps, consent, coupons) taken so it counts
        against the next candidates and rules. Written out in one loop with per-rule values
        held in locals: it runs once per candidate, hundreds of thousands of times a tick."""
        candidates = [d.user_id for d in decisions if d.outcome == "fire"]
        if not candidates:
            return list(decisions)
        self.load(rule, candidates)
        out = []
        quiet = self.project.config.policy.quiet_hours
        now = from_micros(self.T, self.project.config.tz)
        until = quiet_until(now, quiet.start, quiet.end) if quiet and rule.marketing else None
        until_us = to_micros(until) if until is not None else None
        outcome = "fire" if until_us is None else "deferred"
        optout = self.optout if rule.marketing else set()
        plans = {v: self.variant_plan(rule, v) for v in {d.variant for d in decisions}}
        routes = {v: self.router(p) for v, p in plans.items()}
        # what take() records, per variant: the (template, uses) counters of its subscription
        # steps, looked up by the channel the user got for that step
        consent_steps = {v: tuple((i, step.template) for i, step in enumerate(p.steps)
                                  if step.template and step.options is not None)
                         for v, p in plans.items()}
        subscribe, usage = self.subscribe, self.usage
        limit = rule.limits.max if rule.limits is not None else None
        rule_counts = self.rule_counts
        fired = usage.rule.setdefault(rule.id, Counter())
        caps = self.caps
        budget = self.budget
        for d in decisions:
            if d.outcome != "fire":
                out.append(d)
                continue
            user = d.user_id
            variant = d.variant
            channels, reason = routes[variant](user)
            if user in optout:
                reason = "opted_out"
            elif limit is not None and rule_counts.get(user, 0) + fired.get(user, 0) >= limit:
                reason = "capped_rule"
            else:
                for channel, most, counts, used in caps:
                    if channel is not None and channel not in channels:
                        continue
                    if counts.get(user, 0) + used.get(user, 0) >= most:
                        reason = "capped_global"
                        break
            stocks = plans[variant].stocks
            if reason is None and stocks:
                reason = budget(stocks)
            if reason is not None:
                out.append(d.decided("suppressed", reason, d.channels, d.deferred_until))
                continue
            # take: what this fire uses counts against the next candidates and rules
            # (dict.get, not Counter's __missing__: a Python call per missing key)
            if limit is not None:
                fired[user] = fired.get(user, 0) + 1
            for channel, _, _, used in caps:
                if channel is None or channel in channels:
                    used[user] = used.get(user, 0) + 1
            for i, template in consent_steps[variant]:
                if channels[i] in subscribe:
                    taken = usage.consent[template]
                    taken[user] = taken.get(user, 0) + 1
            for stock in stocks:
                usage.coupons[stock.name] += 1
                usage.coupon_fen[stock.name] += stock.value_fen
            out.append(d.decided(outcome, None, channels,
                                 d.deferred_until if until_us is None else until_us))
        return out
