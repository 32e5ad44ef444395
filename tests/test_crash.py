"""Crash test: `engine run --once` / `engine deliver` SIGKILLed at random points, restarted.

The real CLI runs as a subprocess against the fake WeChat server (a real HTTP server on
127.0.0.1, slowed down so kills land in the middle of deliveries). After every cycle the next
process picks up where the last one died. At the end: no send was accepted twice, every fire
ended in exactly one state, and coupons never exceeded their budget.
`CRASH_CYCLES` raises the number of cycles (`CRASH_CYCLES=100 pytest tests/test_crash.py` is
the figure in docs/benchmarks.md).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from engine.project import load_project
from engine.resources import PROJECT_FILES, example_project, schemas_dir
from engine.store import open_project_store
from engine.timeutil import to_micros

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=TZ)
CYCLES = int(os.environ.get("CRASH_CYCLES", "20"))
BUDGET = 60
RULE = """
id: crash-winback
trigger: {every: 1h}
fire: every_time
audience: days_since(last(order_paid)) >= 7
actions:
  - coupon: {stock: WINBACK10}
  - message:
      channel: wechat_subscribe
      template: coupon_arrival
      data: {thing1: "{{ coupon.name }}", amount2: "{{ coupon.value }}元", date3: "{{ coupon.expires_at | date }}", thing4: 期待你回来}
limits: {max: 3, per: 1d}
"""


def make_project(tmp: Path, fake: Any) -> dict[str, str]:
    fake.stocks["1230000000"] = None  # WINBACK10's wechat_stock_id, unlimited at the provider
    for name in PROJECT_FILES:
        shutil.copyfile(example_project() / name, tmp / name)
    cfg = yaml.safe_load((tmp / "engine.yaml").read_text("utf-8"))
    cfg["channels"] = {k: fake.options(k) for k in ("console", "wechat_subscribe",
                                                     "wechat_coupon", "sms")}
    cfg["channels"]["wechat_subscribe"]["timeout"] = "1s"
    cfg["channels"]["wechat_coupon"]["timeout"] = "1s"
    cfg["policy"] = {"caps": [{"category": "marketing", "max": 50, "per": "7d"}]}
    (tmp / "engine.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), "utf-8")
    coupons = (tmp / "coupons.yaml").read_text("utf-8").replace(
        "budget: {max_count: 20000}", f"budget: {{max_count: {BUDGET}}}", 1)
    (tmp / "coupons.yaml").write_text(coupons, "utf-8")
    shutil.copytree(schemas_dir(), tmp / "schemas")
    (tmp / "rules").mkdir()
    (tmp / "rules" / "crash.yaml").write_text(RULE, "utf-8")
    proj = load_project(tmp)
    store = open_project_store(proj)
    users = [f"u{i:02d}" for i in range(30)]
    with store.transaction():
        store.upsert_users(("openid",), [(u, f"o-{u}") for u in users])
        paid, auth = store.type_ids["order_paid"], store.type_ids["subscribe_authorized"]
        store.insert_events([(f"p-{u}", u, paid, to_micros(T0 - timedelta(days=9)), 5000, None)
                             for u in users])
        store.insert_events([(f"a-{u}-{k}", u, auth, to_micros(T0 - timedelta(days=9)), None,
                              json.dumps({"template": "coupon_arrival"}))
                             for u in users for k in range(4)])
    store.close()
    env = dict(os.environ)
    env.update(fake.env())
    return env


def engine(tmp: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", *args], cwd=tmp,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_at_random_points_never_duplicates(tmp_path: Path, fake_wechat: Any) -> None:
    env = make_project(tmp_path, fake_wechat)
    rnd = random.Random(20261121)
    at = T0
    kills = 0
    for cycle in range(CYCLES):
        # slow, sometimes failing sends, so that kills land inside deliveries
        fake_wechat.fault("subscribe", *rnd.choices(["delay:0.5", "", "-1", "http_500", "delay:0.5"],
                                                    k=6))
        fake_wechat.fault("coupon", *rnd.choices(["delay:0.5", "", "SYSTEM_ERROR", "delay:1.5"], k=6))
        cmd = ("run", "--once", "--at", at.isoformat()) if cycle % 2 == 0 else \
            ("deliver", "--at", at.isoformat())
        seen = len(fake_wechat.requests_to("subscribe"))
        proc = engine(tmp_path, env, *cmd)
        # kill soon after a subscription message went out: while its reply is awaited
        deadline = time.monotonic() + 8
        while proc.poll() is None and time.monotonic() < deadline \
                and len(fake_wechat.requests_to("subscribe")) <= seen:
            time.sleep(0.01)
        time.sleep(rnd.uniform(0.0, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        _, err = proc.communicate(timeout=30)
        assert b"Traceback" not in err, err.decode()
        at += timedelta(minutes=30)
    # drain: no more faults, deliver until nothing is due
    for queue in fake_wechat.faults.values():
        queue.clear()
    for k in range(8):
        proc = engine(tmp_path, env, "deliver", "--at", (at + timedelta(days=k)).isoformat())
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    # the test did kill processes mid-flight (after the first ~20 cycles the 30 users' work
    # and the coupon budget are spent, so longer runs have fewer sends left to interrupt)
    assert kills >= min(CYCLES, 20) // 4
    assert fake_wechat.duplicates() == {}
    proj = load_project(tmp_path)
    store = open_project_store(proj, create=False)
    with store:
        states = store.conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        assert {s for s, _ in states} <= {"sent", "failed", "unknown", "dead"}, states
        fires = store.conn.execute(
            "SELECT f.fire_id, f.outcome, f.reason, COUNT(o.item_id) FROM fires f "
            "LEFT JOIN outbox o ON o.fire_id = f.fire_id GROUP BY f.fire_id").fetchall()
        for fid, outcome, reason, items in fires:
            if outcome == "suppressed":
                assert reason and items == 0, (fid, reason, items)
            else:
                assert items == 2, (fid, items)  # coupon + message, each in one final state
        issued = store.conn.execute("SELECT COUNT(*) FROM issued_coupons").fetchone()[0]
    accepted_coupons = len(fake_wechat.accepted_for("coupon"))
    assert accepted_coupons <= BUDGET and issued <= BUDGET
    # every message the fake accepted belongs to a fire whose coupon it accepted too
    assert len(fake_wechat.accepted_for("subscribe")) <= accepted_coupons
