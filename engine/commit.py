"""Writing a plan: fires, the cap ledger, consent, coupon reservations, the outbox and the
tick, all in one transaction.

The plan is computed inside the same `BEGIN IMMEDIATE` transaction that writes it, so caps,
consent quotas and budgets checked at plan time are re-checked against exactly the state being
written. Committing the same fire twice is a no-op: the idempotency key (rule id, user id,
occurrence) is the fire's primary key, and nothing else is written for a fire that exists.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

import orjson

from .plan import Plan, plan
from .policy import actions_for
from .project import Project
from .rules.model import CouponAction, MessageAction
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
    specs: dict[int, str] = {}  # id(action) -> its JSON, serialised once per tick

    def spec_json(action: Any) -> str:
        key = id(action)
        if key not in specs:
            specs[key] = orjson.dumps(action_spec(action)).decode()
        return specs[key]

    with store.transaction():
        ledger.ensure_ledger(conn)
        result = plan(project, store, at, ids, slots=slots) if ids else Plan(at, ())
        fires: list[ledger.FireRecord] = []
        for rp in result.rules:
            rule = project.rule(rp.rule_id)
            assert rule is not None
            for d in rp.decisions:
                fires.append(ledger.FireRecord(
                    ledger.fire_id(rule.id, d.user_id, d.occurrence), rule.id, d.user_id,
                    d.occurrence, d.outcome, d.reason, d.variant, d.event_id, T, d.eval_at,
                    rule.content_hash, git_commit))
        existing = ledger.existing_fires(conn, [f.fire_id for f in fires])
        ledger.insert_fires(conn, [f for f in fires if f.fire_id not in existing])
        outbox: list[tuple[Any, ...]] = []
        consent: list[tuple[str, str, int, str]] = []
        reserved: list[tuple[str, str, int]] = []
        caps: list[tuple[str, int, str, str, str, str]] = []
        new = 0
        k = 0
        for rp in result.rules:
            rule = project.rule(rp.rule_id)
            assert rule is not None
            for d in rp.decisions:
                f = fires[k]
                k += 1
                if f.fire_id in existing or d.outcome not in ("fire", "deferred"):
                    continue
                new += 1
                actions = actions_for(rule, d.variant)
                channels = d.channels or tuple("" for _ in actions)
                due = d.deferred_until if d.deferred_until is not None else T
                for step, (action, channel) in enumerate(zip(actions, channels)):
                    item = ledger.item_id(f.fire_id, step)
                    outbox.append((item, f.fire_id, step, action.kind, channel, d.user_id,
                                   spec_json(action), due, due, T))
                    if isinstance(action, MessageAction) and action.template:
                        cfg = project.config.channels.get(channel)
                        tpl = project.templates.get(action.template)
                        if cfg is not None and cfg.kind == "wechat_subscribe" and tpl is not None \
                                and tpl.kind == "one_time":
                            consent.append((d.user_id, action.template, T, item))
                    if isinstance(action, CouponAction) and action.stock in project.coupons:
                        reserved.append((item, action.stock,
                                         project.coupons[action.stock].value_fen))
                if rule.marketing:
                    used = sorted({c for c in channels if c}) or [""]
                    caps.extend((d.user_id, T, rule.id, rule.category, c, f.fire_id) for c in used)
            ledger.set_tick(conn, rule.id, T, rule.content_hash)
            if rp.entered or rp.left:
                ledger.set_members(conn, rule.id, rp.left, rp.entered, T)
        ledger.insert_outbox(conn, outbox)
        ledger.insert_consent_uses(conn, consent)
        ledger.reserve_coupons(conn, reserved)
        ledger.insert_caps(conn, caps)
        return CommitResult(result, new, len(existing), len(outbox))
