"""The daemon lease: one row per database naming the daemon that schedules it.

A daemon claims the row when it is free, stale (no heartbeat for the lease timeout) or held by
a process known to be dead, then keeps it fresh with heartbeats. Every write runs inside the
caller's `BEGIN IMMEDIATE` transaction, so two daemons starting at once cannot both win.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LEASE_TABLE = """CREATE TABLE IF NOT EXISTS daemon_lease (
    name TEXT PRIMARY KEY,            -- what is leased: 'scheduler'
    holder TEXT NOT NULL,             -- a random id per daemon process
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,     -- µs since the epoch
    heartbeat_at INTEGER NOT NULL)"""


@dataclass(frozen=True)
class LeaseRow:
    name: str
    holder: str
    pid: int
    host: str
    acquired_at: int
    heartbeat_at: int


def ensure_lease_table(conn: Any) -> None:
    conn.execute(LEASE_TABLE)


def read_lease(conn: Any, name: str) -> LeaseRow | None:
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = "
                    "'daemon_lease'").fetchone() is None:
        return None
    row = conn.execute("SELECT name, holder, pid, host, acquired_at, heartbeat_at FROM "
                       "daemon_lease WHERE name = ?", (name,)).fetchone()
    return None if row is None else LeaseRow(str(row[0]), str(row[1]), int(row[2]),
                                             str(row[3]), int(row[4]), int(row[5]))


def claim(conn: Any, row: LeaseRow) -> None:
    conn.execute("INSERT INTO daemon_lease VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE "
                 "SET holder = excluded.holder, pid = excluded.pid, host = excluded.host, "
                 "acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at",
                 (row.name, row.holder, row.pid, row.host, row.acquired_at, row.heartbeat_at))


def heartbeat(conn: Any, name: str, holder: str, at: int) -> bool:
    """Refresh our heartbeat; False when the lease is no longer ours (taken over)."""
    cur = conn.execute("UPDATE daemon_lease SET heartbeat_at = ? WHERE name = ? AND holder = ?",
                       (at, name, holder))
    return bool(cur.rowcount)


def release(conn: Any, name: str, holder: str) -> bool:
    cur = conn.execute("DELETE FROM daemon_lease WHERE name = ? AND holder = ?", (name, holder))
    return bool(cur.rowcount)
