"""Read-side queries for the daemon's metrics and HTTP API (no writes)."""
from __future__ import annotations

from typing import Any, Sequence

from .ledger import has_ledger

_IN_CHUNK = 500


def _has_table(conn: Any, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def rule_ticks(conn: Any) -> dict[str, int]:
    """Every rule's last tick (µs)."""
    if not _has_table(conn, "rule_ticks"):
        return {}
    return {str(r): int(t) for r, t in conn.execute("SELECT rule_id, last_tick FROM rule_ticks")}


def outbox_by_channel(conn: Any) -> list[tuple[str, str, str, int]]:
    """(channel, kind, state, items) over the whole outbox."""
    if not has_ledger(conn):
        return []
    return [(str(c), str(k), str(s), int(n)) for c, k, s, n in conn.execute(
        "SELECT channel, kind, state, COUNT(*) FROM outbox GROUP BY channel, kind, state")]


def existing_event_ids(conn: Any, event_ids: Sequence[str]) -> set[str]:
    out: set[str] = set()
    unique = list(dict.fromkeys(event_ids))
    for i in range(0, len(unique), _IN_CHUNK):
        part = unique[i:i + _IN_CHUNK]
        marks = ", ".join("?" * len(part))
        out.update(r[0] for r in conn.execute(
            f"SELECT event_id FROM events WHERE event_id IN ({marks})", part))
    return out
