"""Opening the database and writing to it.

`Store` wraps one SQLite connection in autocommit mode; writers run inside `transaction()`.
Bulk writes use plain `executemany` (sqlite-utils is used for schema introspection only: it is
several times slower for bulk inserts).
"""
from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping, Sequence

import orjson

from ..config import DataModel
from ..errors import CannotRun
from . import bulk as bulk_load
from . import event_summary, rfm_sql, schema, shard
from .bulk import BulkLoad
from .dialect import SQLITE, SqliteDialect

EventRow = tuple[str, str, int, int, "int | None", "str | None"]
# (event_id, user_id, type_id, ts micros UTC, amount fen or None, props JSON or None)

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA temp_store=FILE",  # big sorts (index builds) spill to disk, not to memory
    "PRAGMA cache_size=-262144",  # up to 256 MiB of page cache, allocated as needed
    "PRAGMA busy_timeout=10000",
)
_IN_CHUNK = 500  # bound values per IN (...) query


def resolve_db_path(root: Path, configured: str, override: str | None = None) -> Path:
    """`--db` / ENGINE_DB (override) else engine.yaml `database:`; relative to the project root.

    Accepts a path or an `sqlite:///path` URL; other URLs are not supported yet.
    """
    raw = override if override else configured
    if "://" in raw:
        scheme, _, rest = raw.partition("://")
        if scheme != "sqlite":
            raise CannotRun(f"database URL `{raw}` is not supported",
                            hint="only SQLite is available for now: give a file path")
        raw = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel, sqlite:////abs
        raw = raw or "engine.db"
    path = Path(os.path.expanduser(raw))
    return path if path.is_absolute() else root / path


