"""A bulk load of events: what it sets aside before, keeps during and rebuilds after.

A load that is large next to the stored events (or the first one) is cheaper done set-wise
than row by row, all in the load's one transaction (`Store.begin_bulk_load` ..
`Store.end_bulk_load`):

- the secondary events indexes are dropped and each is built once at the end;
- the consent triggers are suspended; a batch whose rows were all new stages its accepts
  (one `INSERT ... SELECT` over the batch's shard: what the trigger would have added), added in
  key order at the end, and any other batch leaves the end to add every accept among the
  stored events;
- users are not looked up batch by batch (about 1.2 µs per event at 10M events): at the end one
  ordered pass over events(user_id, ts) creates the users of every stored event; a batch with
  duplicates also notes its user ids (a row ignored as a duplicate still names a user to
  create, as a batched load would), in an attached in-memory table;
- the event summary is rebuilt once at the end (by ingest, after `end`).

The noted ids live in an attached in-memory database, not a TEMP table: SQLite refuses to
change `temp_store` inside a transaction once a temporary table was used, and the index
builds need it back on FILE so that their sorts may spill to disk.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Iterable

from . import consent, schema

NOTED_SCHEMA = "zl_noted"
_NOTED = f"{NOTED_SCHEMA}.users"


@dataclass
class BulkLoad:
    """The state of one bulk load (mutable: batches record what the end still owes)."""

    indexes: list[str]  # statements that rebuild the dropped events indexes
    triggers: list[str]  # statements that recreate the suspended triggers
    backfill_consent: bool = False  # some batch did not add its own accepts
    noted: bool = False  # some batch noted user ids


def begin(conn: Any) -> BulkLoad:
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
        "AND sql IS NOT NULL ORDER BY name").fetchall()
    for name, _ in rows:
        conn.execute(f'DROP INDEX "{name}"')  # a name SQLite gave back, not input
    return BulkLoad([str(sql) for _, sql in rows], consent.suspend_triggers(conn))


def after_shard(conn: Any, load: BulkLoad, shard_schema: str, added: int, total: int) -> None:
    """After a shard's events were inserted (`added` of `total` new)."""
    if added == total:
        consent.stage_new(conn, f"{shard_schema}.events")
        return
    load.backfill_consent = True
    _noted_table(conn, load)
    conn.execute(f"INSERT OR IGNORE INTO {_NOTED} SELECT user_id FROM {shard_schema}.users")


def after_rows(conn: Any, load: BulkLoad, user_ids: Iterable[str], added: int,
               total: int) -> None:
    """After a batch of rows from this process was inserted (`added` of `total` new)."""
    load.backfill_consent = True  # small loads: the accepts are added at the end
    if added < total:
        _noted_table(conn, load)
        conn.executemany(f"INSERT OR IGNORE INTO {_NOTED} VALUES (?)", ((u,) for u in user_ids))


def end(conn: Any, load: BulkLoad) -> int:
    """Build the indexes, create the users, add the accepts, recreate the triggers; returns
    how many users were created."""
    _build_indexes(conn, load.indexes)
    created = int(conn.execute("INSERT OR IGNORE INTO users(user_id) "
                               "SELECT DISTINCT user_id FROM events").rowcount)
    if load.noted:
        created += int(conn.execute(f"INSERT OR IGNORE INTO users(user_id) SELECT user_id "
                                    f"FROM {_NOTED} ORDER BY user_id").rowcount)
        conn.execute(f"DELETE FROM {_NOTED}")
    consent.resume_triggers(conn, load.triggers, backfill=load.backfill_consent)
    return created


def _build_indexes(conn: Any, statements: list[str]) -> None:
    # SQLite's `threads` (sorting with helper threads) was tried: on 2 cores the builds of 10M
    # entries took as long (13.2 vs 13.5 s) for more CPU, so it is not used.
    try:
        conn.execute("PRAGMA temp_store=FILE")  # big sorts spill to disk (see the module doc)
    except sqlite3.OperationalError:
        pass  # refused (a TEMP table was used in this transaction): sorts stay in memory
    for sql in statements:
        conn.execute(sql)
    conn.execute(schema.EVENTS_INDEX_SQL)  # whatever happened, the covering index


def _noted_table(conn: Any, load: BulkLoad) -> None:
    if not load.noted:
        if not any(r[1] == NOTED_SCHEMA for r in conn.execute("PRAGMA database_list")):
            conn.execute(f"ATTACH ':memory:' AS {NOTED_SCHEMA}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {_NOTED} (user_id TEXT NOT NULL "
                     "PRIMARY KEY) WITHOUT ROWID")
        load.noted = True
