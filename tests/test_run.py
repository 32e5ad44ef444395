"""`run --once` and `deliver`: commit semantics, policy across ticks, outbox states.

Channels here are in-process recorders behind the real Channel interface (the HTTP channels
have their own contract tests against the fake WeChat server).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from store_helpers import load_rows, make_rule_project

from engine.channels.base import FAILED, RETRY, SENT, UNKNOWN, SendRequest, SendResult
from engine.outbox import deliver
from engine.resources import example_project
from engine.run import run_once
from engine.timeutil import to_micros

TZ = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 11, 20, 10, 0, tzinfo=TZ)


@dataclass
class Recorder:
    name: str
    kind: str
    idempotent: bool = False
    script: list[SendResult] = field(default_factory=list)  # results to return, in order
    sent: list[SendRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, request: SendRequest) -> SendResult:
        with self.lock:
            self.sent.append(request)
            if self.script:
                return self.script.pop(0)
        return SendResult(SENT, "0", "", f"p-{request.item_id}")

    def close(self) -> None:
        pass


RULE = """
id: winback
trigger: {schedule: "0 10 * * *"}
audience: days_since(last(order_paid)) >= 7
actions:
  - coupon: {stock: WINBACK10}
  - message:
      channel: wechat_subscribe
      fallback: [sms]
      template: coupon_arrival
      page: pages/coupon/detail?id={{ coupon.id }}
      data: {thing1: "{{ coupon.name }}", amount2: "{{ coupon.value }}元", date3: "{{ coupon.expires_at | date }}", thing4: 期待你回来}
      text: "{{ coupon.name }}已到账。回T退订"
