"""Subscription-message consent: the accepts, kept as a derived table, and the policy's reads.

Each `subscribe_authorized` event grants one send of its `template` (props) to its user. The
policy needs, per candidate user and template, the accepts with ts < T after the user's quota
was last zeroed (WeChat 43101). Extracting the template from the JSON props of millions of
events on every tick was the largest cost of `plan`; instead `consent_accepts` holds one row
(user_id, ts, event_id, props) per accept, kept by triggers on `events`:

- AFTER INSERT: any INSERT fills it, whichever code path writes events. `INSERT OR IGNORE` of
  an event already stored inserts no row, so the trigger does not fire: re-ingest never
  double-counts. The key includes event_id, so a second firing would be ignored anyway.
- AFTER DELETE / AFTER UPDATE keep it equal to the events table when events are removed or
  corrected.

The table keeps every accept with its ts, so the count stays exact for any T (backtests plan
at past instants); the template is read from the props of the candidates' accepts only. The
migration that creates it backfills the events already stored.
"""
from __future__ import annotations

from typing import Any

GRANTS = "consent_accepts"

_IS_CONSENT = ("{row}.type_id = (SELECT type_id FROM event_types "
               "WHERE name = 'subscribe_authorized')")
_INSERT = (f"INSERT OR IGNORE INTO {GRANTS}(user_id, ts, event_id, props) "
           "SELECT NEW.user_id, NEW.ts, NEW.event_id, NEW.props")
_DELETE = (f"DELETE FROM {GRANTS} WHERE user_id = OLD.user_id AND ts = OLD.ts "
           "AND event_id = OLD.event_id;")

# Every accept among the stored events (those already present are ignored).
BACKFILL = (f"INSERT OR IGNORE INTO {GRANTS}(user_id, ts, event_id, props) "
            f"SELECT e.user_id, e.ts, e.event_id, e.props FROM events e "
            f"WHERE {_IS_CONSENT.format(row='e')}")

# The engine migration that creates, fills and maintains the table (engine/store/schema.py).
# The trigger copies the props as they are: computing anything in a trigger (json_extract,
# even length()) made each event insert several times slower in SQLite 3.40, where copying
# columns costs almost nothing; the template is read from the props of the candidates' few
# accepts instead.
MIGRATION: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS {GRANTS} (
           user_id TEXT NOT NULL,
           ts INTEGER NOT NULL,
           event_id TEXT NOT NULL,
           props TEXT,
           PRIMARY KEY (user_id, ts, event_id)) WITHOUT ROWID""",
    BACKFILL,
    f"""CREATE TRIGGER IF NOT EXISTS {GRANTS}_insert AFTER INSERT ON events
        WHEN {_IS_CONSENT.format(row='NEW')}
        BEGIN {_INSERT}; END""",
    f"""CREATE TRIGGER IF NOT EXISTS {GRANTS}_delete AFTER DELETE ON events
        WHEN {_IS_CONSENT.format(row='OLD')}
        BEGIN {_DELETE} END""",
    f"""CREATE TRIGGER IF NOT EXISTS {GRANTS}_update AFTER UPDATE ON events
        BEGIN {_DELETE}
        {_INSERT} WHERE {_IS_CONSENT.format(row='NEW')};
        END""",
)


def granted(conn: Any, candidates: str, template: str, before: int,
            zeroed: bool) -> dict[str, int]:
    """Accepts of `template` with ts < `before` per user of the `candidates` temp table,
    counting only those after the user's quota was zeroed when `zeroed` (the ledger exists):
    one index range per candidate (its few accepts), whatever the number stored."""
    # CROSS JOIN keeps the candidates as the outer loop (SQLite would otherwise scan every
    # accept and probe the candidates: slow when they are few)
    sql = (f"SELECT c.user_id, COUNT(*) FROM {candidates} c CROSS JOIN {GRANTS} g "
           "ON g.user_id = c.user_id AND g.ts < ?2 ")
    if zeroed:
        sql += ("LEFT JOIN consent_zeroed z ON z.user_id = c.user_id AND z.template = ?1 "
                "WHERE (z.at IS NULL OR g.ts > z.at) AND ")
    else:
        sql += "WHERE "
    sql += "json_extract(g.props, '$.template') = ?1 GROUP BY c.user_id"
    return dict(conn.execute(sql, (template, before)))


def accepted_templates(conn: Any) -> set[str]:
    """The templates some user ever accepted."""
    return {str(t) for (t,) in conn.execute(
        f"SELECT DISTINCT json_extract(props, '$.template') FROM {GRANTS} "
        "WHERE json_extract(props, '$.template') IS NOT NULL")}


def suspend_triggers(conn: Any) -> list[str]:
    """For a bulk load into events: drop the triggers (returning the statements that recreate
    them). Row-by-row upkeep costs about as much as the insert itself; `resume_triggers` in the
    same transaction brings the table up to date in one set-wise statement instead."""
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                        "AND tbl_name = 'events' AND name LIKE ? ORDER BY name",
                        (f"{GRANTS}_%",)).fetchall()
    for name, _ in rows:
        conn.execute(f'DROP TRIGGER "{name}"')
    return [str(sql) for _, sql in rows]


STAGED = "zl_bulk_accepts"  # a bulk load's new accepts, added to GRANTS in key order at its end


def stage_new(conn: Any, src: str) -> None:
    """While the triggers are suspended: stage the accepts among the rows of the table `src`
    (a shard of the bulk load, a name the store chose), every one of which was just inserted
    into events as a new event: what the insert trigger would have added. `add_staged` adds
    them at the end, sorted: inserting them as they come, in user order, into a table larger
    than the page cache cost about 5 µs per accept at 10M events (2.2M accepts). The staging
    table is on disk in the load's transaction (memory must not grow with the input) and
    dropped before it commits."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {STAGED} (user_id TEXT NOT NULL, "
                 "ts INTEGER NOT NULL, event_id TEXT NOT NULL, props TEXT)")
    conn.execute(f"INSERT INTO {STAGED} SELECT s.user_id, s.ts, s.event_id, s.props FROM {src} s "
                 f"WHERE {_IS_CONSENT.format(row='s')}")


def add_staged(conn: Any) -> None:
    """Add the staged accepts in key order, then drop the staging table (if any)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                    (STAGED,)).fetchone() is None:
        return
    conn.execute(f"INSERT OR IGNORE INTO {GRANTS}(user_id, ts, event_id, props) "
                 f"SELECT user_id, ts, event_id, props FROM {STAGED} "
                 "ORDER BY user_id, ts, event_id")
    conn.execute(f"DROP TABLE {STAGED}")


def resume_triggers(conn: Any, statements: list[str], backfill: bool = True) -> None:
    """After the bulk load: add the accepts it brought (unless each batch added its own,
    `stage_new`, then `add_staged`), then recreate the triggers."""
    if statements and backfill:
        conn.execute(BACKFILL)
    add_staged(conn)
    for sql in statements:
        conn.execute(sql)
