"""`engine report`: fires, delivery, goals and experiments, activity and cohorts.

Real ticks (engine.run.run_once) at fixed times on a real SQLite file, delivering to a console
channel; every expected figure below is counted by hand from the scenario.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import Runner
from store_helpers import load_rows, make_rule_project

from engine import stats
from engine.channels import build_channel
from engine.channels.base import FAILED, RETRY, UNKNOWN, Channel, SendRequest, SendResult
from engine.experiments import assign
from engine.report import build_report
from engine.report_text import report_text
from engine.rules.model import Experiment, Variant
from engine.run import run_once

TZ = ZoneInfo("Asia/Shanghai")
T1 = datetime(2026, 11, 10, 10, 0, tzinfo=TZ)  # the tick
AT = T1 + timedelta(days=5)  # the report: window [2026-11-05 10:00, 2026-11-15 10:00)

WINBACK = """
id: winback
name: 召回
trigger: {schedule: "0 10 * * *"}
audience: days_since(last(order_paid)) >= 7
actions:
  - message: {channel: console, text: 好久不见，回来看看}
goal: {event: order_paid, within: 3d}
experiment:
  holdout: 20%
  variants:
    - {name: a, weight: 50}
    - {name: b, weight: 50}
"""
QUIET = """
id: quiet
category: transactional
trigger: {schedule: "0 10 * * *"}
audience: count(order_paid) >= 1000
actions:
  - message: {channel: console, text: 订单提醒}
"""


@dataclass
class Scripted:
    """The console channel, except that some users' sends fail, end unknown or are retried."""

    inner: Channel
    outcomes: dict[str, str]
    kind: str = "console"
    idempotent: bool = False

    def send(self, request: SendRequest) -> SendResult:
        status = self.outcomes.get(request.user_id)
        if status is None:
            return self.inner.send(request)
        return SendResult(status, "scripted", "", retry_after=3600 if status == RETRY else None)

    def close(self) -> None:
        self.inner.close()


def pick(n_holdout: int, n_a: int, n_b: int) -> tuple[list[str], list[str], list[str]]:
    """User ids that the real assignment puts in the holdout, variant a and variant b."""
    exp = Experiment(0.2, (Variant("a", 50), Variant("b", 50)))
    got: dict[str, list[str]] = {"holdout": [], "a": [], "b": []}
    for i in range(200):
        uid = f"u{i:03d}"
        a = assign("winback", uid, exp)
        got["holdout" if a.holdout else str(a.variant)].append(uid)
    return got["holdout"][:n_holdout], got["a"][:n_a], got["b"][:n_b]


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=TZ)


@pytest.fixture
def scenario(tmp_path: Path) -> tuple[Any, Any, dict[str, str]]:
    """Holdout h1 h2; variant a: a1 a2 a3 and x (its send fails); variant b: b1 b2 b3, q (its
    send ends unknown) and r (retried later: still pending). All lapsed 9 days before the tick.
    Goal events (order_paid within 3d of the send, or of the would-be send for the holdout):
    h1 +1d (converts), a1 a2 +2d (convert), a3 +4d (too late), x +1d (never sent: not
    counted), b1 at the send instant (not after it), b2 at exactly +3d (converts)."""
    hold, va, vb = pick(2, 4, 5)
    who = {"h1": hold[0], "h2": hold[1], "a1": va[0], "a2": va[1], "a3": va[2], "x": va[3],
           "b1": vb[0], "b2": vb[1], "b3": vb[2], "q": vb[3], "r": vb[4]}
    make_rule_project(tmp_path, {"winback": WINBACK, "quiet": QUIET})
    signup = {"a1": at(2, 9), "a2": at(2, 9), "a3": at(2, 9), "x": at(2, 9), "b1": at(4, 12),
              "b2": at(4, 12), "b3": at(4, 12), "q": at(4, 12), "r": at(4, 12),
              "h1": at(9, 20), "h2": at(9, 20)}
    users = [{"user_id": who[k], "signup_at": v.isoformat()} for k, v in signup.items()]
    events: list[tuple[Any, ...]] = [(u, "order_paid", T1 - timedelta(days=9), 5000, None)
                                     for u in who.values()]
    goals = {"h1": T1 + timedelta(days=1), "a1": T1 + timedelta(days=2),
             "a2": T1 + timedelta(days=2), "a3": T1 + timedelta(days=4),
             "x": T1 + timedelta(days=1), "b1": T1, "b2": T1 + timedelta(days=3)}
    events += [(who[k], "order_paid", ts, 8000, None) for k, ts in goals.items()]
    events += [(who["a1"], "checkin", at(3, 12), None, None),  # a1: signup day + 1
               (who["b1"], "checkin", at(11, 8), None, None),  # b1: signup day + 7
               (who["h1"], "checkin", at(10, 9), None, None)]  # h1: signup day + 1
    proj, store = load_rows(tmp_path, users, events)
    _fix_signup(store, users)
    console = build_channel(proj.config.channels["console"], {}, stream=io.StringIO())
    channel = Scripted(console, {who["x"]: FAILED, who["q"]: UNKNOWN, who["r"]: RETRY})
    with store:
        run_once(proj, store, T1, {"console": channel})
    return proj, tmp_path, who


