"""Writing a plan: fires, the cap ledger, consent, coupon reservations, the outbox and the
tick, all in one transaction.

The plan is computed inside the same `BEGIN IMMEDIATE` transaction that writes it, so caps,
consent quotas and budgets checked at plan time are re-checked against exactly the state being
written. Committing the same fire twice is a no-op: the idempotency key (rule id, user id,
occurrence) is the fire's primary key, and nothing else is written for a fire that exists.

The writes are bulk: a rule's decisions are grouped by what they do (variant, channel per
step, due time); each group's fires are inserted with one statement (INSERT OR IGNORE over a
JSON array, so fires committed before are skipped without a separate look-up), and the outbox
items, consent uses, coupon reservations and cap rows of the group's new fires are derived from
them with one INSERT ... SELECT per action step.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable

import orjson

from .plan import Decision, Plan, plan
from .policy import actions_for
from .project import Project
from .rules.model import CouponAction, MessageAction, Rule
from .store import Store, ledger
from .timeutil import to_micros


@dataclass(frozen=True)
class CommitResult:
    plan: Plan
    new_fires: int
    repeated: int  # fires whose idempotency key was already committed
    outbox_items: int


def action_spec(action: Any) -> dict[str, Any]:
    spec = dataclasses.asdict(action)
    if "data" in spec and spec["data"] is not None:
        spec["data"] = dict(spec["data"])
    return spec




def tick(project: Project, store: Store, at: datetime, rule_ids: Iterable[str],
         slots: dict[str, int], git_commit: str = "") -> CommitResult:
    """Plan the given rules at `at` and commit the result atomically (bulk writes)."""
    conn = store.conn
    T = to_micros(at)
    ids = list(rule_ids)
    specs: dict[int, int] = {}  # id(action) -> the id of its JSON, looked up once per tick

    def spec_of(action: Any) -> int:
        key = id(action)
        if key not in specs:
            specs[key] = ledger.spec_id(conn, orjson.dumps(action_spec(action)).decode())
        return specs[key]

    with store.transaction():
        ledger.ensure_ledger(conn)
        result = plan(project, store, at, ids, slots=slots) if ids else Plan(at, ())
        new = repeated = items = 0
        for rp in result.rules:
            rule = project.rule(rp.rule_id)
            assert rule is not None
            for key, rows in _groups(rule, rp.decisions, T).items():
                span = ledger.insert_fires(conn, rule.id, T, rule.content_hash, git_commit, rows)
                repeated += len(rows) - span.count
                if key is not None and span.count:
                    new += span.count
                    items += _write_steps(project, store, rule, key, span, T, spec_of)
            ledger.set_tick(conn, rule.id, T, rule.content_hash)
            if rp.entered or rp.left:
                ledger.set_members(conn, rule.id, rp.left, rp.entered, T)
        return CommitResult(result, new, repeated, items)


def _groups(rule: Rule, decisions: Iterable[Decision], T: int) -> dict[Any, list[tuple[Any, ...]]]:
    """The fire rows of a rule's decisions (as `ledger.insert_fires` takes them), grouped by
    what the fires do (one pass)."""
    rid, fire_id = rule.id, ledger.fire_id
    groups: dict[Any, list[tuple[Any, ...]]] = {}
    for d in decisions:
        acts = d.outcome == "fire" or d.outcome == "deferred"
        key = (d.variant, d.channels, T if d.deferred_until is None else d.deferred_until) \
            if acts else None
        rows = groups.get(key)
        if rows is None:
            rows = groups[key] = []
        rows.append((fire_id(rid, d.user_id, d.occurrence), d.user_id, d.occurrence, d.outcome,
                     d.reason, d.variant, d.event_id, d.eval_at))
    return groups


def _write_steps(project: Project, store: Store, rule: Rule, key: Any, span: ledger.FireSpan,
                 T: int, spec_of: Callable[[Any], int]) -> int:
    """The outbox items, consent uses, coupon reservations and cap rows of a group's new fires."""
    conn = store.conn
    variant, channels, due = key
    actions = actions_for(rule, variant)
    channels = channels or tuple("" for _ in actions)
    items = 0
    for step, (action, channel) in enumerate(zip(actions, channels)):
        items += ledger.outbox_from_fires(conn, span, step, action.kind, channel,
                                          spec_of(action), due, T)
        if isinstance(action, MessageAction) and action.template:
            cfg = project.config.channels.get(channel)
            tpl = project.templates.get(action.template)
            if cfg is not None and cfg.kind == "wechat_subscribe" and tpl is not None \
                    and tpl.kind == "one_time":
                ledger.consent_from_fires(conn, span, step, action.template, T)
        if isinstance(action, CouponAction) and action.stock in project.coupons:
            ledger.reserve_from_fires(conn, span, action.stock,
                                      project.coupons[action.stock].value_fen)
    if rule.marketing:
        for c in sorted({c for c in channels if c}) or [""]:
            ledger.caps_from_fires(conn, span, T, rule.category, c)
    return items