@dataclass
class Store:
    """One open database. Not a frozen value: it owns a connection. Close it (or use `with`)."""

    conn: sqlite3.Connection
    path: Path
    datamodel: DataModel
    dialect: SqliteDialect = SQLITE
    type_ids: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    migrations: tuple[str, ...] = ()
    _shard_attached: bool = field(default=False, init=False, repr=False)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ---- reading ---------------------------------------------------------------------------
    def schema_version(self) -> int:
        return schema.schema_version(self.conn)

    def count_users(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM users").fetchone()[0])

    def count_events(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def has_events(self) -> bool:
        return self.conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None

    def user(self, user_id: str) -> dict[str, Any] | None:
        """One user's stored row (attributes in storage form), or None."""
        cur = self.conn.execute("SELECT * FROM users WHERE user_id = ?", (user_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return {d[0]: v for d, v in zip(cur.description, row)}

    def list_items(self, attr: str) -> list[tuple[Any, str]]:
        """(value, user_id) pairs of a list attribute, from the inverted table."""
        return [(v, u) for v, u in self.conn.execute(
            "SELECT value, user_id FROM user_list_items WHERE attr = ? ORDER BY value, user_id",
            (attr,))]

    def events(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """Events in storage form (ts micros, amount fen, props decoded), oldest first."""
        sql = ("SELECT e.event_id, e.user_id, t.name, e.ts, e.amount_fen, e.props FROM events e "
               "JOIN event_types t ON t.type_id = e.type_id")
        params: tuple[Any, ...] = ()
        if user_id is not None:
            sql += " WHERE e.user_id = ?"
            params = (user_id,)
        sql += " ORDER BY e.ts, e.event_id"
        return [{"event_id": i, "user_id": u, "type": t, "ts": ts, "amount_fen": a,
                 "props": orjson.loads(p) if p else {}}
                for i, u, t, ts, a, p in self.conn.execute(sql, params)]

    # ---- RFM ---------------------------------------------------------------------------------
    def materialise_rfm(self, at_us: int, event_type: str, segment_names: Sequence[str],
                        scores: bool = True, source: str | None = None) -> str:
        """Build the RFM temp table (keyed by user_id) as of `at_us` from `event_type` events
        with ts < at; returns the table's name for joins. Rebuilt on every call. Without
        `scores`, r, f and m are NULL (cheaper, for callers that read only the segment);
        `source`: the tick's per-user summary of `event_type` (audience.materialise_summary)."""
        type_id = self.type_ids.get(event_type)
        if type_id is None:
            raise CannotRun(f"the purchase event `{event_type}` is not an event type in "
                            "datamodel.yaml", hint="set purchase_event in engine.yaml")
        return rfm_sql.materialise(self.conn, at_us, type_id, segment_names, scores, source)

    def rfm_totals(self) -> rfm_sql.RfmTotals:
        return rfm_sql.totals(self.conn)

    def rfm_rows(self) -> list[tuple[str, int, int, int, int, int, int, str]]:
        return rfm_sql.rows(self.conn)

    # ---- writing (call inside transaction()) -----------------------------------------------
    def insert_events(self, rows: Sequence[EventRow], summary: bool = True) -> int:
        """Insert events, ignoring those whose event_id is already stored; returns how many
        were new (`rowcount`: rows written by triggers on events are not counted). The stored
        event summary is brought up to date with them, unless `summary` is False (a bulk
        load, which rebuilds it once at the end)."""
        added = int(self.conn.executemany(
            "INSERT OR IGNORE INTO events(event_id, user_id, type_id, ts, amount_fen, props) "
            "VALUES (?, ?, ?, ?, ?, ?)", rows).rowcount)
        if summary:
            event_summary.refresh_batch(self.conn, rows, added)
        return added

    def insert_event_shard(self, image: bytes,
                           bulk: "BulkLoad | None" = None) -> tuple[int, int]:
        """Insert the events of a shard (`shard.pack`'s image of checked rows, made by an
        ingest worker), all in C: returns (events new, users created). Same semantics as
        `ensure_users` then `insert_events` on its rows: events already stored, or earlier in
        the shard, with the same event_id are ignored. In a bulk load (`bulk`) users, consent
        accepts and the summary are left to `end_bulk_load` (see engine/store/bulk.py)."""
        if not self._shard_attached:
            self.conn.execute(f"ATTACH ':memory:' AS {shard.SCHEMA}")
            self._shard_attached = True
        self.conn.deserialize(image, name=shard.SCHEMA)
        src = f"{shard.SCHEMA}.events"
        created = 0
        if bulk is None:
            created = int(self.conn.execute(
                f"INSERT OR IGNORE INTO users(user_id) SELECT user_id FROM {shard.SCHEMA}.users"
            ).rowcount)
        total = int(self.conn.execute(f"SELECT COUNT(*) FROM {src}").fetchone()[0])
        added = int(self.conn.execute(
            "INSERT OR IGNORE INTO events(event_id, user_id, type_id, ts, amount_fen, props) "
            f"SELECT event_id, user_id, type_id, ts, amount_fen, props FROM {src} "
            "ORDER BY rowid").rowcount)
        if bulk is None:
            event_summary.refresh_from(self.conn, src, added, total)
        else:
            bulk_load.after_shard(self.conn, bulk, shard.SCHEMA, added, total)
        return added, created

    def begin_bulk_load(self) -> "BulkLoad":
        """Before a load of events that is large next to the stored ones: drop the events
        indexes and suspend the triggers (see engine/store/bulk.py). Inside a transaction."""
        return bulk_load.begin(self.conn)

    def insert_bulk_events(self, rows: Sequence[EventRow], user_ids: Iterable[str],
                           bulk: "BulkLoad") -> int:
        """`insert_events` inside a bulk load, for rows checked in this process: users and
        the summary are left to the end. Returns how many were new."""
        added = self.insert_events(rows, summary=False)
        bulk_load.after_rows(self.conn, bulk, user_ids, added, len(rows))
        return added

    def end_bulk_load(self, bulk: "BulkLoad") -> int:
        """Build the indexes, create the users, add the consent accepts and recreate the
        triggers; returns how many users were created. The caller rebuilds the summary."""
        return bulk_load.end(self.conn, bulk)

    def ensure_users(self, user_ids: Iterable[str]) -> int:
        """Create the users that do not exist yet (with no attributes); returns how many."""
        return int(self.conn.executemany("INSERT OR IGNORE INTO users(user_id) VALUES (?)",
                                         ((u,) for u in user_ids)).rowcount)

    def upsert_users(self, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert or update users; each row is (user_id, *values for columns). Columns not named
        keep their stored values. List attributes also update the inverted list-items table.
        Returns the number of users created or changed (identical rows change nothing)."""
        if not rows:
            return 0
        q = self.dialect.ident
        lists = [i for i, c in enumerate(columns) if self.datamodel.user[c].type.base == "list"]
        old: dict[str, tuple[Any, ...]] = {}
        if lists:
            old = self._old_values([columns[i] for i in lists], [r[0] for r in rows])
        before = self.conn.total_changes
        if columns:
            cols = ", ".join(q(c) for c in columns)
            sets = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in columns)
            differs = " OR ".join(f"users.{q(c)} IS NOT excluded.{q(c)}" for c in columns)
            self.conn.executemany(
                f"INSERT INTO users(user_id, {cols}) VALUES (?{', ?' * len(columns)}) "
                f"ON CONFLICT(user_id) DO UPDATE SET {sets} WHERE {differs}", rows)
        else:
            self.conn.executemany("INSERT OR IGNORE INTO users(user_id) VALUES (?)",
                                  [r[:1] for r in rows])
        changed = self.conn.total_changes - before
        if lists:
            gone: list[tuple[str, Any, str]] = []
            new: list[tuple[str, Any, str]] = []
            for r in rows:
                was = old.get(r[0])
                for k, i in enumerate(lists):
                    attr = columns[i]
                    before_items = set(orjson.loads(was[k])) if was and was[k] else set()
                    now_items = set(orjson.loads(r[i + 1])) if r[i + 1] else set()
                    gone.extend((attr, v, r[0]) for v in before_items - now_items)
                    new.extend((attr, v, r[0]) for v in now_items - before_items)
                old[r[0]] = tuple(r[i + 1] for i in lists)  # for a later row of the same user
            self.conn.executemany("DELETE FROM user_list_items WHERE attr = ? AND value = ? "
                                  "AND user_id = ?", gone)
            self.conn.executemany("INSERT OR IGNORE INTO user_list_items(attr, value, user_id) "
                                  "VALUES (?, ?, ?)", new)
        return changed

    def write_users(self, rows: Sequence[tuple[tuple[str, ...], tuple[Any, ...]]]) -> int:
        """Ingest's writer: rows are (columns, (user_id, *values)), each naming only some
        attributes. Users not stored yet are inserted in one statement; the others are upserted
        grouped by the columns they name, in an order that keeps each user's rows in sequence.
        Returns the number of users created or changed."""
        existing = self._existing([r[1][0] for r in rows])
        names = tuple(self.datamodel.user)
        lists = [n for n in names if self.datamodel.user[n].type.base == "list"]
        fresh: list[tuple[Any, ...]] = []
        rest: list[tuple[tuple[str, ...], tuple[Any, ...]]] = []
        for cols, vals in rows:
            if vals[0] in existing:
                rest.append((cols, vals))
                continue
            existing.add(vals[0])
            given = dict(zip(cols, vals[1:]))
            fresh.append((vals[0], *(given.get(n) for n in names)))
        changed = 0
        if fresh:
            q = self.dialect.ident
            self.conn.executemany(
                f"INSERT INTO users(user_id{''.join(', ' + q(n) for n in names)}) "
                f"VALUES (?{', ?' * len(names)})", fresh)
            changed += len(fresh)
            for attr in lists:
                i = names.index(attr) + 1
                self.conn.executemany(
                    "INSERT OR IGNORE INTO user_list_items(attr, value, user_id) VALUES (?, ?, ?)",
                    [(attr, v, r[0]) for r in fresh if r[i] for v in orjson.loads(r[i])])
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        pending: set[str] = set()
        for cols, vals in rest:
            if vals[0] in pending:  # a second row for a user: write what came before first
                changed += sum(self.upsert_users(c, g) for c, g in groups.items())
                groups, pending = {}, set()
            groups.setdefault(cols, []).append(vals)
            pending.add(vals[0])
        changed += sum(self.upsert_users(c, g) for c, g in groups.items())
        return changed

    def _existing(self, user_ids: list[str]) -> set[str]:
        out: set[str] = set()
        unique = list(dict.fromkeys(user_ids))
        for i in range(0, len(unique), _IN_CHUNK):
            part = unique[i:i + _IN_CHUNK]
            out.update(r[0] for r in self.conn.execute(
                f"SELECT user_id FROM users WHERE user_id IN {self.dialect.in_list(len(part))}",
                part))
        return out

    def _old_values(self, columns: list[str], user_ids: list[str]) -> dict[str, tuple[Any, ...]]:
        cols = ", ".join(self.dialect.ident(c) for c in columns)
        out: dict[str, tuple[Any, ...]] = {}
        unique = list(dict.fromkeys(user_ids))
        for i in range(0, len(unique), _IN_CHUNK):
            part = unique[i:i + _IN_CHUNK]
            for row in self.conn.execute(f"SELECT user_id, {cols} FROM users WHERE user_id IN "
                                         f"{self.dialect.in_list(len(part))}", part):
                out[row[0]] = tuple(row[1:])
        return out

    def temp_store(self, where: str) -> None:
        """Where SQLite keeps statement journals and sort spills: "MEMORY" while ingest writes
        rows one statement at a time, "FILE" (the default) for index builds, whose sorts may
        be larger than memory. Every INSERT into a table with a trigger (events has one) opens
        a statement journal; on a temp file that cost about 3.5 KB of writes and as much CPU
        as the insert itself per event. Kept as it is when SQLite refuses to change it
        inside a transaction (a temporary table is open)."""
        try:
            self.conn.execute(f"PRAGMA temp_store={'MEMORY' if where == 'MEMORY' else 'FILE'}")
        except sqlite3.OperationalError:
            pass


def open_store(path: Path, datamodel: DataModel, *, create: bool = True) -> Store:
    """Open (creating when allowed) the database at `path`, migrated to the data model."""
    if not create and not path.is_file():
        raise CannotRun(f"no database at {path}", hint="ingest data first: `engine ingest ...`")
    if not path.parent.is_dir():
        raise CannotRun(f"cannot create the database {path}: no directory {path.parent}")
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        for pragma in _PRAGMAS:
            conn.execute(pragma)
        done = schema.migrate(conn, datamodel)
        type_ids = dict(conn.execute("SELECT name, type_id FROM event_types").fetchall())
    except sqlite3.DatabaseError as exc:
        raise CannotRun(f"cannot open the database {path}: {exc}") from None
    return Store(conn, path, datamodel, SQLITE, MappingProxyType(type_ids), tuple(done))
