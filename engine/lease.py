"""One daemon per database: a lease row with a heartbeat.

`acquire` claims the lease when nobody holds it, when the holder's heartbeat is older than the
timeout, or when the holder is a process on this host that no longer exists (so a daemon
restarted after a crash does not wait for the timeout). Otherwise it raises `LeaseHeld`, which
says who holds it. Time is an argument: the daemon passes its clock in.
"""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .errors import CannotRun
from .store import Store
from .store import lease as sql
from .timeutil import from_micros, to_micros

LEASE_NAME = "scheduler"


class LeaseHeld(CannotRun):
    code = "LEASE_HELD"
    exit_code = 2


@dataclass(frozen=True)
class Holder:
    holder: str
    pid: int
    host: str

    @staticmethod
    def this_process() -> "Holder":
        return Holder(uuid.uuid4().hex[:16], os.getpid(), socket.gethostname())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _dead_here(row: sql.LeaseRow, me: Holder) -> bool:
    return row.host == me.host and row.pid != me.pid and not pid_alive(row.pid)


def acquire(store: Store, me: Holder, now: datetime, timeout: timedelta) -> str:
    """Claim the lease; returns why it was free ("free", "stale", "dead", "ours")."""
    now_us = to_micros(now)
    with store.transaction():
        sql.ensure_lease_table(store.conn)
        row = sql.read_lease(store.conn, LEASE_NAME)
        if row is None:
            why = "free"
        elif row.holder == me.holder:
            why = "ours"
        elif now_us - row.heartbeat_at > timeout // timedelta(microseconds=1):
            why = "stale"
        elif _dead_here(row, me):
            why = "dead"
        else:
            age = max(0.0, (now_us - row.heartbeat_at) / 1e6)
            raise LeaseHeld(
                f"another daemon holds this database: pid {row.pid} on {row.host} "
                f"(holder {row.holder}, last heartbeat {age:.0f}s ago, since "
                f"{from_micros(row.acquired_at, now.tzinfo or timezone.utc).isoformat()})",
                hint=f"only one daemon may run per database; its lease is taken over "
                     f"{timeout.total_seconds():.0f}s after its last heartbeat")
        sql.claim(store.conn, sql.LeaseRow(LEASE_NAME, me.holder, me.pid, me.host,
                                           now_us, now_us))
    return why


def heartbeat(store: Store, me: Holder, now: datetime) -> bool:
    """False when another daemon has taken the lease over (ours went stale)."""
    with store.transaction():
        sql.ensure_lease_table(store.conn)
        return sql.heartbeat(store.conn, LEASE_NAME, me.holder, to_micros(now))


def release(store: Store, me: Holder) -> bool:
    with store.transaction():
        sql.ensure_lease_table(store.conn)
        return sql.release(store.conn, LEASE_NAME, me.holder)


def current(store: Store) -> sql.LeaseRow | None:
    return sql.read_lease(store.conn, LEASE_NAME)


def refuse_if_running(store: Store, now: datetime, timeout: timedelta = timedelta(seconds=30)
                      ) -> None:
    """`engine run --once` and `engine deliver` refuse while a live daemon holds the database:
    they would race its in-flight sends (and mark them `unknown`). `now` is the wall clock."""
    with store.transaction():
        sql.ensure_lease_table(store.conn)
        row = sql.read_lease(store.conn, LEASE_NAME)
    if row is None:
        return
    fresh = to_micros(now) - row.heartbeat_at <= timeout // timedelta(microseconds=1)
    if fresh and not _dead_here(row, Holder.this_process()):
        raise LeaseHeld(f"a daemon is running on this database: pid {row.pid} on {row.host}",
                        hint="stop it first (SIGTERM), or let it tick and deliver; a second "
                             "writer would race its in-flight sends")
