"""`engine pressure`: worst cases before caps, caps that bind, starving and never-firing rules."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from store_helpers import load_rows, make_rule_project

from engine.pressure import FINDINGS, busiest, contradiction, pressure
from engine.store import resolve_db_path

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 20, 12, 0, tzinfo=TZ)


def message(priority: int, schedule: str = "0 9 * * *", extra: str = "") -> str:
    return f"""
category: marketing
priority: {priority}
trigger: {{schedule: "{schedule}"}}
fire: every_time
actions:
  - message: {{channel: console, text: hello}}
{extra}"""


RULES = {
    # takes the (1 per 7 days) cap every day first, then is held by its own limit
    "hi": "id: hi" + message(90, extra="limits: {max: 1, per: 30d}"),
    # same slot, lower priority: the cap is always gone -> RULE_STARVES
    "lo": "id: lo" + message(10),
    "off": "id: off\nenabled: false" + message(50),
    "nodrop": """
id: nodrop
category: marketing
trigger: {event: price_drop}
actions:
  - message: {channel: console, text: cheaper}
""",
    "never": "id: never" + message(
        40, schedule="0 8 * * 1",
        extra="audience: count(order_paid, 30d) >= 5 and count(order_paid, 30d) < 2\n"),
    "noconsent": """
id: noconsent
category: marketing
trigger: {schedule: "0 8 * * 1"}
actions:
  - message:
      channel: wechat_subscribe
      template: cart_reminder
      data: {thing1: a, thing2: b}
""",
    "remind": """
id: remind
category: marketing
trigger: {coupon_expiring: {before: 3d, stock: BIRTHDAY30}}
actions:
  - message: {channel: console, text: soon}
""",
}


def setup(tmp: Path) -> Any:
    make_rule_project(tmp, RULES)
    cfg = tmp / "engine.yaml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(
        "{category: marketing, max: 2, per: 7d}", "{category: marketing, max: 1, per: 7d}")
        .replace("quiet_hours:", "#"), encoding="utf-8")
    users = [{"user_id": f"u{i}", "openid": f"o{i}"} for i in range(4)]
    events = [(u["user_id"], "checkin", AT - timedelta(hours=3), None, None) for u in users]
    proj, store = load_rows(tmp, users, events)
    store.close()
    return proj


def test_pressure_finds_starving_and_never_firing_rules(tmp_path: Path) -> None:
    proj = setup(tmp_path)
    db = resolve_db_path(proj.root, proj.config.database)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    rep = pressure(proj, db, AT, timedelta(days=7), timedelta(hours=1))
    found = {(f.code, f.rule) for f in rep.findings}
    assert ("RULE_STARVES", "lo") in found and ("RULE_STARVES", "hi") not in found
    assert {("NEVER_DISABLED", "off"),
            ("NEVER_EVENT_ABSENT", "nodrop"), ("NEVER_CONTRADICTION", "never"),
            ("NEVER_NO_CONSENT", "noconsent"), ("NEVER_NO_COUPON", "remind")} <= found
    assert ("UNBOUNDED_RULE", "nodrop") in found  # each event, no limits
    assert {f.code for f in rep.findings} <= set(FINDINGS)
    assert rep.starving["lo"]["capped_global"] == 7 * 4
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    # worst case before caps: hi 1 a day (its limit: 1 a week), lo 1 a day / 7 a week
    worst = {w.rule: (w.per_day, w.per_week) for w in rep.worst}
    assert worst["hi"] == (1, 1) and worst["lo"] == (1, 7) and worst["never"] == (1, 1)
    assert worst["nodrop"] == (None, None) and "off" not in worst
    (cap, sms) = rep.caps
    assert cap.binds and cap.max == 1 and not sms.binds
    # scheduled audiences as if due at T: hi, lo and noconsent hold for every user; nodrop had
    # no price_drop event in the day before T; never's audience cannot hold
    assert rep.overlap == {0: 0, 3: 4}
    assert rep.not_counted == ("remind",)
    assert cap.over_day == 4


def test_busiest_window_and_contradictions(scope: Any) -> None:
    from engine.lang.checker import check

    h = 3_600_000_000
    assert busiest([0, h, 2 * h, 30 * h], timedelta(days=1)) == 3
    assert busiest([], timedelta(days=1)) == 0
    for text, empty in [("count(order_paid, 30d) >= 5 and count(order_paid, 30d) < 2", True),
                        ("user.tier == \"gold\" and user.tier == \"black_gold\"", True),
                        ("7 <= days_since(last(order_paid)) and days_since(last(order_paid)) < 7",
                         True),
                        ("days_since(last(order_paid)) >= 7 and days_since(last(order_paid)) <= 7",
                         False),
                        ("count(order_paid, 30d) >= 5 or count(order_paid, 30d) < 2", False),
                        ("count(order_paid, 30d) >= 5 and count(order_paid, 7d) < 2", False)]:
        assert contradiction(check(text, scope)) is empty, text


def test_cli_pressure_text_and_json(tmp_path: Path, run_engine: Any) -> None:
    setup(tmp_path)
    at = ["pressure", "--at", AT.isoformat()]
    text = run_engine(*at, "--window", "2d", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "worst case per user" in text.stdout and "RULE_STARVES  lo" in text.stdout
    js = run_engine(*at, "--format", "json", "--window", "0", cwd=tmp_path)
    data = json.loads(js.stdout)
    assert data["window"] is None and data["backtest"] == {}
    assert {f["code"] for f in data["findings"]} >= {"NEVER_DISABLED", "CAP_BINDS"}
    bad = run_engine(*at, "--window", "soon", cwd=tmp_path)
    assert bad.returncode == 1 and "--window" in bad.stderr
    nodb = run_engine(*at, "--db", "missing.db", cwd=tmp_path)
    assert nodb.returncode == 2 and "no database" in nodb.stderr
