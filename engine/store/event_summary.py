"""A per-user, per-event-type summary of the stored events, kept up to date as events arrive.

`event_summary(type_id, user_id, n, first_ts, last_ts, amount)` holds, for every user and event
type with at least one stored event, how many there are, the first and last ts and the sum of
`amount_fen` (NULL when every amount is NULL, like SQL's SUM). The row with type_id 0 (no event
type has that id: type ids start at 1) is the user's activity over every type (n, first_ts and
last_ts; amount NULL): `lifecycle` reads it instead of seeking in the 10M events.

It is maintained set-wise, never by a per-row trigger (an upsert per event made inserts several
times slower): after each batch of events `Store.insert_events` writes (`engine ingest`, the
daemon's `/events`), `refresh_batch` adds the batch's own aggregates when
every row of it was new, or else recomputes the rows of the (type, user) pairs the batch touched
from the events themselves (so duplicates and re-ingest stay exact); a bulk load rebuilds the
whole table once its indexes exist (`rebuild`).

Exactness whatever writes the events: `event_summary_state.events` is the number of events the
table covers, and the planner uses the table only when it equals the number stored (one count
over the smallest events index, about 0.04 s at 10M events). Events written by any other path
(a bulk load before its rebuild, SQL outside the store) leave it behind, and the planner then
reads the events as before, until the next `rebuild`. The engine never deletes or updates events; code that
did would have to call `rebuild`.

The table holds every stored event; a reader as of T (`as_of`) corrects it by the events with
ts >= T, which are few at the present time: users whose last_ts >= T are recomputed from the
events by an index seek, rows whose first_ts >= T are not visible at all.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

SUMMARY = "event_summary"
STATE = "event_summary_state"
ANY_TYPE = 0  # the row of a user's activity over every event type

_FILL_TYPES = (f"INSERT OR REPLACE INTO {SUMMARY}(type_id, user_id, n, first_ts, last_ts, amount) "
               "SELECT k.type_id, k.user_id, COUNT(*), MIN(e.ts), MAX(e.ts), SUM(e.amount_fen) "
               "FROM {keys} CROSS JOIN events e ON e.type_id = k.type_id AND e.user_id = k.user_id "
               "GROUP BY k.type_id, k.user_id")
_FILL_ANY = (f"INSERT OR REPLACE INTO {SUMMARY}(type_id, user_id, n, first_ts, last_ts, amount) "
             f"SELECT {ANY_TYPE}, k.user_id, COUNT(*), MIN(e.ts), MAX(e.ts), NULL "
             "FROM {keys} CROSS JOIN events e ON e.user_id = k.user_id GROUP BY k.user_id")


# Everything recomputed from the events: one pass over each covering index, in its order.
_REBUILD: tuple[str, ...] = (
    f"DELETE FROM {SUMMARY}",
    f"INSERT INTO {SUMMARY}(type_id, user_id, n, first_ts, last_ts, amount) "
    "SELECT type_id, user_id, COUNT(*), MIN(ts), MAX(ts), SUM(amount_fen) FROM events "
    "GROUP BY type_id, user_id",
    f"INSERT INTO {SUMMARY}(type_id, user_id, n, first_ts, last_ts, amount) "
    f"SELECT {ANY_TYPE}, user_id, COUNT(*), MIN(ts), MAX(ts), NULL FROM events "
    "GROUP BY user_id",
    f"DELETE FROM {STATE}",
    f"INSERT INTO {STATE}(events) SELECT COALESCE(SUM(n), 0) FROM {SUMMARY} "
    f"WHERE type_id = {ANY_TYPE}",
)

# The engine migration "0006 event summary" (engine/store/schema.py): create and build.
MIGRATION: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS {SUMMARY} (
           type_id INTEGER NOT NULL,
           user_id TEXT NOT NULL,
           n INTEGER NOT NULL,
           first_ts INTEGER NOT NULL,
           last_ts INTEGER NOT NULL,
           amount INTEGER,
           PRIMARY KEY (type_id, user_id)) WITHOUT ROWID""",
    f"CREATE TABLE IF NOT EXISTS {STATE} (events INTEGER NOT NULL)",
    *_REBUILD,
)


def _has(conn: Any) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (STATE,)).fetchone() is not None