def _fix_signup(store: Any, users: list[dict[str, Any]]) -> None:
    """load_rows writes attributes as given: store signup_at as the engine does (µs)."""
    from engine.timeutil import to_micros

    with store.transaction():
        store.conn.executemany("UPDATE users SET signup_at = ? WHERE user_id = ?",
                               [(to_micros(datetime.fromisoformat(u["signup_at"])),
                                 u["user_id"]) for u in users])


def report_json(proj: Any, root: Path, since: timedelta = timedelta(days=10),
                end: datetime = AT) -> dict[str, Any]:
    from engine.store import open_project_store

    with open_project_store(proj, create=False) as store:
        return build_report(proj, store, end, since).as_json()


def group(name: str, users: int, conversions: int) -> dict[str, Any]:
    ci = stats.wilson(conversions, users)
    assert ci is not None
    return {"name": name, "users": users, "conversions": conversions,
            "rate": round(conversions / users, 4), "low": round(ci[0], 4),
            "high": round(ci[1], 4)}


def test_rule_counts_goals_and_groups(scenario: tuple[Any, Path, dict[str, str]]) -> None:
    proj, root, _ = scenario
    data = report_json(proj, root)
    assert data["at"] == "2026-11-15T10:00:00+08:00"
    assert data["since"] == "2026-11-05T10:00:00+08:00"
    assert data["timezone"] == "Asia/Shanghai"
    quiet, winback = data["rules"]  # project order: rules/quiet.yaml, rules/winback.yaml
    assert quiet == {"id": "quiet", "name": "", "category": "transactional", "matched": 0,
                     "fired": 0, "deferred": 0, "suppressed": {}, "sent": 0, "failed": 0,
                     "unknown": 0, "pending": 0, "goal": None, "conversions": None,
                     "groups": [], "uplift": [], "winner": None}
    assert {k: winback[k] for k in ("id", "name", "category", "matched", "fired", "deferred",
                                    "suppressed", "sent", "failed", "unknown", "pending",
                                    "goal", "conversions")} == {
        "id": "winback", "name": "召回", "category": "marketing", "matched": 11, "fired": 9,
        "deferred": 0, "suppressed": {"holdout": 2}, "sent": 6, "failed": 1, "unknown": 1,
        "pending": 1, "goal": {"event": "order_paid", "within": "3d"}, "conversions": 4}
    # holdout h1 h2 (h1 converts); a: a1 a2 a3 sent (a1 a2 convert), x never sent;
    # b: b1 b2 b3 sent (b2 converts), q and r never sent
    assert winback["groups"] == [group("holdout", 2, 1), group("a", 3, 2), group("b", 3, 1)]
    ua, ub = winback["uplift"]
    d, low, high = stats.newcombe(2, 3, 1, 2) or (0, 0, 0)
    p = stats.z_test(2, 3, 1, 2)
    assert ua == {"variant": "a", "vs": "holdout", "difference": round(d, 4),
                  "low": round(low, 4), "high": round(high, 4),
                  "p_value": float(f"{p:.4g}"), "significant": False}
    assert ub["variant"] == "b" and ub["difference"] == round(1 / 3 - 1 / 2, 4)
    assert winback["winner"] is None
    assert data["totals"] == {"matched": 11, "fired": 9, "deferred": 0, "sent": 6,
                              "suppressed": 2, "failed": 1, "unknown": 1, "pending": 1,
                              "conversions": 4}


