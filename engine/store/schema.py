"""Tables, indexes and versioned migrations.

Two kinds of migration are recorded in `schema_migrations`, each with a version number:
- engine migrations, defined here in order; a database that holds one this code does not know
  was written by a newer engine and is refused;
- data-model migrations, made when `datamodel.yaml` gains a user attribute (a typed column is
  added to `users`) or an event type (a row in `event_types`).
A user attribute whose type changed cannot be migrated in place and is refused with a hint.
"""
from __future__ import annotations

import sqlite3
from typing import Sequence

import sqlite_utils

from ..config import DataModel
from ..errors import CannotRun
from .dialect import SQLITE

# The covering index for per-user, per-type, time-windowed aggregates (count, sum, last, RFM).
EVENTS_INDEX = "events_type_user_ts"
EVENTS_INDEX_SQL = (f"CREATE INDEX IF NOT EXISTS {EVENTS_INDEX} "
                    "ON events(type_id, user_id, ts, amount_fen)")

def state_tables() -> list[str]:
    """The engine's own tables as this version writes them (rule state and the ledger)."""
    from .ledger import LEDGER_TABLES
    from .queries import STATE_TABLES

    return [*STATE_TABLES, *LEDGER_TABLES]


def _state_tables_0003() -> list[str]:
    from .ledger import LEDGER_TABLES_0003
    from .queries import STATE_TABLES

    return [*STATE_TABLES, *LEDGER_TABLES_0003]


def _leaner_ledger() -> tuple[str, ...]:
    from .ledger import MIGRATION_0007

    return MIGRATION_0007


def _event_summary() -> tuple[str, ...]:
    from .event_summary import MIGRATION

    return MIGRATION


def _consent_accepts() -> tuple[str, ...]:
    from .consent import MIGRATION

    return MIGRATION


def _report_indexes() -> list[str]:
    from .report_sql import REPORT_INDEXES

    return list(REPORT_INDEXES)


ENGINE_MIGRATIONS: Sequence[tuple[str, Sequence[str]]] = (
    ("0001 base tables", (
        """CREATE TABLE event_types (
               type_id INTEGER PRIMARY KEY,
               name TEXT NOT NULL UNIQUE)""",
        """CREATE TABLE user_attributes (
               name TEXT PRIMARY KEY,
               type TEXT NOT NULL)""",
        """CREATE TABLE users (
               user_id TEXT NOT NULL PRIMARY KEY)""",
        """CREATE TABLE user_list_items (
               attr TEXT NOT NULL,
               value NOT NULL,
               user_id TEXT NOT NULL,
               PRIMARY KEY (attr, value, user_id)) WITHOUT ROWID""",
        # Keyed by event_id (given, or "h:" + a content hash): the key makes re-ingest a
        # no-op, and ids that grow with time append to the table rather than scatter.
        """CREATE TABLE events (
               event_id TEXT NOT NULL PRIMARY KEY,
               user_id TEXT NOT NULL,
               type_id INTEGER NOT NULL,
               ts INTEGER NOT NULL,
               amount_fen INTEGER,
               props TEXT) WITHOUT ROWID""",
        EVENTS_INDEX_SQL,
    )),
    ("0002 indexes for rule evaluation", (
        # point facts for one user (explain, event triggers): every event of a user by time
        "CREATE INDEX IF NOT EXISTS events_user_ts ON events(user_id, ts)",
        # due-time index for event triggers: the events of one type in (last tick, T]
        "CREATE INDEX IF NOT EXISTS events_type_ts ON events(type_id, ts)",
    )),
    ("0003 rule state and delivery ledger", tuple(_state_tables_0003())),
    ("0004 report indexes", tuple(_report_indexes())),
    # subscription-consent accepts per (user, ts), kept by triggers on events
    ("0005 consent accepts", _consent_accepts()),
    # per-user, per-event-type count, first/last ts and amount, kept after each ingest batch
    ("0006 event summary", _event_summary()),
    # fewer indexes on fires and outbox, one copy of each action's JSON (engine/store/ledger.py)
    ("0007 leaner ledger", _leaner_ledger()),
)


def _applied(conn: sqlite3.Connection) -> list[tuple[int, str, str]]:
    conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                        version INTEGER PRIMARY KEY,
                        kind TEXT NOT NULL,
                        name TEXT NOT NULL)""")
    return [(int(v), str(k), str(n)) for v, k, n in
            conn.execute("SELECT version, kind, name FROM schema_migrations ORDER BY version")]


def _record(conn: sqlite3.Connection, kind: str, name: str) -> None:
    conn.execute("INSERT INTO schema_migrations(version, kind, name) "
                 "VALUES ((SELECT COALESCE(MAX(version), 0) + 1 FROM schema_migrations), ?, ?)",
                 (kind, name))


def migrate(conn: sqlite3.Connection, datamodel: DataModel) -> list[str]:
    """Bring the schema up to date with this engine and the data model; returns what was done.

    Runs in one transaction: a failure leaves the database as it was.
    """
    done: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        applied = _applied(conn)
        engine_done = [n for _, k, n in applied if k == "engine"]
        known = [n for n, _ in ENGINE_MIGRATIONS]
        unknown = [n for n in engine_done if n not in known]
        if unknown:
            raise CannotRun(f"the database was written by a newer engine (migration `{unknown[0]}`)",
                            hint="upgrade zailai, or use another --db")
        for name, statements in ENGINE_MIGRATIONS:
            if name in engine_done:
                continue
            for sql in statements:
                conn.execute(sql)
            _record(conn, "engine", name)
            done.append(name)
        done.extend(_sync_datamodel(conn, datamodel))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return done


def _sync_datamodel(conn: sqlite3.Connection, datamodel: DataModel) -> list[str]:
    done: list[str] = []
    db = sqlite_utils.Database(conn)
    columns = set(db["users"].columns_dict)
    stored = dict(conn.execute("SELECT name, type FROM user_attributes").fetchall())
    for name, field in datamodel.user.items():
        declared = str(field.type)
        if name in stored:
            if stored[name] != declared:
                raise CannotRun(
                    f"user attribute `{name}` is stored as {stored[name]} but datamodel.yaml now "
                    f"declares {declared}",
                    hint="a column cannot change type in place: add a new attribute under another "
                         "name, or ingest into a new database (--db)")
            continue
        if name not in columns:
            conn.execute(f"ALTER TABLE users ADD COLUMN {SQLITE.ident(name)} "
                         f"{SQLITE.column_type(field.type)}")
        conn.execute("INSERT INTO user_attributes(name, type) VALUES (?, ?)", (name, declared))
        what = f"add user attribute {name} ({declared})"
        _record(conn, "datamodel", what)
        done.append(what)
    types = {r[0] for r in conn.execute("SELECT name FROM event_types")}
    for name in datamodel.events:
        if name not in types:
            conn.execute("INSERT INTO event_types(name) VALUES (?)", (name,))
            what = f"add event type {name}"
            _record(conn, "datamodel", what)
            done.append(what)
    return done


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(row[0])
