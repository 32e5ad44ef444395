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
