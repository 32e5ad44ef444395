"""`plan` and `explain`: trigger semantics with timelines, on_enter vs every_time, experiments.

Each test builds a real project (the example config, its own rule files) and a real SQLite
file, then plans at chosen instants around the boundaries the semantics define.
"""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.experiments import assign
from store_helpers import load_rows, make_rule_project
from engine.explain import explain
from engine.plan import plan
from engine.rules.model import Experiment, Variant
from engine.store.queries import ensure_state_tables
from engine.timeutil import to_micros
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 11, 20, 10, 0, tzinfo=TZ)
MIN = timedelta(minutes=1)
REPO = Path(__file__).resolve().parent.parent


def make_project(tmp: Path, rules: dict[str, str]) -> Path:
    return make_rule_project(tmp, rules)


def load(tmp: Path, users: list[dict[str, Any]], events: list[tuple[Any, ...]]) -> Any:
    return load_rows(tmp, users, events)


def by_user(result: Any, rule_id: str) -> dict[str, tuple[str, str | None]]:
    rp = next(r for r in result.rules if r.rule_id == rule_id)
    return {d.user_id: (d.outcome, d.reason) for d in rp.decisions}


WINBACK = """
id: winback
trigger: {schedule: "0 10 * * *"}
audience: days_since(last(order_paid)) >= 7
actions: [{tag: {add: lapsed}}]
limits: {max: 1, per: 30d}
"""


def test_schedule_on_enter_fires_once_until_the_user_leaves(tmp_path: Path) -> None:
    make_project(tmp_path, {"winback": WINBACK})
    proj, store = load(tmp_path, [{"user_id": "a"}, {"user_id": "b"}, {"user_id": "c"}], [
        ("a", "order_paid", T - timedelta(days=8), 5000, None),
        ("b", "order_paid", T - timedelta(days=7), 5000, None),   # exactly 7 days: matches
        ("c", "order_paid", T - timedelta(days=7) + MIN, 5000, None),  # 6 days 23:59: not yet
    ])
    with store:
        first = plan(proj, store, T)
        assert by_user(first, "winback") == {"a": ("fire", None), "b": ("fire", None)}
        rp = first.rules[0]
        assert rp.entered == ("a", "b") and rp.left == ()
        # the commit records membership; a later tick sees a and b as already entered
        ensure_state_tables(store.conn)
        store.conn.executemany("INSERT INTO rule_members VALUES ('winback', ?, ?)",
                               [("a", to_micros(T)), ("b", to_micros(T))])
        second = plan(proj, store, T + timedelta(days=1))
        assert by_user(second, "winback") == {"a": ("suppressed", "already_entered"),
                                              "b": ("suppressed", "already_entered"),
                                              "c": ("fire", None)}
        # b orders again and so leaves the audience: re-armed at commit
        store.conn.execute("INSERT INTO events VALUES ('x1', 'b', ?, ?, 100, NULL)",
                           (store.type_ids["order_paid"], to_micros(T + timedelta(hours=20))))
        third = plan(proj, store, T + timedelta(days=1))
        assert third.rules[0].left == ("b",)


def test_every_time_fires_at_every_tick(tmp_path: Path) -> None:
    make_project(tmp_path, {"w": WINBACK.replace("id: winback", "id: winback\nfire: every_time")})
    proj, store = load(tmp_path, [{"user_id": "a"}],
                       [("a", "order_paid", T - timedelta(days=9), 100, None)])
    with store:
        ensure_state_tables(store.conn)
        store.conn.execute("INSERT INTO rule_members VALUES ('winback', 'a', 0)")
        assert by_user(plan(proj, store, T), "winback") == {"a": ("fire", None)}


def test_visibility_and_window_boundaries(tmp_path: Path) -> None:
    make_project(tmp_path, {"r": """
id: recent-buyer
trigger: {every: 1h}
audience: count(order_paid, 30d) == 1 and count(cart_add) == 0
actions: [{tag: {add: recent}}]
limits: {max: 1, per: 30d}
"""})
    proj, store = load(tmp_path, [{"user_id": "a"}, {"user_id": "b"}], [
        ("a", "order_paid", T - timedelta(days=30), 6000, None),  # exactly at T - W
        ("b", "order_paid", T - timedelta(days=1), 6000, None),
        ("b", "cart_add", T, None, {"item_id": "i"}),  # exactly at T: not visible at T
    ])
    with store:
        assert by_user(plan(proj, store, T), "recent-buyer") == {"a": ("fire", None),
                                                                "b": ("fire", None)}
        later = T + timedelta(microseconds=1)  # a's order leaves the window, b's cart appears
        assert by_user(plan(proj, store, later), "recent-buyer") == {}