def test_daily_activity_and_cohorts(scenario: tuple[Any, Path, dict[str, str]]) -> None:
    proj, root, _ = scenario
    data = report_json(proj, root)
    days = {d["date"]: d for d in data["daily"]}
    assert list(days) == [f"2026-11-{d:02d}" for d in range(5, 16)]
    assert days["2026-11-10"] == {"date": "2026-11-10", "fired": 9, "deferred": 0, "sent": 6,
                                  "failed": 1, "unknown": 1, "pending": 1,
                                  "suppressed": {"holdout": 2}}
    assert all(d["fired"] == 0 and d["suppressed"] == {} for k, d in days.items()
               if k != "2026-11-10")
    act = data["activity"]
    # last day [11-14 10:00, 11-15 10:00): a3's order; last 7 days: the goal orders of
    # h1 x a1 a2 a3 b1 b2, and b1's and h1's checkins; 30 days: every user's lapse order
    assert (act["dau"], act["wau"], act["mau"]) == (1, 7, 11)
    series = {p["date"]: p["dau"] for p in act["series"]}
    assert list(series) == list(days)
    assert series == {**{k: 0 for k in days}, "2026-11-10": 2,  # b1's order, h1's checkin
                      "2026-11-11": 3,  # h1 x orders, b1 checkin
                      "2026-11-12": 2, "2026-11-13": 1, "2026-11-14": 1}
    # W45 (Monday 11-02): a1 a2 a3 x (signed up 11-02), b1 b2 b3 q r (11-04);
    # day +1: a1's checkin on 11-03; day +7: b1's checkin on 11-11; day +30 not complete.
    # W46 (Monday 11-09): h1 h2 (11-09 20:00); day +1: h1's checkin; day +7 is 11-16.
    assert data["cohorts"] == [
        {"week": "2026-W45", "start": "2026-11-02", "users": 9, "d1": round(1 / 9, 4),
         "d7": round(1 / 9, 4), "d30": None},
        {"week": "2026-W46", "start": "2026-11-09", "users": 2, "d1": 0.5, "d7": None,
         "d30": None}]


def test_window_excludes_older_fires(scenario: tuple[Any, Path, dict[str, str]]) -> None:
    proj, root, _ = scenario
    data = report_json(proj, root, timedelta(days=4))  # [11-11 10:00, 11-15 10:00)
    assert data["totals"]["matched"] == 0 and data["rules"][1]["groups"] == [
        {"name": "holdout", "users": 0, "conversions": 0, "rate": None, "low": None,
         "high": None}]
    assert data["rules"][1]["uplift"] == [] and data["rules"][1]["conversions"] == 0


def test_text_output(scenario: tuple[Any, Path, dict[str, str]]) -> None:
    proj, root, _ = scenario
    from engine.store import open_project_store

    with open_project_store(proj, create=False) as store:
        text = report_text(build_report(proj, store, AT, timedelta(days=10)))
    lines = text.splitlines()
    assert lines[0] == ("report for [2026-11-05T10:00:00+08:00, 2026-11-15T10:00:00+08:00) "
                        "(Asia/Shanghai)")
    row = next(line for line in lines if line.strip().startswith("winback "))
    assert row.split() == ["winback", "11", "9", "0", "6", "1", "1", "1", "4", "holdout", "2"]
    assert "goal of winback: order_paid within 3d" in lines
    assert any(line.split()[:5] == ["a", "3", "users", "2", "converted"] for line in lines)
    assert any(line.startswith("  uplift a vs holdout: +16.7 points") for line in lines)
    assert "activity at 2026-11-15T10:00:00+08:00: DAU 1, WAU 7, MAU 11" in lines
    assert any(line.split()[:3] == ["2026-W46", "2026-11-09", "2"] for line in lines)


GOAL_WHERE = """
id: big
category: transactional
trigger: {schedule: "0 10 * * *"}
audience: days_since(last(order_paid)) >= 7
actions:
  - message: {channel: console, text: 新品上架}
goal: {event: order_paid, within: 3d, where: "amount >= 100 and user.tier == 'gold'"}
"""