limits: {max: 1, per: 30d}
"""


def setup(tmp: Path, users: list[dict[str, Any]], events: list[tuple[Any, ...]],
          rule: str = RULE, coupons_patch: str = "") -> tuple[Any, Any, dict[str, Recorder]]:
    make_rule_project(tmp, {"r": rule}, coupons_patch)
    proj, store = load_rows(tmp, users, events)
    channels = {"wechat_subscribe": Recorder("wechat_subscribe", "wechat_subscribe"),
                "sms": Recorder("sms", "sms"),
                "wechat_coupon": Recorder("wechat_coupon", "wechat_coupon", idempotent=True),
                "console": Recorder("console", "console")}
    return proj, store, channels


def lapsed(uid: str, consent: int = 1) -> list[tuple[Any, ...]]:
    ev: list[tuple[Any, ...]] = [(uid, "order_paid", T - timedelta(days=9), 8000, None)]
    ev += [(uid, "subscribe_authorized", T - timedelta(days=9, minutes=-i), None,
            {"template": "coupon_arrival"}) for i in range(consent)]
    return ev


def states(store: Any) -> dict[str, str]:
    return dict(store.conn.execute("SELECT item_id, state FROM outbox ORDER BY item_id"))


def test_run_commits_and_delivers_in_step_order(tmp_path: Path) -> None:
    proj, store, ch = setup(tmp_path, [{"user_id": "a", "openid": "oA", "phone": "13800000000"}],
                            lapsed("a"))
    with store:
        report = run_once(proj, store, T, ch)
        assert report.due == ["winback"] and report.commit is not None
        assert report.commit.new_fires == 1 and report.commit.outbox_items == 2
        assert [r.kind for r in ch["wechat_coupon"].sent] == ["coupon"]
        (msg,) = ch["wechat_subscribe"].sent
        coupon_id = store.conn.execute("SELECT coupon_id FROM issued_coupons").fetchone()[0]
        assert msg.recipient == "oA"
        assert msg.payload["page"] == f"pages/coupon/detail?id={coupon_id}"
        assert msg.payload["data"]["thing1"] == "回归专享10元券"
        assert msg.payload["data"]["amount2"] == "10.00元"
        assert msg.payload["data"]["date3"] == "2026-11-27"
        assert set(states(store).values()) == {"sent"}
        # the same tick again: a no-op, nothing is sent twice
        again = run_once(proj, store, T, ch)
        assert again.due == [] and len(ch["wechat_subscribe"].sent) == 1
        # the next day: the user is already inside the audience (on_enter)
        nxt = run_once(proj, store, T + timedelta(days=1), ch)
        assert nxt.commit is not None
        assert nxt.commit.plan.rules[0].suppressed() == {"already_entered": 1}


def test_consent_is_a_quota_and_fallback_takes_over(tmp_path: Path) -> None:
    rule = RULE.replace("fire: on_enter", "").replace("limits: {max: 1, per: 30d}",
                                                       "limits: {max: 5, per: 30d}\nfire: every_time")
    proj, store, ch = setup(tmp_path, [{"user_id": "a", "openid": "oA", "phone": "13800000000"}],
                            lapsed("a", consent=1), rule=rule)
    with store:
        run_once(proj, store, T, ch)
        run_once(proj, store, T + timedelta(days=1), ch)
    assert len(ch["wechat_subscribe"].sent) == 1  # one accept, one subscription message
    (sms,) = ch["sms"].sent  # then the fallback channel
    assert sms.payload["text"] == "回归专享10元券已到账。回T退订"


def test_global_caps_and_quiet_hours(tmp_path: Path) -> None:
    rule = RULE.replace('"0 10 * * *"', '"0 * * * *"').replace(
        "limits: {max: 1, per: 30d}", "limits: {max: 9, per: 1d}\nfire: every_time")
    proj, store, ch = setup(tmp_path, [{"user_id": "a", "openid": "oA", "phone": "1"}],
                            lapsed("a", consent=5), rule=rule)
    with store:
        plans = [run_once(proj, store, T + timedelta(hours=h), ch) for h in range(3)]
        outcomes = [p.commit.plan.rules[0].as_json() for p in plans if p.commit]
        # engine.yaml: at most 2 marketing sends a week
        assert [o["fire"] for o in outcomes] == [1, 1, 0]
        assert outcomes[2]["suppressed"] == {"capped_global": 1}
    (tmp_path / "q").mkdir()
    proj, store, ch = setup(tmp_path / "q", [{"user_id": "b", "openid": "oB"}], lapsed("b"),
                            rule=RULE.replace('"0 10 * * *"', '"0 22 * * *"'))
    night = T.replace(hour=22, minute=0)
    with store:
        rep = run_once(proj, store, night, ch)
        assert rep.commit is not None
        assert rep.commit.plan.rules[0].count("deferred") == 1
        assert ch["wechat_subscribe"].sent == []  # nothing at night
        deliver(proj, store, ch, night.replace(hour=23))
        assert ch["wechat_subscribe"].sent == []
        deliver(proj, store, ch, (night + timedelta(days=1)).replace(hour=8, minute=30))
        assert len(ch["wechat_subscribe"].sent) == 1  # deferred, never dropped


def test_retry_backoff_dead_letter_and_unknown(tmp_path: Path) -> None:
    proj, store, ch = setup(tmp_path, [{"user_id": "a", "openid": "oA"}], lapsed("a"))
    ch["wechat_subscribe"].script = [SendResult(RETRY, "-1", "busy")] * 5
    with store:
        run_once(proj, store, T, ch)
        msg_item = [i for i, s in states(store).items() if i.endswith("_1")][0]
        assert states(store)[msg_item] == "pending"
        at = T
        for _ in range(6):
            at += timedelta(hours=2)
            deliver(proj, store, ch, at)
        assert states(store)[msg_item] == "dead"
        assert len(ch["wechat_subscribe"].sent) == 5  # max_attempts, then a dead letter
    (tmp_path / "u").mkdir()
    proj, store, ch = setup(tmp_path / "u", [{"user_id": "b", "openid": "oB"}], lapsed("b"))
    ch["wechat_subscribe"].script = [SendResult(UNKNOWN, "timeout", "read timeout")]
    with store:
        run_once(proj, store, T, ch)
        for h in range(1, 4):
            deliver(proj, store, ch, T + timedelta(hours=h))
        assert "unknown" in states(store).values()
        assert len(ch["wechat_subscribe"].sent) == 1  # at most once: never re-sent


def test_43101_zeroes_the_consent_ledger(tmp_path: Path) -> None:
    rule = RULE.replace("limits: {max: 1, per: 30d}", "limits: {max: 5, per: 30d}\n"
                        "fire: every_time")
    proj, store, ch = setup(tmp_path, [{"user_id": "a", "openid": "oA"}], lapsed("a", consent=3),
                            rule=rule)
    ch["wechat_subscribe"].script = [SendResult(FAILED, "43101", "no quota",
                                                consent_exhausted=True)]
    from engine.plan import plan
    with store:
        before = plan(proj, store, T, ["winback"])
        assert before.rules[0].count("fire") == 1
        run_once(proj, store, T, ch)
        later = plan(proj, store, T + timedelta(days=1), ["winback"])
    # the two accepts left were wiped by 43101, and the user has no phone for the sms fallback
    assert later.rules[0].suppressed() == {"no_consent": 1}


def test_crash_recovery_is_at_most_once_for_messages(tmp_path: Path) -> None:
    proj, store, ch = setup(tmp_path, [{"user_id": "a", "openid": "oA"}], lapsed("a"))
    ch["wechat_subscribe"].script = [SendResult(RETRY, "-1", "busy")]
    with store:
        run_once(proj, store, T, ch)
        # simulate a crash in the middle of a send: the item was marked `sending`
        store.conn.execute("UPDATE outbox SET state = 'sending' WHERE item_id LIKE '%_1'")
        deliver(proj, store, ch, T + timedelta(hours=3))
        assert states(store)[next(i for i in states(store) if i.endswith("_1"))] == "unknown"
        assert len(ch["wechat_subscribe"].sent) == 1


def test_budget_is_never_overspent(tmp_path: Path) -> None:
    coupons = (example_project() / "coupons.yaml").read_text("utf-8").replace(
        "budget: {max_count: 20000}", "budget: {max_count: 2}", 1)
    users = [{"user_id": u, "openid": "o" + u} for u in "abc"]
    events = [e for u in "abc" for e in lapsed(u)]
    proj, store, ch = setup(tmp_path, users, events, coupons_patch=coupons)
    with store:
        rep = run_once(proj, store, T, ch)
        assert rep.commit is not None
        assert rep.commit.plan.rules[0].suppressed() == {"budget_exhausted": 1}
        assert store.conn.execute("SELECT COUNT(*) FROM issued_coupons").fetchone()[0] == 2


@pytest.mark.parametrize("text", ["分享后才能领取", "100%中奖"])
def test_send_time_compliance_guard(tmp_path: Path, text: str) -> None:
    rule = RULE.replace("thing4: 期待你回来", "thing4: \"{{ user.nickname }}\"")
    proj, store, ch = setup(tmp_path, [{"user_id": "a", "openid": "oA", "nickname": text}],
                            lapsed("a"), rule=rule)
    with store:
        run_once(proj, store, T, ch)
        row = store.conn.execute("SELECT state, last_detail FROM outbox WHERE item_id LIKE '%_1'"
                                 ).fetchone()
    assert row[0] == "failed" and "compliance" in row[1]
    assert ch["wechat_subscribe"].sent == []


def test_run_and_deliver_refuse_while_a_daemon_holds_the_database(tmp_path: Path) -> None:
    import os
    import socket

    from engine.lease import LEASE_NAME, LeaseHeld, refuse_if_running
    from engine.store import lease as lease_sql

    proj, store, ch = setup(tmp_path, [{"user_id": "a", "openid": "oA"}], lapsed("a"))
    wall = datetime(2026, 11, 21, 12, 0, tzinfo=TZ)
    with store:
        refuse_if_running(store, wall)  # no daemon: fine
        with store.transaction():
            lease_sql.ensure_lease_table(store.conn)
            lease_sql.claim(store.conn, lease_sql.LeaseRow(
                LEASE_NAME, "daemon-1", os.getpid(), socket.gethostname(),
                to_micros(wall), to_micros(wall - timedelta(seconds=5))))
        with pytest.raises(LeaseHeld, match="a daemon is running"):
            refuse_if_running(store, wall)
        refuse_if_running(store, wall + timedelta(minutes=2))  # stale: the daemon is gone