CART = """
id: cart
trigger: {event: cart_add, wait: 2h, where: 'item_id != "gift"'}
audience: count(order_paid, 2h) == 0
actions: [{tag: {add: cart}}]
limits: {max: 1, per: 1d}
"""


def test_event_with_wait_is_evaluated_when_the_wait_ends(tmp_path: Path) -> None:
    make_project(tmp_path, {"cart": CART})
    added = T - timedelta(hours=2, seconds=30)  # its wait ended 30 s before T
    proj, store = load(tmp_path, [{"user_id": u} for u in "abcd"], [
        ("a", "cart_add", added, None, {"item_id": "i1"}),
        ("b", "cart_add", added, None, {"item_id": "i1"}),
        ("b", "order_paid", added + timedelta(minutes=30), 100, None),  # paid within the wait
        ("c", "cart_add", added, None, {"item_id": "gift"}),  # filtered by where
        ("d", "cart_add", T - timedelta(hours=1), None, {"item_id": "i1"}),  # not due yet
        # a's order after the wait ended must not matter: evaluated at added + 2h
        ("a", "order_paid", added + timedelta(hours=2, seconds=10), 100, None),
        ("a", "order_paid", added - MIN, 100, None),  # and neither does one before the add
    ])
    with store:
        result = plan(proj, store, T)
    assert by_user(result, "cart") == {"a": ("fire", None)}
    assert result.rules[0].decisions[0].occurrence == "event:e0"


def test_event_without_wait_sees_the_triggering_event(tmp_path: Path) -> None:
    make_project(tmp_path, {"streak": """
id: streak
trigger: {event: checkin}
audience: streak(checkin) >= 3
actions: [{points: {add: 10}}]
limits: {max: 1, per: 7d}
"""})
    days = [T - timedelta(days=2), T - timedelta(days=1), T - MIN]
    proj, store = load(tmp_path, [{"user_id": "a"}], [("a", "checkin", d, None, None)
                                                      for d in days])
    with store:
        result = plan(proj, store, T)
    assert by_user(result, "streak") == {"a": ("fire", None)}  # the third checkin counts


def test_date_trigger_before_and_annual(tmp_path: Path) -> None:
    make_project(tmp_path, {"points": """
id: points
trigger: {date: user.points_expire_at, before: 7d}
audience: user.points > 0
actions: [{tag: {add: expiring}}]
limits: {max: 1, per: 30d}
""", "birthday": """
id: birthday
trigger: {date: user.birthday, annual: true}
audience: user.tier == "gold"
actions: [{tag: {add: birthday}}]
limits: {max: 1, per: 300d}
"""})
    midnight = datetime(2026, 11, 20, tzinfo=TZ)
    users = [
        {"user_id": "a", "points": 10, "points_expire_at": to_micros(T + timedelta(days=7) - MIN)},
        {"user_id": "b", "points": 10, "points_expire_at": to_micros(T + timedelta(days=7) + MIN)},
        {"user_id": "c", "points": 0, "points_expire_at": to_micros(T + timedelta(days=7) - MIN)},
        {"user_id": "d", "tier": "gold", "birthday": "1990-11-20"},
        {"user_id": "e", "tier": "gold", "birthday": "1990-11-21"},
        {"user_id": "f", "tier": "silver", "birthday": "1990-11-20"},
    ]
    proj, store = load(tmp_path, users, [])
    with store:
        assert by_user(plan(proj, store, T, ["points"]), "points") == {"a": ("fire", None)}
        at = midnight + MIN  # the grace window (5 min) covers midnight
        result = plan(proj, store, at, ["birthday"])
        # 00:01 is inside quiet hours (21:30-08:30): deferred to 08:30, never dropped
        assert by_user(result, "birthday") == {"d": ("deferred", None)}
        assert result.rules[0].decisions[0].deferred_until == to_micros(
            midnight.replace(hour=8, minute=30))
        assert by_user(plan(proj, store, midnight + timedelta(hours=1), ["birthday"]),
                       "birthday") == {}


