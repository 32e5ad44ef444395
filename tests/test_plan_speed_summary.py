"""The stored event summary (engine/store/event_summary.py) and what `plan` reads from it.

The summary is kept set-wise by ingest and rebuilt by the migration and after bulk loads; it
must always equal a recount of the events, and `plan` must decide exactly the same with it
(lifecycle, unwindowed aggregates, RFM) as from the events, at any T: before, at and after
stored events.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from store_helpers import load_rows, make_rule_project, run_ingest, write_jsonl

from engine import rfm as rfmlib
from engine.plan import Snapshot, plan
from engine.project import load_project
from engine.store import event_summary, open_project_store
from engine.store.facts import lazy_facts, load_facts
from engine.timeutil import to_micros

TZ = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 11, 20, 10, 0, tzinfo=TZ)

RULES = {
    "lc-new": 'id: lc-new\ntrigger: {every: 1h}\naudience: lifecycle == "new"\n',
    "lc-active": ('id: lc-active\ntrigger: {every: 1h}\n'
                  'audience: lifecycle == "active" and count(order_paid) >= 1\n'),
    "lc-sleeping": 'id: lc-sleeping\ntrigger: {every: 1h}\naudience: lifecycle == "sleeping"\n',
    "lc-churned": ('id: lc-churned\ntrigger: {every: 1h}\n'
                   'audience: lifecycle == "churned" or lifecycle == "new"\n'),
    "aggs": ('id: aggs\ntrigger: {every: 1h}\naudience: count(order_paid) >= 2 and '
             'days_since(last(order_paid)) >= 1 and sum(order_paid.amount) > 50\n'),
    "first": ('id: first\ntrigger: {every: 1h}\n'
              'audience: days_since(first(cart_add)) <= 3 or not exists(checkin)\n'),
    "exists": ('id: exists\ntrigger: {every: 1h}\n'
               'audience: exists(order_paid, 7d) and not exists(cart_add, 3d)\n'),
    "exists-or": ('id: exists-or\ntrigger: {every: 1h}\n'
                  'audience: exists(checkin, 30d) or lifecycle == "sleeping"\n'),
    "rfm": ('id: rfm\ntrigger: {every: 1h}\naudience: rfm.segment in '
            '["important_value", "general_develop", "important_keep"] and rfm.r >= 3\n'),
}
for _id, _text in RULES.items():
    RULES[_id] = _text + "actions: [{tag: {add: seen}}]\n"


def recount(conn: Any) -> list[tuple[Any, ...]]:
    return sorted(conn.execute(
        "SELECT type_id, user_id, COUNT(*), MIN(ts), MAX(ts), SUM(amount_fen) FROM events "
        "GROUP BY type_id, user_id UNION ALL "
        "SELECT 0, user_id, COUNT(*), MIN(ts), MAX(ts), NULL FROM events GROUP BY user_id"
    ).fetchall())


def stored(conn: Any) -> list[tuple[Any, ...]]:
    return sorted(conn.execute("SELECT type_id, user_id, n, first_ts, last_ts, amount "
                               "FROM event_summary").fetchall())


def event(i: int, user: str, typ: str, at: datetime, amount: float | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"event_id": f"e{i}", "user_id": user, "type": typ,
                           "ts": at.isoformat()}
    if amount is not None:
        row["amount"] = amount
    return row


@pytest.mark.parametrize("workers", [0, 2])
def test_ingest_keeps_the_summary_exact_batch_after_batch(tmp_path: Path, workers: int) -> None:
    """A bulk first load (rebuilt at the end), then small loads kept set-wise per batch, with
    only new events (their aggregates added) or with re-sent duplicates (recomputed): new
    users, events before, at and after T, amounts null or not. With workers the rows reach
    the writer as shards and the summary is kept in SQL (`refresh_from`)."""
    make_rule_project(tmp_path, {})
    proj = load_project(tmp_path)
    rnd = random.Random(7)
    types = ["order_paid", "cart_add", "checkin"]
    sent: list[dict[str, Any]] = []
    for load in range(5):
        rows = []
        for _ in range(40):
            i = len(sent) + len(rows)
            typ = rnd.choice(types)
            at = T + timedelta(hours=rnd.randint(-24 * 40, 48))
            amount = rnd.choice([None, 9.9, 120]) if typ == "order_paid" else None
            rows.append(event(i, f"u{rnd.randint(0, 12 + 3 * load)}", typ, at, amount))
        if load % 2 == 0:  # duplicates of earlier loads (the batch is then recomputed)
            rows += rnd.sample(sent, min(10, len(sent)))
        rows.append(event(10_000 + load, "u1", "checkin", T))  # exactly at T
        sent += rows
        result = run_ingest(proj, "events", write_jsonl(tmp_path / f"{load}.jsonl", rows),
                            workers=workers)
        assert result.exit_code == 0
        with open_project_store(proj) as store:
            assert stored(store.conn) == recount(store.conn)
            assert event_summary.is_fresh(store.conn)


def test_other_writers_leave_it_stale_until_rebuilt(tmp_path: Path) -> None:
    make_rule_project(tmp_path, {})
    proj, store = load_rows(tmp_path, [{"user_id": "a"}], [
        ("a", "order_paid", T - timedelta(days=2), 5000, None)])
    with store:
        # Store.insert_events (ingest, the daemon's /events) keeps it exact
        assert event_summary.is_fresh(store.conn) and stored(store.conn) == recount(store.conn)
        store.insert_events([("dup", "a", store.type_ids["order_paid"], to_micros(T), 1, None),
                             ("dup", "a", store.type_ids["order_paid"], to_micros(T), 1, None)])
        assert event_summary.is_fresh(store.conn) and stored(store.conn) == recount(store.conn)
        store.insert_events([("x0", "a", store.type_ids["order_paid"], to_micros(T), 7, None)],
                            summary=False)  # a bulk load's writes, before its rebuild
        assert not event_summary.is_fresh(store.conn)
        event_summary.rebuild(store.conn)
        assert event_summary.is_fresh(store.conn) and stored(store.conn) == recount(store.conn)
        store.conn.execute("INSERT INTO events VALUES ('x', 'a', ?, ?, 100, NULL)",
                           (store.type_ids["order_paid"], to_micros(T)))
        assert not event_summary.is_fresh(store.conn)


def test_the_migration_builds_it_for_stored_events(tmp_path: Path) -> None:
    make_rule_project(tmp_path, {})
    proj, store = load_rows(tmp_path, [{"user_id": "a"}, {"user_id": "b"}], [
        ("a", "order_paid", T - timedelta(days=2), 5000, None),
        ("a", "order_paid", T - timedelta(days=1), None, None),
        ("b", "checkin", T, None, None)])
    with store:  # a database from before the migration
        store.conn.execute("DROP TABLE event_summary")
        store.conn.execute("DROP TABLE event_summary_state")
        store.conn.execute("DELETE FROM schema_migrations WHERE name = '0006 event summary'")
    with open_project_store(proj) as store:
        assert event_summary.is_fresh(store.conn)
        assert stored(store.conn) == recount(store.conn)
        assert len(stored(store.conn)) == 4  # (order_paid, a), (checkin, b) and two activity rows


def random_data(seed: int) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    rnd = random.Random(seed)
    users = [{"user_id": f"u{i:02d}",
              "signup_at": rnd.choice([None, (T - timedelta(days=rnd.randint(0, 60))).isoformat(),
                                       (T + timedelta(days=1)).isoformat()])}
             for i in range(60)]
    boundaries = [timedelta(0), -timedelta(days=7), -timedelta(days=30), timedelta(hours=5)]
    events = []
    for u in users:
        for _ in range(rnd.randint(0, 8)):
            typ = rnd.choice(["order_paid", "order_paid", "cart_add", "checkin"])
            if rnd.random() < 0.2:
                at = T + rnd.choice(boundaries)  # exactly at T, T - 7d, T - 30d, after T
            else:
                at = T + timedelta(hours=rnd.randint(-24 * 50, 24 * 3))
            amount = rnd.choice([None, 1990, 50]) if typ == "order_paid" else None
            events.append((u["user_id"], typ, at, amount, None))
    return users, events


def decisions(result: Any) -> list[Any]:
    return [(r.rule_id, [(d.user_id, d.outcome, d.reason) for d in r.decisions])
            for r in result.rules]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_plan_decides_the_same_from_the_summary_and_from_the_events(
        tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    users, events = random_data(seed)
    make_rule_project(tmp_path, RULES)
    proj, store = load_rows(tmp_path, [{k: v for k, v in u.items() if v is not None}
                                       for u in users], events)
    with store:
        event_summary.rebuild(store.conn)
        instants = [T, T - timedelta(days=7), T - timedelta(days=30), T + timedelta(hours=5),
                    T + timedelta(days=4), T - timedelta(days=45), T - timedelta(microseconds=1)]
        for at in instants:
            fast = plan(proj, store, at, policy=False)
            with monkeypatch.context() as m:
                m.setattr(event_summary, "is_fresh", lambda conn: False)
                slow = plan(proj, store, at, policy=False)
            assert decisions(fast) == decisions(slow), at
        assert sum(r.matched for r in plan(proj, store, T, policy=False).rules) > 0


def test_the_summary_as_of_t_is_corrected_for_later_events(tmp_path: Path) -> None:
    """Few users with events at or after T: copied and corrected by seeks; many: refused, and
    the events are read instead."""
    make_rule_project(tmp_path, {})
    users = [{"user_id": f"u{i}"} for i in range(10)]
    events = [(f"u{i}", "order_paid", T - timedelta(days=i + 1), 100 * i or None, None)
              for i in range(10)]
    events += [("u0", "order_paid", T, 7, None), ("u1", "order_paid", T + timedelta(days=1), 9,
                                                  None)]
    proj, store = load_rows(tmp_path, users, events)
    with store:
        event_summary.rebuild(store.conn)
        conn, tid = store.conn, store.type_ids["order_paid"]

        def fill(at: datetime) -> list[tuple[Any, ...]] | None:
            conn.execute("DROP TABLE IF EXISTS temp.s")
            conn.execute("CREATE TEMP TABLE s (user_id TEXT PRIMARY KEY, n, first_ts, last_ts, "
                         "amount) WITHOUT ROWID")
            if not event_summary.as_of(conn, to_micros(at), tid, "s"):
                return None
            return sorted(conn.execute("SELECT * FROM s").fetchall())

        def truth(at: datetime) -> list[tuple[Any, ...]]:
            return sorted(conn.execute(
                "SELECT user_id, COUNT(*), MIN(ts), MAX(ts), SUM(amount_fen) FROM events "
                "WHERE type_id = ? AND ts < ? GROUP BY user_id", (tid, to_micros(at))).fetchall())

        assert fill(T) == truth(T)  # u0 and u1 corrected
        assert fill(T + timedelta(days=2)) == truth(T + timedelta(days=2))
        assert fill(T - timedelta(days=8)) is None  # most users bought later: refused


def test_lazy_facts_read_the_same_events_as_eager_ones(tmp_path: Path) -> None:
    users, events = random_data(4)
    make_rule_project(tmp_path, {})
    proj, store = load_rows(tmp_path, [{"user_id": u["user_id"]} for u in users], events)
    with store:
        for u in users[:20]:
            eager = load_facts(store.conn, proj.datamodel, u["user_id"])
            lazy = lazy_facts(store.conn, proj.datamodel, u["user_id"])
            for typ in ("order_paid", "checkin", "share", "cart_add"):
                assert list(lazy.events(typ)) == list(eager.events(typ))
            assert lazy.activity_bounds(to_micros(T)) == eager.activity_bounds(to_micros(T))
            assert lazy.by_type == eager.by_type


@pytest.mark.parametrize("scores", [True, False])
def test_rfm_from_the_summary_equals_rfm_from_the_events(tmp_path: Path, scores: bool) -> None:
    users, events = random_data(5)
    make_rule_project(tmp_path, {})
    proj, store = load_rows(tmp_path, [{"user_id": u["user_id"]} for u in users], events)
    with store:
        event_summary.rebuild(store.conn)
        for at in (T, T - timedelta(days=10)):
            rfmlib.materialise(store, at, "order_paid", scores=scores)
            direct = sorted(store.conn.execute("SELECT * FROM temp.rfm").fetchall())
            snap = Snapshot(proj, store, to_micros(at))
            summary = snap.summary(store.type_ids["order_paid"])
            rfmlib.materialise(store, at, "order_paid", scores=scores, source=summary)
            assert sorted(store.conn.execute("SELECT * FROM temp.rfm").fetchall()) == direct
            assert direct
            snap.drop_tables()


def test_an_ingest_repairs_a_summary_left_stale(tmp_path: Path) -> None:
    """Events written around the engine leave the summary behind; the next `engine ingest
    events` (even of events already stored) rebuilds it."""
    make_rule_project(tmp_path, {})
    proj, store = load_rows(tmp_path, [{"user_id": "a"}], [
        ("a", "order_paid", T - timedelta(days=2), 5000, None)])
    with store:
        store.conn.execute("INSERT INTO events VALUES ('x', 'a', ?, ?, 100, NULL)",
                           (store.type_ids["order_paid"], to_micros(T)))
        assert not event_summary.is_fresh(store.conn)
    rows = tmp_path / "again.jsonl"
    rows.write_text('{"event_id": "x", "user_id": "a", "type": "order_paid", '
                    f'"ts": "{T.isoformat()}", "amount": 1.00}}\n', encoding="utf-8")
    result = run_ingest(proj, "events", rows)
    assert result.files[0].duplicates == 1
    with open_project_store(proj) as store:
        assert event_summary.is_fresh(store.conn)
        assert stored(store.conn) == recount(store.conn)
