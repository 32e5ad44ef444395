"""Read-side queries the planner needs: users, trigger events, dated attributes, rule state.

Rule state (last tick per rule, the users currently inside an `on_enter` audience) lives in
the engine's own tables, so `plan` can read it and a restarted daemon reconstructs everything.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Iterable, Sequence

import orjson

from ..config import DataModel
from ..lang.to_python import EventRow
from ..lang.values import date_to_days
from .dialect import SQLITE
from .facts import _convert

STATE_TABLES = (
    """CREATE TABLE IF NOT EXISTS rule_ticks (
           rule_id TEXT PRIMARY KEY,
           last_tick INTEGER NOT NULL,      -- µs: the slot or instant of the last tick
           content_hash TEXT NOT NULL DEFAULT '')""",
    """CREATE TABLE IF NOT EXISTS rule_members (
           rule_id TEXT NOT NULL,
           user_id TEXT NOT NULL,
           entered_at INTEGER NOT NULL,
           PRIMARY KEY (rule_id, user_id)) WITHOUT ROWID""",
)


def ensure_state_tables(conn: Any) -> None:
    for sql in STATE_TABLES:
        conn.execute(sql)


def all_user_ids(conn: Any) -> list[str]:
    return [r[0] for r in conn.execute("SELECT user_id FROM users ORDER BY user_id")]


def user_exists(conn: Any, user_id: str) -> bool:
    return conn.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone() is not None


def _has_table(conn: Any, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def last_tick(conn: Any, rule_id: str) -> int | None:
    """The rule's last tick (µs), None if it never ticked. Reading never creates tables:
    `plan` has no side effects."""
    if not _has_table(conn, "rule_ticks"):
        return None
    row = conn.execute("SELECT last_tick FROM rule_ticks WHERE rule_id = ?", (rule_id,)).fetchone()
    return None if row is None else int(row[0])


def members(conn: Any, rule_id: str) -> set[str]:
    if not _has_table(conn, "rule_members"):
        return set()
    return {r[0] for r in conn.execute("SELECT user_id FROM rule_members WHERE rule_id = ?",
                                       (rule_id,))}


def events_between(conn: Any, model: DataModel, type_id: int | None, event_type: str,
                   after: int, until: int, user_id: str | None = None) -> list[EventRow]:
    """Events of one type with after < ts <= until (oldest first)."""
    if type_id is None:
        return []
    sql = ("SELECT event_id, user_id, ts, amount_fen, props FROM events "
           "WHERE type_id = ? AND ts > ? AND ts <= ?")
    params: list[Any] = [type_id, after, until]
    if user_id is not None:
        sql += " AND user_id = ?"
        params.append(user_id)
    etype = model.events.get(event_type)
    out = []
    for event_id, uid, ts, amount, props in conn.execute(sql + " ORDER BY ts, event_id", params):
        decoded = orjson.loads(props) if props else {}
        if etype is not None:
            decoded = {k: _convert(v, etype.props[k].type if k in etype.props else None)
                       for k, v in decoded.items()}
        out.append(EventRow(ts, amount, decoded, event_id, uid, event_type))
    return out


def dated_users(conn: Any, model: DataModel, attr: str, lo: int, hi: int) -> list[tuple[str, int]]:
    """Users whose timestamp attribute lies in (lo, hi] (µs): (user_id, value)."""
    col = SQLITE.ident(attr)
    return [(u, int(v)) for u, v in conn.execute(
        f"SELECT user_id, {col} FROM users WHERE {col} > ? AND {col} <= ? ORDER BY user_id",
        (lo, hi))]


def users_with_dates(conn: Any, attr: str, month_days: Iterable[str]) -> list[tuple[str, int]]:
    """Users whose date attribute falls on one of the given MM-DD days: (user_id, day number)."""
    col = SQLITE.ident(attr)
    days = sorted(set(month_days))
    if not days:
        return []
    marks = ", ".join("?" * len(days))
    out = []
    for u, v in conn.execute(f"SELECT user_id, {col} FROM users WHERE {col} IS NOT NULL AND "
                             f"substr({col}, 6, 5) IN ({marks}) ORDER BY user_id", days):
        out.append((u, date_to_days(date.fromisoformat(v))))
    return out


def local_dates_between(lo: datetime, hi: datetime, tz: tzinfo) -> list[date]:
    """Calendar dates whose local midnight lies in (lo, hi]."""
    start = lo.astimezone(tz).date()
    out = []
    d = start
    while True:
        midnight = datetime(d.year, d.month, d.day, tzinfo=tz)
        if midnight > hi:
            break
        if midnight > lo:
            out.append(d)
        d += timedelta(days=1)
    return out


__all__: Sequence[str] = ("ensure_state_tables", "all_user_ids", "last_tick", "members",
                          "events_between", "dated_users", "users_with_dates",
                          "local_dates_between")