def test_holdout_and_variants_are_stable_hashes() -> None:
    exp = Experiment(0.10, (Variant("a", 50), Variant("b", 50)))
    picks = [assign("rule-x", f"u{i}", exp) for i in range(4000)]
    held = sum(p.holdout for p in picks)
    assert 300 < held < 500  # 10% of 4000, within sampling noise
    counts = {v: sum(p.variant == v for p in picks) for v in ("a", "b")}
    assert abs(counts["a"] - counts["b"]) < 300
    # the same rule id and weights give the same assignment whatever else changes
    again = Experiment(0.10, (Variant("a", 50, None), Variant("b", 50, None)))
    assert [assign("rule-x", f"u{i}", again) for i in range(200)] == picks[:200]
    # another rule id shuffles users independently
    other = [assign("rule-y", f"u{i}", exp) for i in range(200)]
    assert other != picks[:200]


def test_plan_json_and_explain_from_the_command_line(tmp_path: Path) -> None:
    make_project(tmp_path, {"winback": WINBACK})
    proj, store = load(tmp_path, [{"user_id": "a"}],
                       [("a", "order_paid", T - timedelta(days=9), 5000, None)])
    store.close()
    run = [sys.executable, "-c", "import cli; cli.main()"]
    out = subprocess.run(run + ["plan", "--at", T.isoformat(), "--format", "json", "--users"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data == {"at": T.isoformat(), "rules": [
        {"id": "winback", "matched": 1, "fire": 1, "deferred": 0, "suppressed": {},
         "users": {"matched": ["a"], "fire": ["a"]}}]}
    out = subprocess.run(run + ["explain", "winback", "a", "--at", T.isoformat()],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "days_since(last(order_paid)) = 9" in out.stdout
    assert "days_since(last(order_paid)) >= 7  true" in out.stdout
    assert "decision: fire" in out.stdout
    out = subprocess.run(run + ["explain", "winback", "nobody", "--at", T.isoformat()],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 2 and "no user `nobody`" in out.stderr
    assert "Traceback" not in out.stderr


def test_explain_reports_each_sub_expression(tmp_path: Path) -> None:
    make_project(tmp_path, {"winback": WINBACK})
    proj, store = load(tmp_path, [{"user_id": "a"}], [])
    with store:
        exp = explain(proj, store, "winback", "a", T)
    steps = dict((s.text, s.value) for _, steps in exp.sections for s in steps)
    assert steps["last(order_paid)"] == "null"
    assert steps["days_since(last(order_paid)) >= 7"] == "unknown"
    assert (exp.decision, exp.reason) == ("not matched", "not_in_audience")


@pytest.mark.parametrize("bad", ["nope"])
def test_plan_unknown_rule_is_a_clear_error(tmp_path: Path, bad: str) -> None:
    make_project(tmp_path, {"winback": WINBACK})
    proj, store = load(tmp_path, [{"user_id": "a"}], [])
    from engine.errors import CannotRun
    with store, pytest.raises(CannotRun, match="no rule `nope`"):
        plan(proj, store, T, [bad])


def test_facts_loaded_without_rfm_are_reloaded_when_a_rule_needs_rfm(tmp_path: Path) -> None:
    """One snapshot serves several rules: a user's facts first loaded for a rule without RFM
    (an event `where`) must not be reused, RFM-less, by a later rule that reads rfm.*."""
    from engine.plan import Snapshot
    from engine.timeutil import to_micros

    make_rule_project(tmp_path, {"r": "id: r\ntrigger: {every: 1h}\nactions:\n  - tag: {add: x}\n"})
    at = datetime(2026, 11, 20, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    proj, store = load_rows(tmp_path, [{"user_id": "u1"}, {"user_id": "u2"}],
                            [("u1", "order_paid", at - timedelta(days=3), 5000, None),
                             ("u2", "order_paid", at - timedelta(days=9), 900, None)])
    with store:
        snap = Snapshot(proj, store, to_micros(at))
        assert snap.facts("u1", False).rfm == {}
        with_rfm = snap.facts("u1", True)
        assert with_rfm.rfm and with_rfm.rfm["segment"]
        assert snap.facts("u1", False) is with_rfm  # and then reused
        assert len(snap.facts("u1", False).events("order_paid")) == 1
