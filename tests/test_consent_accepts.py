"""consent_accepts: the accepts of subscription messages, kept by triggers on `events`.

The policy counts a user's accepts per template before T from this table instead of reading
the JSON props of every `subscribe_authorized` event on each tick; these tests check that the
table always equals what the events say, whichever way events are written, and that counts
stay exact for any T and after a 43101 zeroing.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from store_helpers import load_rows, make_rule_project, run_ingest, write_jsonl

from engine.project import load_project
from engine.store import ledger, open_project_store
from engine.timeutil import to_micros

TZ = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 11, 20, 10, 0, tzinfo=TZ)
RULE = """
id: winback
trigger: {schedule: "0 10 * * *"}
audience: days_since(last(order_paid)) >= 7
actions:
  - message:
      channel: wechat_subscribe
      template: coupon_arrival
      data: {thing1: 券, amount2: 10元, date3: "2026-12-01", thing4: 回来看看}
"""


def accept(uid: str, days_before: float, template: str | None = "coupon_arrival"
           ) -> tuple[Any, ...]:
    props = {"template": template} if template is not None else None
    return (uid, "subscribe_authorized", T - timedelta(days=days_before), None, props)


def from_events(store: Any) -> list[tuple[Any, ...]]:
    """What consent_accepts must hold (its templates), derived directly from the events."""
    return store.conn.execute(
        "SELECT json_extract(e.props, '$.template'), e.user_id, e.ts, e.event_id FROM events e "
        "JOIN event_types t ON t.type_id = e.type_id WHERE t.name = 'subscribe_authorized' "
        "AND json_extract(e.props, '$.template') IS NOT NULL ORDER BY 1, 2, 3, 4").fetchall()


def grants(store: Any) -> list[tuple[Any, ...]]:
    return store.conn.execute("SELECT json_extract(props, '$.template'), user_id, ts, event_id "
                              "FROM consent_accepts WHERE json_extract(props, '$.template') "
                              "IS NOT NULL ORDER BY 1, 2, 3, 4").fetchall()


EVENTS = [accept("a", 9), accept("a", 3), accept("a", -1), accept("b", 2, "order_paid"),
          accept("b", 1, None), ("b", "order_paid", T - timedelta(days=8), 100, None),
          ("c", "checkin", T - timedelta(days=1), None, None)]


def test_inserts_deletes_and_updates_keep_the_table_equal_to_the_events(tmp_path: Path) -> None:
    make_rule_project(tmp_path, {"r": RULE})
    _, store = load_rows(tmp_path, [{"user_id": u} for u in "abc"], EVENTS)
    with store:
        assert len(grants(store)) == 4 and grants(store) == from_events(store)
        # the same events again: INSERT OR IGNORE writes no row, so no trigger fires
        rows = store.conn.execute("SELECT event_id, user_id, type_id, ts, amount_fen, props "
                                  "FROM events").fetchall()
        with store.transaction():
            assert store.insert_events(rows) == 0
        assert len(grants(store)) == 4
        with store.transaction():
            store.conn.execute("DELETE FROM events WHERE event_id = 'e0'")
            store.conn.execute("UPDATE events SET ts = ts - 1 WHERE event_id = 'e1'")
            store.conn.execute("UPDATE events SET props = ? WHERE event_id = 'e4'",
                               (json.dumps({"template": "late"}),))
        assert len(grants(store)) == 4 and grants(store) == from_events(store)


def test_re_ingesting_a_file_never_double_counts(tmp_path: Path) -> None:
    make_rule_project(tmp_path, {"r": RULE})
    proj = load_project(tmp_path)
    rows = [{"event_id": f"c{i}", "user_id": f"u{i % 3}", "type": "subscribe_authorized",
             "ts": (T - timedelta(hours=i)).isoformat(), "props": {"template": "coupon_arrival"}}
            for i in range(20)]
    rows.append({"event_id": "o1", "user_id": "u1", "type": "order_paid",
                 "ts": T.isoformat(), "amount": 10})
    path = write_jsonl(tmp_path / "events.jsonl", rows)
    first = run_ingest(proj, "events", path)
    second = run_ingest(proj, "events", path)
    assert first.exit_code == 0 and second.exit_code == 0
    with open_project_store(proj) as store:
        assert len(grants(store)) == 20 and grants(store) == from_events(store)
        assert store.count_events() == 21


def test_the_migration_fills_the_table_from_stored_events(tmp_path: Path) -> None:
    """A database written before the table existed: opening it backfills every accept."""
    make_rule_project(tmp_path, {"r": RULE})
    proj, store = load_rows(tmp_path, [{"user_id": u} for u in "abc"], EVENTS)
    with store:
        for sql in ("DROP TRIGGER consent_accepts_insert", "DROP TRIGGER consent_accepts_delete",
                    "DROP TRIGGER consent_accepts_update", "DROP TABLE consent_accepts",
                    "DELETE FROM schema_migrations WHERE name = '0005 consent accepts'"):
            store.conn.execute(sql)
    with open_project_store(proj) as store:
        assert "0005 consent accepts" in store.migrations
        assert len(grants(store)) == 4 and grants(store) == from_events(store)


def test_counts_are_exact_for_any_t_and_after_a_zeroing(tmp_path: Path) -> None:
    make_rule_project(tmp_path, {"r": RULE})
    events = [accept("a", d) for d in (9, 5, 2, 0, -1)] + [accept("b", 4)]
    _, store = load_rows(tmp_path, [{"user_id": u} for u in "abc"], events)
    type_id = store.type_ids["subscribe_authorized"]
    with store:
        ledger.ensure_ledger(store.conn)
        ledger.load_candidates(store.conn, ["a", "b", "c"])

        def count_at(days_before: float) -> dict[str, int]:
            at = to_micros(T - timedelta(days=days_before))
            return ledger.bulk_consent(store.conn, type_id, "coupon_arrival", at)[0]

        assert count_at(0) == {"a": 3, "b": 1}  # the accept exactly at T is not visible
        assert count_at(-2) == {"a": 5, "b": 1}
        assert count_at(5) == {"a": 1}
        assert count_at(9) == {}
        ledger.zero_consent(store.conn, "a", "coupon_arrival", to_micros(T - timedelta(days=5)))
        assert count_at(0) == {"a": 1, "b": 1}  # only the accept after the zeroing is left
        assert ledger.bulk_consent(store.conn, type_id, "other", to_micros(T))[0] == {}


def test_a_bulk_load_fills_the_table_set_wise_and_restores_the_triggers(tmp_path: Path) -> None:
    """Into an empty events table ingest loads in bulk: the triggers are dropped for the load
    and the accepts added in one statement afterwards, in the same transaction; a later small
    load (not bulk) goes through the restored triggers."""
    make_rule_project(tmp_path, {"r": RULE})
    proj = load_project(tmp_path)
    rows = [{"event_id": f"c{i}", "user_id": f"u{i % 4}", "type": "subscribe_authorized",
             "ts": (T - timedelta(days=i)).isoformat(), "props": {"template": "coupon_arrival"}}
            for i in range(12)] + [{"event_id": "p1", "user_id": "u1", "type": "order_paid",
                                    "ts": T.isoformat(), "amount": 9.9}]
    with open_project_store(proj) as store:
        assert not store.has_events()
        triggers = sorted(n for (n,) in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"))
    assert len(triggers) == 3
    assert run_ingest(proj, "events", write_jsonl(tmp_path / "a.jsonl", rows)).exit_code == 0
    late = {"event_id": "late", "user_id": "u9", "type": "subscribe_authorized",
            "ts": T.isoformat(), "props": {"template": "coupon_arrival"}}
    assert run_ingest(proj, "events", write_jsonl(tmp_path / "b.jsonl", [late])).exit_code == 0
    with open_project_store(proj) as store:
        assert sorted(n for (n,) in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")) == triggers
        assert len(grants(store)) == 13 and grants(store) == from_events(store)
