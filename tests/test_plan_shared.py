"""What one `plan` shares across its rules: per-type event summaries, RFM (ranked only when a
rule reads the scores) and lifecycle activity. Same answers as each rule planned alone, and
no per-tick table is left on the connection afterwards."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from store_helpers import load_rows, make_rule_project

from engine.plan import _reads_rfm_scores, plan
from engine.project import load_project

TZ = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 11, 20, 10, 0, tzinfo=TZ)

RULES = {
    "count": 'id: buyers\ntrigger: {schedule: "0 10 * * *"}\nfire: every_time\n'
             "audience: count(order_paid) >= 2\nactions:\n  - tag: {add: a}\n",
    "last": 'id: lapsed\ntrigger: {schedule: "0 10 * * *"}\nfire: every_time\n'
            "audience: days_since(last(order_paid)) >= 7 and sum(order_paid.amount) > 50\n"
            "actions:\n  - tag: {add: b}\n",
    "segment": 'id: valued\ntrigger: {schedule: "0 10 * * *"}\nfire: every_time\n'
               'audience: rfm.segment is not null and lifecycle == "active"\n'
               "actions:\n  - tag: {add: c}\n",
}


def events() -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for i in range(12):
        for k in range(i % 4):
            out.append((f"u{i}", "order_paid", T - timedelta(days=3 * i + k), 1000 * (i + k),
                        None))
        out.append((f"u{i}", "checkin", T - timedelta(days=i * 5), None, None))
    out.append(("u1", "order_paid", T, 99_999, None))  # at T: invisible
    return out


def matched(result: Any) -> dict[str, list[str]]:
    return {r.rule_id: sorted(d.user_id for d in r.decisions) for r in result.rules}


def test_rules_planned_together_match_each_rule_alone(tmp_path: Path) -> None:
    make_rule_project(tmp_path, RULES)
    proj, store = load_rows(tmp_path, [{"user_id": f"u{i}", "signup_at": T - timedelta(days=60)}
                                       for i in range(12)], events())
    with store:
        together = matched(plan(proj, store, T))
        alone = {rid: matched(plan(proj, store, T, [rid]))[rid]
                 for rid in ("buyers", "lapsed", "valued")}
        left = store.conn.execute("SELECT name FROM temp.sqlite_master WHERE type = 'table' "
                                  "AND name LIKE 'zl_act%'").fetchall()
    assert together == alone
    assert together["buyers"] == ["u10", "u11", "u2", "u3", "u6", "u7"]
    assert together["lapsed"] and together["valued"]
    assert left == []  # activity and summaries are dropped when plan returns


def test_rfm_scores_are_ranked_only_when_a_rule_reads_them(tmp_path: Path) -> None:
    make_rule_project(tmp_path, RULES)
    assert not _reads_rfm_scores(load_project(tmp_path))
    (tmp_path / "rules" / "score.yaml").write_text(
        'id: top\ntrigger: {schedule: "0 10 * * *"}\naudience: rfm.r >= 4\n'
        "actions:\n  - tag: {add: d}\n", "utf-8")
    proj = load_project(tmp_path)
    assert _reads_rfm_scores(proj)
    _, store = load_rows(tmp_path, [{"user_id": f"u{i}"} for i in range(12)], events())
    with store:
        top = matched(plan(proj, store, T, ["top"]))["top"]
        scores = dict(store.conn.execute("SELECT user_id, r FROM temp.rfm"))
    assert top and top == sorted(u for u, r in scores.items() if r >= 4)
