"""The bulk commit (fires grouped, the rest derived in SQL) and the chunked delivery pipeline.

Real SQLite files and the real commit and delivery code; channels are in-process recorders
behind the Channel interface (tests/test_run.py has the policy and state-machine tests).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_run import RULE, T, Recorder, lapsed, setup

import engine.outbox
from engine.channels.base import SendRequest, SendResult
from engine.commit import tick
from engine.run import run_once
from engine.store import ledger
from engine.timeutil import to_micros

EVERY_TIME = RULE.replace("fire: on_enter", "").replace(
    "limits: {max: 1, per: 30d}", "limits: {max: 5, per: 30d}\nfire: every_time")


def rows(store: Any, sql: str) -> set[tuple[Any, ...]]:
    return set(store.conn.execute(sql).fetchall())


def expected(result: Any, only: str | None = None) -> dict[str, set[tuple[Any, ...]]]:
    """The rows the commit must have written for the plan's acting decisions (of one user)."""
    out: dict[str, set[tuple[Any, ...]]] = {"outbox": set(), "caps": set(), "consent": set()}
    for rp in result.plan.rules:
        for d in rp.decisions:
            if d.outcome not in ("fire", "deferred") or only not in (None, d.user_id):
                continue
            fid = ledger.fire_id(rp.rule_id, d.user_id, d.occurrence)
            for step, channel in enumerate(d.channels):
                item = ledger.item_id(fid, step)
                out["outbox"].add((item, fid, step, channel, d.user_id, "pending"))
                if channel == "wechat_subscribe":
                    out["consent"].add((d.user_id, "coupon_arrival", item))
            out["caps"] |= {(d.user_id, rp.rule_id, fid, c) for c in d.channels if c}
    return out


def written(store: Any) -> dict[str, set[tuple[Any, ...]]]:
    return {
        "outbox": rows(store, "SELECT item_id, fire_id, step, channel, user_id, state FROM outbox"),
        "caps": rows(store, "SELECT user_id, rule_id, fire_id, channel FROM cap_ledger"),
        "consent": rows(store, "SELECT user_id, template, item_id FROM consent_used")}


def reserved(store: Any) -> dict[str, tuple[int, int]]:
    """Coupons reserved per stock by the committed fires: (count, fen)."""
    return {s: (n, fen) for s, n, fen in store.conn.execute("SELECT * FROM coupon_budget_used")}


def test_a_tick_writes_every_group_and_only_new_fires(tmp_path: Path) -> None:
    """Decisions with different channels (consent, or the sms fallback) form separate groups;
    re-running the tick at the same instant after a new user qualified writes that user's
    rows only (the others are repeated: their idempotency keys exist)."""
    users = [{"user_id": "a", "openid": "oA"}, {"user_id": "b", "openid": "oB", "phone": "1"},
             {"user_id": "d", "openid": "oD"}]
    proj, store, _ = setup(tmp_path, users, lapsed("a") + lapsed("b", consent=0),
                           rule=EVERY_TIME)
    slots = {"winback": to_micros(T)}
    with store:
        first = tick(proj, store, T, ["winback"], slots)
        assert (first.new_fires, first.repeated, first.outbox_items) == (2, 0, 4)
        channels = {d.user_id: d.channels for d in first.plan.rules[0].decisions}
        assert channels["a"][1] == "wechat_subscribe" and channels["b"][1] == "sms"
        want = expected(first)
        assert written(store) == want
        fen = proj.coupons["WINBACK10"].value_fen
        assert reserved(store) == {"WINBACK10": (2, 2 * fen)}
        n_fires = store.conn.execute("SELECT COUNT(*) FROM fires").fetchone()[0]

        # d qualifies later; the same tick again writes d's fire and rows, nothing else
        auth, paid = store.type_ids["subscribe_authorized"], store.type_ids["order_paid"]
        ts = to_micros(T - timedelta(days=9))
        store.insert_events([("ed1", "d", paid, ts, 8000, None),
                             ("ed2", "d", auth, ts + 1, None,
                              json.dumps({"template": "coupon_arrival"}))])
        second = tick(proj, store, T, ["winback"], slots)
        assert (second.new_fires, second.repeated, second.outbox_items) == (1, 2, 2)
        assert store.conn.execute("SELECT COUNT(*) FROM fires").fetchone()[0] == n_fires + 1
        got = written(store)
        new = expected(second, only="d")
        assert all(new.values())
        for table in want:
            assert got[table] == want[table] | new[table], table
        assert reserved(store) == {"WINBACK10": (3, 3 * fen)}

        third = tick(proj, store, T, ["winback"], slots)
        assert (third.new_fires, third.repeated, third.outbox_items) == (0, 3, 0)
        assert written(store) == got
        assert reserved(store) == {"WINBACK10": (3, 3 * fen)}


