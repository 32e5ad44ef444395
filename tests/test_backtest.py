"""`engine backtest`: ticks, caps across days, on_enter state, holdout, coupons, and that the real
database is never written. Small projects whose counts can be worked out by hand."""
from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from store_helpers import load_rows, make_rule_project

from engine.backtest import backtest, choose_rules, parse_span
from engine.experiments import assign
from engine.run import run_once
from engine.store import resolve_db_path
from engine.store.scratch import scratch_store

TZ = ZoneInfo("Asia/Shanghai")


def day(d: int, h: int = 0, m: int = 0) -> datetime:
    return datetime(2026, 11, d, h, m, tzinfo=TZ)


def project(tmp: Path, rules: dict[str, str], users: list[dict[str, Any]],
            events: list[tuple[Any, ...]], coupons: str = "") -> Any:
    make_rule_project(tmp, rules, coupons)
    proj, store = load_rows(tmp, users, events)
    store.close()
    return proj


def run(proj: Any, start: str, end: str, step: str = "1h", ids: tuple[str, ...] = ()
        ) -> dict[str, Any]:
    span = parse_span(proj, start, end, step)
    path = resolve_db_path(proj.root, proj.config.database)
    return backtest(proj, path, choose_rules(proj, ids), span).as_json()


def per_day(report: dict[str, Any], rule: str, key: str) -> dict[str, Any]:
    out = {}
    for d in report["days"]:
        for r in d["rules"]:
            if r["id"] == rule:
                out[d["date"]] = r[key] if key in r else r["suppressed"].get(key, 0)
    return out


HOURLY = """
id: hourly
category: transactional
trigger: {schedule: "0 * * * *"}
fire: every_time
actions:
  - tag: {add: pinged}
"""

DAILY_MARKETING = """
id: daily
category: marketing
trigger: {schedule: "0 10 * * *"}
fire: every_time
actions:
  - tag: {add: nudged}
"""

ON_ENTER = """
id: lapse
category: transactional
trigger: {schedule: "0 10 * * *"}
audience: days_since(last(order_paid)) >= 3
actions:
  - tag: {add: lapsed}
"""


def test_an_hourly_rule_ticks_24_times_a_day(tmp_path: Path) -> None:
    proj = project(tmp_path, {"h": HOURLY}, [{"user_id": "a"}], [])
    rep = run(proj, "2026-11-19T00:00:00+08:00", "2026-11-20T00:00:00+08:00", step="1d")
    (rule,) = rep["rules"]
    assert rule["ticks"] == 24 and rule["fire"] == 24  # 01:00 .. 24:00, whatever the step
    assert per_day(rep, "hourly", "fire") == {"2026-11-19": 23, "2026-11-20": 1}
    assert rep["ticks"] == 24


def test_global_caps_bind_across_days(tmp_path: Path) -> None:
    # engine.yaml: at most 2 marketing fires per user in any 7 days
    proj = project(tmp_path, {"d": DAILY_MARKETING}, [{"user_id": "a"}, {"user_id": "b"}], [])
    rep = run(proj, "2026-11-12T00:00:00+08:00", "2026-11-19T00:00:00+08:00")
    fires = per_day(rep, "daily", "fire")
    assert list(fires.values()) == [2, 2, 0, 0, 0, 0, 0]
    assert per_day(rep, "daily", "cap_hits") == {
        f"2026-11-{d}": n for d, n in zip(range(12, 19), [0, 0, 2, 2, 2, 2, 2])}
    assert rep["total"]["suppressed"] == {"capped_global": 10}


def test_on_enter_fires_once_then_rearms_after_leaving(tmp_path: Path) -> None:
    events = [("a", "order_paid", day(10, 9), 5000, None),
              ("a", "order_paid", day(15, 9), 5000, None)]
    proj = project(tmp_path, {"l": ON_ENTER}, [{"user_id": "a"}], events)
    rep = run(proj, "2026-11-12T00:00:00+08:00", "2026-11-20T00:00:00+08:00")
    # 13th: 3 days since the order, enters; 14th: still inside; 15th: ordered at 09:00, out
    # (no decision); 18th: 3 days again, enters anew; 19th: inside
    assert per_day(rep, "lapse", "fire") == {"2026-11-13": 1, "2026-11-14": 0,
                                             "2026-11-18": 1, "2026-11-19": 0}
    assert rep["rules"][0]["suppressed"] == {"already_entered": 2}
    assert rep["rules"][0]["ticks"] == 8


def test_holdout_is_counted(tmp_path: Path) -> None:
    rule = HOURLY.replace('"0 * * * *"', '"0 10 * * *"') + "experiment: {holdout: 50%}\n"
    users = [{"user_id": f"u{i:02d}"} for i in range(40)]
    proj = project(tmp_path, {"h": rule}, users, [])
    rep = run(proj, "2026-11-19T00:00:00+08:00", "2026-11-20T00:00:00+08:00")
    r = proj.rule("hourly")
    held = sum(1 for u in users if assign("hourly", u["user_id"], r.experiment).holdout)
    assert 0 < held < 40
    assert rep["rules"][0]["suppressed"] == {"holdout": held}
    assert rep["rules"][0]["fire"] == 40 - held