def is_fresh(conn: Any) -> bool:
    """Whether the summary covers every stored event (False without the table)."""
    if not _has(conn):
        return False
    row = conn.execute(f"SELECT events FROM {STATE}").fetchone()
    return row is not None and row[0] == _count_events(conn)


def _count_events(conn: Any) -> int:
    """COUNT(*) of events with memory-mapped reads for the while: the scan of an events index
    then costs about 0.04 s at 10M events instead of about 1 s to pull its pages through the
    connection's page cache (which they would also crowd). The setting is restored."""
    old = int(conn.execute("PRAGMA mmap_size").fetchone()[0])
    conn.execute("PRAGMA mmap_size = 17179869184")  # a bound: SQLite caps it at its maximum
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.execute(f"PRAGMA mmap_size = {old}")  # an int read above, not input


_MERGE = ("ON CONFLICT(type_id, user_id) DO UPDATE SET "
          "n = n + excluded.n, first_ts = MIN(first_ts, excluded.first_ts), "
          "last_ts = MAX(last_ts, excluded.last_ts), amount = CASE WHEN amount IS NULL "
          "THEN excluded.amount WHEN excluded.amount IS NULL THEN amount "
          "ELSE amount + excluded.amount END")
_UPSERT = (f"INSERT INTO {SUMMARY}(type_id, user_id, n, first_ts, last_ts, amount) "
           f"VALUES (?, ?, ?, ?, ?, ?) {_MERGE}")
# The same from a table of new events (a shard, engine/store/shard.py), aggregated in SQL.
_ADD_TYPES = (f"INSERT INTO {SUMMARY}(type_id, user_id, n, first_ts, last_ts, amount) "
              "SELECT type_id, user_id, COUNT(*), MIN(ts), MAX(ts), SUM(amount_fen) "
              f"FROM {{src}} GROUP BY type_id, user_id {_MERGE}")
_ADD_ANY = (f"INSERT INTO {SUMMARY}(type_id, user_id, n, first_ts, last_ts, amount) "
            f"SELECT {ANY_TYPE}, user_id, COUNT(*), MIN(ts), MAX(ts), NULL "
            f"FROM {{src}} GROUP BY user_id {_MERGE}")


def refresh_batch(conn: Any, rows: Sequence[Sequence[Any]], added: int) -> None:
    """After a batch of events (event_id, user_id, type_id, ts, amount_fen, ...) was inserted,
    `added` of them new (the others already stored), bring the summary up to date set-wise
    and count the new events as covered. When every row was new (the usual case), the batch's
    own per-(type, user) and per-user aggregates are added to the stored rows (no event is
    read); otherwise the rows of the pairs the batch touched are recomputed from the events,
    which is exact whichever rows were duplicates."""
    if not added or not _has(conn):
        return
    if added == len(rows):
        _add(conn, rows)
    else:
        _recompute(conn, {(r[2], r[1]) for r in rows})
    conn.execute(f"UPDATE {STATE} SET events = events + ?", (added,))


def refresh_from(conn: Any, src: str, added: int, total: int) -> None:
    """`refresh_batch` for a batch of `total` events held in the table `src` (a shard: a
    name the store chose, not input), `added` of them new, aggregated in SQL."""
    if not added or not _has(conn):
        return
    if added == total:
        conn.execute(_ADD_TYPES.format(src=src))
        conn.execute(_ADD_ANY.format(src=src))
    else:
        _recompute_keys(conn, lambda: (
            conn.execute(f"INSERT OR IGNORE INTO temp.zl_sum_keys SELECT type_id, user_id "
                         f"FROM {src}"),
            conn.execute(f"INSERT OR IGNORE INTO temp.zl_sum_users SELECT user_id FROM {src}")))
    conn.execute(f"UPDATE {STATE} SET events = events + ?", (added,))


def _add(conn: Any, rows: Sequence[Sequence[Any]]) -> None:
    per_type: dict[tuple[int, str], list[Any]] = {}
    per_user: dict[str, list[Any]] = {}
    for r in rows:
        user, ts, amount = r[1], r[3], r[4]
        _fold(per_type, (r[2], user), ts, amount)
        _fold(per_user, user, ts, amount)
    conn.executemany(_UPSERT, [(t, u, *a) for (t, u), a in per_type.items()])
    conn.executemany(_UPSERT, [(ANY_TYPE, u, n, lo, hi, None)
                               for u, (n, lo, hi, _) in per_user.items()])


