"""A scratch database for `engine backtest` and `engine pressure`.

The real database is ATTACHed read-only (`mode=ro`) under the name `src`; the engine's own
tables (fires, the cap ledger, consent uses, coupons, the outbox, rule ticks and on_enter
members) are created empty in a new temporary file that is the connection's `main` schema.
SQLite resolves an unqualified table name in `main` first, then in the attached databases, so
every existing query reads users and events from the real file and writes the ledger to the
scratch file. Nothing is copied (a backup of a 1.8 GB database takes longer than a day of
backtest), and the real file cannot be written: SQLite refuses any write to a read-only
attachment.
"""
from __future__ import annotations

import shutil
import sqlite3
import tempfile
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping
from urllib.parse import quote

from ..config import DataModel
from ..errors import CannotRun
from .db import Store
from .dialect import SQLITE

_PRAGMAS = (
    "PRAGMA main.journal_mode=MEMORY",  # a throwaway file: no WAL, no fsync
    "PRAGMA main.synchronous=OFF",
    "PRAGMA temp_store=FILE",
    "PRAGMA cache_size=-262144",
    "PRAGMA busy_timeout=10000",
)


# issue_coupons reads the coupon steps queued by one tick: without this the whole outbox
# (millions of items after a month of a large replay) would be scanned at every tick
_COUPON_STEPS_INDEX = "CREATE INDEX IF NOT EXISTS zl_outbox_queued ON outbox(kind, updated_at)"


def _src_problem(conn: sqlite3.Connection, datamodel: DataModel) -> str | None:
    """Why the real database cannot be read as it is (it needs a migration), or None."""
    from .schema import ENGINE_MIGRATIONS

    try:
        applied = {n for (n,) in conn.execute(
            "SELECT name FROM src.schema_migrations WHERE kind = 'engine'")}
        attrs = {n for (n,) in conn.execute("SELECT name FROM src.user_attributes")}
        types = {n for (n,) in conn.execute("SELECT name FROM src.event_types")}
    except sqlite3.DatabaseError:
        return "it has no engine schema"
    missing = [n for n, _ in ENGINE_MIGRATIONS if n not in applied]
    if missing:
        return f"migration `{missing[0]}` is not applied"
    for name in datamodel.user:
        if name not in attrs:
            return f"user attribute `{name}` of datamodel.yaml is not in it yet"
    for name in datamodel.events:
        if name not in types:
            return f"event type `{name}` of datamodel.yaml is not in it yet"
    return None


@contextmanager
def scratch_store(real: Path, datamodel: DataModel) -> Iterator[Store]:
    """A Store reading users and events from `real` (never written) with empty engine
    tables; the temporary file is deleted on exit."""
    from .schema import state_tables

    if not real.is_file():
        raise CannotRun(f"no database at {real}", hint="ingest data first: `engine ingest ...`")
    workdir = Path(tempfile.mkdtemp(prefix="zailai-scratch-"))
    conn: sqlite3.Connection | None = None
    try:
        try:
            conn = sqlite3.connect(str(workdir / "scratch.db"), isolation_level=None,
                                   check_same_thread=False, uri=True)  # for the `file:` below
            for pragma in _PRAGMAS:
                conn.execute(pragma)
            uri = "file:" + quote(str(real.resolve())) + "?mode=ro"
            conn.execute("ATTACH DATABASE ? AS src", (uri,))
            problem = _src_problem(conn, datamodel)
            for sql in state_tables():
                conn.execute(sql)  # unqualified CREATE: in main, shadowing src's
            conn.execute(_COUPON_STEPS_INDEX)
            type_ids = dict(conn.execute("SELECT name, type_id FROM src.event_types"))
        except sqlite3.DatabaseError as exc:
            raise CannotRun(f"cannot open the database {real} read-only: {exc}") from None
        if problem:
            raise CannotRun(f"the database {real} is not up to date: {problem}",
                            hint="run `engine plan` once (it migrates the database), then "
                                 "try again")
        yield Store(conn, real, datamodel, SQLITE, MappingProxyType(type_ids), ())
    finally:
        if conn is not None:
            conn.close()
        shutil.rmtree(workdir, ignore_errors=True)


def issue_coupons(conn: Any, T: int, stocks: Mapping[str, tuple[int, int]]) -> int:
    """Backtest stand-in for delivery: every coupon step queued at tick T is issued at its
    due time and valid for its stock's `valid_for` (stock -> (value fen, validity µs)), so
    `coupon_expiring` rules see it. Returns how many coupons were issued."""
    before = conn.total_changes
    for stock, (value_fen, valid_us) in stocks.items():
        conn.execute(
            "INSERT OR IGNORE INTO issued_coupons SELECT 'sim-' || o.item_id, o.item_id, "
            "o.fire_id, o.user_id, ?1, f.rule_id, ?2, o.due_at, o.due_at + ?3, NULL "
            "FROM outbox o JOIN fires f ON f.fire_id = o.fire_id WHERE o.kind = 'coupon' "
            "AND o.updated_at = ?4 AND o.spec_id IN (SELECT spec_id FROM outbox_specs "
            "WHERE json_extract(spec, '$.stock') = ?1)",
            (stock, value_fen, valid_us, T))
    return int(conn.total_changes - before)


def start_ticks(conn: Any, rule_ids: list[str], T: int) -> None:
    """Every rule last ticked at T (the backtest's start): windows begin there."""
    conn.executemany("INSERT INTO rule_ticks VALUES (?, ?, '') ON CONFLICT(rule_id) DO UPDATE "
                     "SET last_tick = excluded.last_tick", [(r, T) for r in rule_ids])


def drop_tick_tables(conn: Any) -> None:
    """The per-snapshot temp tables a tick leaves behind (lifecycle activity): a long replay
    would otherwise keep one per scheduled tick."""
    names = [n for (n,) in conn.execute(
        "SELECT name FROM temp.sqlite_master WHERE type = 'table' AND name LIKE 'zl\\_act\\_%' "
        "ESCAPE '\\'")]
    for name in names:
        conn.execute(f"DROP TABLE IF EXISTS temp.{SQLITE.ident(name)}")