def test_goal_where(tmp_path: Path) -> None:
    """`where` on a goal filters the goal events in SQL (event fields and user attributes);
    one that needs an aggregate cannot, and is reported as not applied."""
    agg = GOAL_WHERE.replace("id: big", "id: agg").replace(
        "amount >= 100 and user.tier == 'gold'", "count(cart_add, 30d) >= 5")
    make_rule_project(tmp_path, {"big": GOAL_WHERE, "agg": agg})
    users = [{"user_id": u, "tier": t} for u, t in (("y1", "gold"), ("y2", "gold"),
                                                    ("y3", "silver"))]
    events: list[tuple[Any, ...]] = [(u["user_id"], "order_paid", T1 - timedelta(days=9), 500,
                                      None) for u in users]
    events += [("y1", "order_paid", T1 + timedelta(hours=5), 5000, None),  # 50 yuan
               ("y2", "order_paid", T1 + timedelta(hours=5), 15000, None),  # 150 yuan, gold
               ("y3", "order_paid", T1 + timedelta(hours=5), 15000, None)]  # silver
    proj, store = load_rows(tmp_path, users, events)
    console = build_channel(proj.config.channels["console"], {}, stream=io.StringIO())
    with store:
        run_once(proj, store, T1, {"console": console})
    data = {r["id"]: r for r in report_json(proj, tmp_path)["rules"]}
    assert data["big"]["goal"] == {"event": "order_paid", "within": "3d",
                                   "where": "amount >= 100 and user.tier == 'gold'",
                                   "where_applied": True}
    assert data["big"]["groups"] == [group("all", 3, 1)]
    assert data["agg"]["goal"]["where_applied"] is False
    assert data["agg"]["groups"] == [group("all", 3, 3)]


def test_cli_text_json_and_errors(scenario: tuple[Any, Path, dict[str, str]],
                                  run_engine: Runner, tmp_path: Path) -> None:
    _, root, _ = scenario
    args = ("report", "--at", AT.isoformat(), "--since", "10d")
    out = run_engine(*args, "--format", "json", cwd=root)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["totals"]["matched"] == 11 and data["rules"][1]["conversions"] == 4
    text = run_engine(*args, cwd=root)
    assert text.returncode == 0 and text.stdout.startswith("report for [2026-11-05T10:00")
    bad = run_engine("report", "--since", "1mo", cwd=root)
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("error: --since: `1mo`: months and years have no fixed "
                                  "length; use days or weeks")
    assert "Traceback" not in bad.stderr
    long = run_engine("report", "--since", "1001d", cwd=root)
    assert long.returncode == 1 and long.stderr.strip() == "error: --since: at most 1000d " \
        "(one figure per day)"
    empty = tmp_path / "empty"
    empty.mkdir()
    make_rule_project(empty, {"quiet": QUIET})
    none = run_engine("report", cwd=empty)
    assert none.returncode == 2 and "no database at" in none.stderr
    assert "Traceback" not in none.stderr


def test_cli_html(scenario: tuple[Any, Path, dict[str, str]], run_engine: Runner) -> None:
    _, root, _ = scenario
    page = root / "report.html"
    out = run_engine("report", "--at", AT.isoformat(), "--html", str(page), cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == f"wrote {page}"
    html = page.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and "winback" in html


def test_local_days_across_a_dst_change(tmp_path: Path) -> None:
    """In a zone whose offset changes, local days come from the zone (Europe/Berlin leaves
    summer time on 2026-10-25: that day has 25 hours)."""
    berlin = ZoneInfo("Europe/Berlin")
    make_rule_project(tmp_path, {"quiet": QUIET})
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("timezone: Asia/Shanghai",
                                                           "timezone: Europe/Berlin"), "utf-8")
    model = tmp_path / "datamodel.yaml"  # without signup_at: cohorts by first event
    model.write_text("".join(line for line in model.read_text("utf-8").splitlines(True)
                             if not line.strip().startswith("signup_at:")), "utf-8")
    late = datetime(2026, 10, 25, 23, 30, tzinfo=berlin)  # 22:30 UTC: still the 25th locally
    users = [{"user_id": "d1"}, {"user_id": "d2"}]
    events: list[tuple[Any, ...]] = [("d1", "checkin", late, None, None),
                                     ("d2", "checkin", late + timedelta(hours=1), None, None)]
    proj, store = load_rows(tmp_path, users, events)
    store.close()
    end = datetime(2026, 10, 27, 12, 0, tzinfo=berlin)
    data = report_json(proj, tmp_path, timedelta(days=3), end)
    assert data["timezone"] == "Europe/Berlin"
    assert [(p["date"], p["dau"]) for p in data["activity"]["series"]] == [
        ("2026-10-24", 0), ("2026-10-25", 1), ("2026-10-26", 1), ("2026-10-27", 0)]
    # first events: d1 on Sunday 10-25 (week of 10-19; not active on 10-26), d2 on Monday
    # 10-26 (its day +1, 10-27, is not over at `at`)
    assert [(c["week"], c["start"], c["users"], c["d1"]) for c in data["cohorts"]] == [
        ("2026-W43", "2026-10-19", 1, 0.0), ("2026-W44", "2026-10-26", 1, None)]
