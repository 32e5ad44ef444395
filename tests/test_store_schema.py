"""The store's schema: versioned migrations, data-model migrations, opening the database."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.config import FieldType, build_datamodel
from engine.errors import CannotRun
from engine.store import SQLITE, open_store, resolve_db_path
from engine.store.schema import ENGINE_MIGRATIONS

BASE = {"user": {"tier": {"type": "string"}, "tags": {"type": "list<string>"}},
        "events": {"order_paid": {}}}


def model(extra_user: dict | None = None, extra_events: dict | None = None):  # type: ignore[no-untyped-def]
    data = {"user": dict(BASE["user"], **(extra_user or {})),
            "events": dict(BASE["events"], **(extra_events or {}))}
    return build_datamodel(data).value


def migrations(path: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT version, kind, name FROM schema_migrations "
                            "ORDER BY version").fetchall()


def test_new_database_records_every_migration(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with open_store(db, model()) as store:
        assert store.schema_version() == len(migrations(db))
    names = [(k, n) for _, k, n in migrations(db)]
    assert names[:len(ENGINE_MIGRATIONS)] == [("engine", n) for n, _ in ENGINE_MIGRATIONS]
    assert ("datamodel", "add user attribute tier (string)") in names
    assert ("datamodel", "add event type order_paid") in names
    with open_store(db, model()) as store:  # reopening changes nothing
        assert store.migrations == ()
    assert len(migrations(db)) == len(names)


def test_a_new_attribute_and_event_type_are_migrated_in(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    open_store(db, model()).close()
    grown = model({"points": {"type": "number"}, "vip_until": {"type": "timestamp"}},
                  {"checkin": {}})
    with open_store(db, grown) as store:
        assert store.migrations == ("add user attribute points (number)",
                                    "add user attribute vip_until (timestamp)",
                                    "add event type checkin")
        cols = {r[1]: r[2] for r in store.conn.execute("PRAGMA table_info(users)")}
        assert cols["points"] == "NUMERIC" and cols["vip_until"] == "INTEGER"
        assert set(store.type_ids) == {"order_paid", "checkin"}


def test_a_changed_attribute_type_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    open_store(db, model()).close()
    changed = build_datamodel({"user": {"tier": {"type": "number"}}}).value
    with pytest.raises(CannotRun, match="stored as string"):
        open_store(db, changed)


def test_a_database_from_a_newer_engine_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    open_store(db, model()).close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_migrations(version, kind, name) "
                     "VALUES (999, 'engine', '9999 from the future')")
    with pytest.raises(CannotRun, match="newer engine"):
        open_store(db, model())


def test_indexes_serve_per_user_per_type_windows(tmp_path: Path) -> None:
    with open_store(tmp_path / "t.db", model()) as store:
        plan = " ".join(r[3] for r in store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT user_id, COUNT(*), MAX(ts), SUM(amount_fen) FROM events "
            "WHERE type_id = 1 AND ts >= 0 AND ts < 10 GROUP BY user_id"))
        point = " ".join(r[3] for r in store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM events WHERE type_id = 1 AND user_id = 'u1' "
            "AND ts >= 0 AND ts < 10"))
    assert "COVERING INDEX events_type_user_ts" in plan and "TEMP B-TREE" not in plan
    assert "COVERING INDEX events_type_user_ts (type_id=? AND user_id=? AND ts>? AND ts<?)" \
        in point.replace(">=", ">")


def test_resolve_db_path(tmp_path: Path) -> None:
    assert resolve_db_path(tmp_path, "engine.db") == tmp_path / "engine.db"
    assert resolve_db_path(tmp_path, "engine.db", "/abs/x.db") == Path("/abs/x.db")
    assert resolve_db_path(tmp_path, "data/e.db") == tmp_path / "data" / "e.db"
    assert resolve_db_path(tmp_path, "sqlite:///rel.db") == tmp_path / "rel.db"
    assert resolve_db_path(tmp_path, "sqlite:////abs/y.db") == Path("/abs/y.db")
    with pytest.raises(CannotRun, match="not supported"):
        resolve_db_path(tmp_path, "postgresql://localhost/engine")


def test_missing_directory_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(CannotRun, match="no directory"):
        open_store(tmp_path / "nope" / "t.db", model())


@pytest.mark.parametrize("name", ["Tier", "1x", "a-b", 'x"; DROP TABLE users; --', ""])
def test_dialect_refuses_anything_but_plain_names(name: str) -> None:
    with pytest.raises(CannotRun):
        SQLITE.ident(name)


def test_dialect_column_types() -> None:
    assert SQLITE.ident("tier") == '"tier"'
    assert SQLITE.column_type(FieldType("money")) == "INTEGER"
    assert SQLITE.column_type(FieldType("list", "string")) == "TEXT"


def test_the_leaner_ledger_migration_keeps_every_fire_and_outbox_item(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database from before "0007 leaner ledger" (fires with a second unique index, outbox
    items each carrying their action's JSON) keeps every row, rowid and spec across it."""
    import orjson

    from engine.store import ledger, schema

    db = tmp_path / "t.db"
    names = [n for n, _ in ENGINE_MIGRATIONS]
    monkeypatch.setattr(schema, "ENGINE_MIGRATIONS",
                        ENGINE_MIGRATIONS[:names.index("0007 leaner ledger")])
    specs = [orjson.dumps({"kind": "coupon", "stock": "S"}).decode(),
             orjson.dumps({"kind": "message", "template": "t", "data": {"a": "券"}}).decode()]
    with open_store(db, model()) as store:
        fires = [(ledger.fire_id("r", u, "o1"), "r", u, "o1", "fire", None, None, None, 10, 10,
                  "h", "") for u in ("u1", "u2")]
        store.conn.executemany("INSERT INTO fires VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", fires)
        store.conn.executemany(
            "INSERT INTO outbox(item_id, fire_id, step, kind, channel, user_id, spec, due_at, "
            "state, next_at, updated_at) VALUES (?, ?, ?, ?, '', ?, ?, 5, ?, 5, 5)",
            [(ledger.item_id(f[0], step), f[0], step, "coupon" if step == 0 else "message",
              f[2], specs[step], "sent" if step == 0 else "pending")
             for f in fires for step in (0, 1)])
        before_fires = store.conn.execute("SELECT rowid, * FROM fires ORDER BY rowid").fetchall()
    monkeypatch.undo()
    with open_store(db, model()) as store:
        assert store.migrations == ("0007 leaner ledger",)
        conn = store.conn
        assert conn.execute("SELECT rowid, * FROM fires ORDER BY rowid").fetchall() == before_fires
        indexes = {n for (n,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN "
            "('fires', 'outbox')")}
        assert indexes == {"sqlite_autoindex_fires_1", "fires_user_rule", "fires_tick",
                           "sqlite_autoindex_outbox_1", "outbox_ready"}
        assert conn.execute("SELECT COUNT(*) FROM outbox_specs").fetchone()[0] == 2
        ready = ledger.ready_items(conn, 100)  # step 1 items: step 0 was sent
        assert sorted((i.fire_id, i.step, i.spec["data"]["a"]) for i in ready) == \
            sorted((f[0], 1, "券") for f in fires)
        # the fire's primary key still makes committing the same key again a no-op
        f = fires[0]
        span = ledger.insert_fires(conn, "r", 11, "h2", "",
                                   [(f[0], f[2], f[3], f[4], f[5], f[6], f[7], f[9])])
        assert span.count == 0


def test_the_leaner_ledger_migration_turns_reserved_coupons_into_budget_counters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.store import ledger, schema

    db = tmp_path / "t.db"
    names = [n for n, _ in ENGINE_MIGRATIONS]
    monkeypatch.setattr(schema, "ENGINE_MIGRATIONS",
                        ENGINE_MIGRATIONS[:names.index("0007 leaner ledger")])
    with open_store(db, model()) as store:
        store.conn.executemany("INSERT INTO coupon_reserved VALUES (?, ?, ?)",
                               [("i1_0", "A", 1000), ("i2_0", "A", 1000), ("i3_0", "B", 550)])
    monkeypatch.undo()
    with open_store(db, model()) as store:
        assert ledger.coupons_committed(store.conn, "A") == (2, 2000)
        assert ledger.coupons_committed(store.conn, "B") == (1, 550)
        assert ledger.coupons_committed(store.conn, "C") == (0, 0)
        assert store.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'coupon_reserved'"
                                  ).fetchone() is None