def _fold(into: dict[Any, list[Any]], key: Any, ts: int, amount: int | None) -> None:
    """Count one event into `into[key]` = [n, first ts, last ts, SUM(amount) (None: no amount)]."""
    agg = into.get(key)
    if agg is None:
        into[key] = [1, ts, ts, amount]
        return
    agg[0] += 1
    if ts < agg[1]:
        agg[1] = ts
    if ts > agg[2]:
        agg[2] = ts
    if amount is not None:
        agg[3] = amount if agg[3] is None else agg[3] + amount


def _recompute(conn: Any, pairs: set[tuple[int, str]]) -> None:
    _recompute_keys(conn, lambda: (
        conn.executemany("INSERT OR IGNORE INTO temp.zl_sum_keys VALUES (?, ?)", pairs),
        conn.executemany("INSERT OR IGNORE INTO temp.zl_sum_users VALUES (?)",
                         {(u,) for _, u in pairs})))


def _recompute_keys(conn: Any, fill: Callable[[], object]) -> None:
    """Recompute the summary rows of the (type, user) pairs and users that `fill` puts in
    temp.zl_sum_keys and temp.zl_sum_users."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS zl_sum_keys (type_id INTEGER, user_id TEXT, "
                 "PRIMARY KEY (type_id, user_id)) WITHOUT ROWID")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS zl_sum_users (user_id TEXT PRIMARY KEY) "
                 "WITHOUT ROWID")
    try:
        fill()
        conn.execute(_FILL_TYPES.format(keys="temp.zl_sum_keys k"))
        conn.execute(_FILL_ANY.format(keys="temp.zl_sum_users k"))
    finally:
        conn.execute("DELETE FROM temp.zl_sum_keys")
        conn.execute("DELETE FROM temp.zl_sum_users")


def rebuild(conn: Any) -> None:
    """Recompute the whole summary from the events (after a bulk load, once the events
    indexes exist); the table then covers them all."""
    if not _has(conn):
        return
    for sql in _REBUILD:
        conn.execute(sql)


def as_of(conn: Any, T: int, type_id: int, name: str) -> bool:
    """Fill the temp table `name` (user_id, n, first_ts, last_ts, amount) with the summary of
    `type_id` as of T (events with ts < T), as audience.materialise_summary does from the
    events. Only for a summary that `is_fresh`. Returns False, having written nothing, when so
    many users have events at or after T (a backtest in the past) that reading the events is
    cheaper."""
    total, late = conn.execute(
        f"SELECT COUNT(*), COALESCE(SUM(last_ts >= ?2), 0) FROM {SUMMARY} WHERE type_id = ?1",
        (type_id, T)).fetchone()
    if late * 4 > total:
        return False
    conn.execute(f"INSERT INTO {name} SELECT user_id, n, first_ts, last_ts, amount "
                 f"FROM {SUMMARY} WHERE type_id = ?1 AND first_ts < ?2", (type_id, T))
    if late:
        conn.execute(
            f"UPDATE {name} SET (n, last_ts, amount) = (SELECT COUNT(*), MAX(e.ts), "
            f"SUM(e.amount_fen) FROM events e WHERE e.type_id = ?1 AND e.user_id = {name}.user_id "
            "AND e.ts < ?2) WHERE last_ts >= ?2", (type_id, T))
    return True


def activity_sql(bind: Any, T: int) -> tuple[str, str, str, str, str]:
    """For the audience compiler, to LEFT JOIN the users' activity rows as `lc_a`: (table, on,
    first, last, seek). `first` is the first ts of any event before T (NULL when none); `last`
    is the last one when it is before T, which `lc_a.last_ts < T` tells; otherwise (a user
    with an event at or after T) `seek` is a scalar subquery over that user's events before T
    in events(user_id, ts), with `{value}` to be replaced by an expression of MAX(lc_e.ts).
    `bind(value)` returns a bound parameter's placeholder."""
    t, any_type = bind(T), bind(ANY_TYPE)
    on = f"lc_a.type_id = {any_type} AND lc_a.user_id = u.user_id AND lc_a.first_ts < {t}"
    seek = (f"(SELECT {{value}} FROM events lc_e WHERE lc_e.user_id = lc_a.user_id "
            f"AND lc_e.ts < {t})")
    return f"{SUMMARY} lc_a", on, "lc_a.first_ts", "lc_a.last_ts", seek
