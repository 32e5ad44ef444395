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
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any, Sequence

from .config import CouponStock
from .rules.model import Action, CouponAction, MessageAction, Rule
from .store import ledger
from .timeutil import from_micros, to_micros

OPTOUT_TAG = "optout"
FEW_CANDIDATES = 2000  # below this, consent is read per candidate rather than materialised
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
    """What the fires decided so far in this tick have taken."""

    rule: Counter[tuple[str, str]] = field(default_factory=Counter)
    caps: Counter[tuple[str, int]] = field(default_factory=Counter)
    consent: Counter[tuple[str, str]] = field(default_factory=Counter)
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


class Policy:
    """Applies the checks for one tick. Everything a check needs is loaded in bulk, one query
    per rule and check (the rule's candidates sit in a temp table), never one per user."""

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
        self.coupon_channel = next((n for n, c in self.project.config.channels.items()
                                    if c.kind == "wechat_coupon"), "")
        # per rule, filled by load():
        self.rule_counts: dict[str, int] = {}
        self.cap_counts: dict[int, dict[str, int]] = {}
        self.consent: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        self.absent: dict[str, set[str]] = {}
        self.consent_ready = False

    def load(self, rule: Rule, users: Sequence[str]) -> None:
        ledger.load_candidates(self.conn, users)
        self.rule_counts = ledger.bulk_rule_fires(
            self.conn, rule.id, self.T - rule.limits.per // US) if rule.limits else {}
        self.cap_counts = {}
        if rule.marketing:
            for i, cap in enumerate(self.project.config.policy.caps):
                if cap.category is None or cap.category == rule.category:
                    self.cap_counts[i] = ledger.bulk_caps(self.conn, self.T - cap.per // US,
                                                          cap.category, cap.channel)
        self.consent = {}
        self.absent = {}
        type_id = self.snap.store.type_ids.get("subscribe_authorized")
        for a in rule.all_actions():
            if not isinstance(a, MessageAction):
                continue
            few = len(users) <= FEW_CANDIDATES
            if a.template and not few and not self.consent_ready:
                ledger.materialise_consent(self.conn, type_id, self.T)
                self.consent_ready = True
            if a.template and a.template not in self.consent:
                self.consent[a.template] = ledger.bulk_consent(self.conn, type_id, a.template,
                                                               self.T, few=few)
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

    # -- checks ----------------------------------------------------------------------------
    def channels(self, rule: Rule, actions: Sequence[Action], user_id: str
                 ) -> tuple[tuple[str, ...], str | None]:
        """The channel each step will use (consent and fallback resolved), or a reason."""
        out: list[str] = []
        for a in actions:
            if isinstance(a, MessageAction):
                chosen = self.message_channel(a, user_id)
                if chosen is None:
                    return (), "no_consent"
                out.append(chosen)
            elif isinstance(a, CouponAction):
                stock = self.project.coupons.get(a.stock)
                out.append(self.coupon_channel if stock is not None and stock.wechat_stock_id
                           else "")
            elif a.kind == "webhook":
                out.append(getattr(a, "channel", "webhook"))
            else:
                out.append("")
        return tuple(out), None

    def message_channel(self, a: MessageAction, user_id: str) -> str | None:
        for name in (a.channel, *a.fallback):
            ch = self.project.config.channels.get(name)
            if ch is None:
                continue
            if user_id in self.absent.get(name, ()):
                continue  # no openid / phone / WeCom id to send to
            if ch.kind != "wechat_subscribe":
                return name
            if a.template and self.consent_left(user_id, a.template) > 0:
                return name
        return None

    def consent_left(self, user_id: str, template: str) -> int:
        tpl = self.project.templates.get(template)
        granted, used = self.consent.get(template, ({}, {}))
        g = granted.get(user_id, 0)
        if tpl is not None and tpl.kind == "long_term":
            return 1 if g else 0
        return g - used.get(user_id, 0) - self.usage.consent[(user_id, template)]

    def capped(self, rule: Rule, user_id: str, channels: Sequence[str]) -> str | None:
        if rule.limits is not None:
            n = self.rule_counts.get(user_id, 0)
            if n + self.usage.rule[(rule.id, user_id)] >= rule.limits.max:
                return "capped_rule"
        if not rule.marketing:
            return None
        for i, counts in self.cap_counts.items():
            cap = self.project.config.policy.caps[i]
            if cap.channel is not None and cap.channel not in channels:
                continue
            if counts.get(user_id, 0) + self.usage.caps[(user_id, i)] >= cap.max:
                return "capped_global"
        return None

    def budget(self, actions: Sequence[Action]) -> str | None:
        for a in actions:
            if not isinstance(a, CouponAction):
                continue
            stock: CouponStock | None = self.project.coupons.get(a.stock)
            if stock is None:
                continue
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
        candidates = [d.user_id for d in decisions if d.outcome == "fire"]
        if not candidates:
            return list(decisions)
        self.load(rule, candidates)
        out = []
        quiet = self.project.config.policy.quiet_hours
        now = from_micros(self.T, self.project.config.tz)
        until = quiet_until(now, quiet.start, quiet.end) if quiet and rule.marketing else None
        for d in decisions:
            if d.outcome != "fire":
                out.append(d)
                continue
            actions = actions_for(rule, d.variant)
            reason = None
            if rule.marketing and d.user_id in self.optout:
                reason = "opted_out"
            channels, no_consent = self.channels(rule, actions, d.user_id)
            reason = reason or self.capped(rule, d.user_id, channels)
            reason = reason or no_consent or self.budget(actions)
            if reason:
                out.append(replace(d, outcome="suppressed", reason=reason))
                continue
            self.take(rule, d.user_id, actions, channels)
            if until is not None:
                out.append(replace(d, outcome="deferred", channels=channels,
                                   deferred_until=to_micros(until)))
            else:
                out.append(replace(d, channels=channels))
        return out

    def take(self, rule: Rule, user_id: str, actions: Sequence[Action],
             channels: Sequence[str]) -> None:
        self.usage.rule[(rule.id, user_id)] += 1
        if rule.marketing:
            for i, cap in enumerate(self.project.config.policy.caps):
                if cap.category is not None and cap.category != rule.category:
                    continue
                if cap.channel is not None and cap.channel not in channels:
                    continue
                self.usage.caps[(user_id, i)] += 1
        for a, ch in zip(actions, channels):
            if isinstance(a, MessageAction) and a.template:
                cfg = self.project.config.channels.get(ch)
                if cfg is not None and cfg.kind == "wechat_subscribe":
                    self.usage.consent[(user_id, a.template)] += 1
            if isinstance(a, CouponAction) and a.stock in self.project.coupons:
                self.usage.coupons[a.stock] += 1
                self.usage.coupon_fen[a.stock] += self.project.coupons[a.stock].value_fen