@dataclass
class ThreadRecorder(Recorder):
    threads: dict[str, str] = field(default_factory=dict)  # item id -> sending thread

    def send(self, request: SendRequest) -> SendResult:
        self.threads[request.item_id] = threading.current_thread().name
        return super().send(request)


NOTICE = """
id: {id}
category: transactional
trigger: {{schedule: "0 10 * * *"}}
actions:
  - message:
      channel: wechat_subscribe
      template: cart_reminder
      data: {{thing1: "{{{{ user.nickname }}}}", thing2: 库存有限请尽快下单}}
"""


def test_delivery_in_chunks_sends_each_item_once_and_a_users_items_in_one_worker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.outbox, "CHUNK", 2)
    monkeypatch.setattr(engine.outbox, "MAX_IN_FLIGHT", 1)
    monkeypatch.setattr(engine.outbox, "RECORD_BATCH", 3)
    users = [{"user_id": f"u{i}", "openid": f"o{i}", "nickname": f"用户{i}"} for i in range(9)]
    users.append({"user_id": "bad", "openid": "oBad", "nickname": "分享后才能领取"})
    consent = [(u["user_id"], "subscribe_authorized", T - timedelta(days=1, minutes=k), None,
                {"template": "cart_reminder"}) for u in users for k in range(2)]
    from store_helpers import load_rows, make_rule_project

    make_rule_project(tmp_path, {"n1": NOTICE.format(id="n1"), "n2": NOTICE.format(id="n2")})
    proj, store = load_rows(tmp_path, users, consent)
    ch = ThreadRecorder("wechat_subscribe", "wechat_subscribe")
    with store:
        report = run_once(proj, store, T, {"wechat_subscribe": ch})
        assert report.commit is not None and report.commit.outbox_items == 20
        states = dict(store.conn.execute("SELECT item_id, state FROM outbox"))
        details = dict(store.conn.execute("SELECT item_id, last_detail FROM outbox "
                                          "WHERE state = 'failed'"))
        providers = dict(store.conn.execute("SELECT item_id, provider_id FROM outbox "
                                            "WHERE state = 'sent'"))
    sent_ids = [r.item_id for r in ch.sent]
    assert len(sent_ids) == len(set(sent_ids)) == 18  # each once; not the bad user's two
    assert {r.user_id for r in ch.sent} == {f"u{i}" for i in range(9)}
    assert sorted(states.values()) == ["failed"] * 2 + ["sent"] * 18
    assert all("compliance" in d for d in details.values()) and len(details) == 2
    assert providers == {i: f"p-{i}" for i in sent_ids}
    by_user: dict[str, set[str]] = {}
    for r in ch.sent:
        by_user.setdefault(r.user_id, set()).add(ch.threads[r.item_id])
    assert all(len(names) == 1 for names in by_user.values())  # a user's sends: one worker
    assert {r.payload["data"]["thing1"] for r in ch.sent} == {f"用户{i}" for i in range(9)}