def test_event_rules_tick_every_step_and_state_before_t1_does_not_leak(tmp_path: Path) -> None:
    rule = """
id: cart
category: marketing
trigger: {event: cart_add, wait: 2h}
audience: count(order_paid, 2h) == 0
actions:
  - tag: {add: cart}
limits: {max: 1, per: 30d}
"""
    events = [("a", "cart_add", day(18, 9), None, None),  # before T1: fires in the real run
              ("a", "cart_add", day(19, 9, 30), None, None),  # evaluated 11:30, ticked 12:00
              ("b", "cart_add", day(19, 9), None, None),
              ("b", "order_paid", day(19, 10), 100, None)]  # paid within 2h: no fire
    proj = project(tmp_path, {"c": rule}, [{"user_id": "a"}, {"user_id": "b"}], events)
    from engine.store import open_project_store
    with open_project_store(proj) as store:  # a real tick before T1 uses a's 30-day limit
        rep0 = run_once(proj, store, day(18, 11, 2), {})  # looks back 5m
        assert rep0.commit is not None and rep0.commit.new_fires == 1
    rep = run(proj, "2026-11-19T00:00:00+08:00", "2026-11-20T00:00:00+08:00")
    (r,) = rep["rules"]
    assert r["ticks"] == 24 and r["matched"] == 1 and r["fire"] == 1  # limits start empty


def test_coupons_are_issued_so_coupon_expiring_rules_fire(tmp_path: Path) -> None:
    give = """
id: give
category: transactional
trigger: {schedule: "0 10 * * *"}
fire: on_enter
actions:
  - coupon: {stock: WINBACK10}
"""
    remind = """
id: remind
category: transactional
trigger: {coupon_expiring: {before: 3d}}
actions:
  - tag: {add: reminded}
"""
    proj = project(tmp_path, {"g": give, "r": remind}, [{"user_id": "a", "openid": "oA"}], [])
    rep = run(proj, "2026-11-10T00:00:00+08:00", "2026-11-20T00:00:00+08:00")
    assert rep["coupons_issued"] == 1
    # issued on the 10th at 10:00, valid 7 days: expires on the 17th, reminded on the 14th
    assert per_day(rep, "remind", "fire") == {"2026-11-14": 1}


def test_the_real_database_is_byte_for_byte_unchanged(tmp_path: Path, run_engine: Any) -> None:
    events = [("a", "order_paid", day(1, 9), 5000, None)]
    proj = project(tmp_path, {"l": ON_ENTER, "d": DAILY_MARKETING},
                   [{"user_id": "a"}], events)
    db = resolve_db_path(proj.root, proj.config.database)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    res = run_engine("backtest", "--from", "2026-11-10", "--to", "2026-11-20", "--format", "json",
                 cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["total"]["fire"] > 0
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not any(p.name.startswith("scratch") for p in tmp_path.iterdir())
    with scratch_store(db, proj.datamodel) as scratch:  # users and events: read-only
        assert scratch.count_users() == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            scratch.conn.execute("INSERT INTO users(user_id) VALUES ('x')")
        scratch.conn.execute("INSERT INTO rule_ticks VALUES ('r', 1, '')")  # the scratch file
        workdir = Path(scratch.conn.execute("PRAGMA database_list").fetchall()[0][2]).parent
    assert not workdir.exists()


def test_cli_text_json_and_exit_codes(tmp_path: Path, run_engine: Any) -> None:
    proj = project(tmp_path, {"h": HOURLY, "d": DAILY_MARKETING}, [{"user_id": "a"}], [])
    del proj
    ok = run_engine("backtest", "hourly", "--from", "2026-11-19", "--to", "2026-11-20",
                cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "2026-11-19" in ok.stdout and "hourly" in ok.stdout and "daily" not in ok.stdout
    assert ok.stderr == ""  # no progress bar when stderr is not a terminal
    js = run_engine("backtest", "--from", "2026-11-19", "--to", "2026-11-20", "--format", "json",
                cwd=tmp_path)
    data = json.loads(js.stdout)
    assert [r["id"] for r in data["rules"]] == ["daily", "hourly"]
    assert data["step"] == "1h" and data["from"] == "2026-11-19T00:00:00+08:00"
    for args, code, words in [
            (["--from", "yesterday", "--to", "2026-11-20"], 1, "not a timestamp"),
            (["--from", "2026-11-20", "--to", "2026-11-19"], 1, "is not before --to"),
            (["--from", "2026-11-19", "--to", "2026-11-20", "--step", "1mo"], 1, "--step"),
            (["nosuch", "--from", "2026-11-19", "--to", "2026-11-20"], 1, "no rule `nosuch`"),
            (["--from", "2026-11-19", "--to", "2026-11-20", "--db", "missing.db"], 2,
             "no database")]:
        res = run_engine("backtest", *args, cwd=tmp_path)
        assert res.returncode == code, (args, res.stderr)
        assert words in res.stderr and "Traceback" not in res.stderr
