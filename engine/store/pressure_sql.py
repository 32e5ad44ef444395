"""The queries `engine pressure` needs: what the data holds, and how audiences overlap."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import orjson

from .dialect import SQLITE

OVERLAP = "zl_pressure_matches"


def event_type_present(conn: Any, type_id: int | None) -> bool:
    if type_id is None:
        return False
    return conn.execute("SELECT 1 FROM events WHERE type_id = ? LIMIT 1",
                        (type_id,)).fetchone() is not None


def attribute_present(conn: Any, attr: str) -> bool:
    col = SQLITE.ident(attr)
    return conn.execute(f"SELECT 1 FROM users WHERE {col} IS NOT NULL LIMIT 1"
                        ).fetchone() is not None


def consented_templates(conn: Any) -> set[str]:
    """The templates some user ever accepted (the consent accepts kept from the events)."""
    from .consent import accepted_templates

    return accepted_templates(conn)


def overlap_distribution(conn: Any, matches: Mapping[str, Sequence[str]]) -> dict[int, int]:
    """Users by the number of rules (of `matches`: rule -> matched user ids) they match; the
    users who match none are counted under 0."""
    conn.execute(f"DROP TABLE IF EXISTS temp.{OVERLAP}")
    conn.execute(f"CREATE TEMP TABLE {OVERLAP} (rule_id TEXT, user_id TEXT, "
                 "PRIMARY KEY (rule_id, user_id)) WITHOUT ROWID")
    try:
        for rule_id, users in matches.items():
            conn.execute(f"INSERT OR IGNORE INTO temp.{OVERLAP} SELECT ?, value FROM json_each(?)",
                         (rule_id, orjson.dumps(list(users)).decode()))
        out = {int(n): int(c) for n, c in conn.execute(
            f"SELECT n, COUNT(*) FROM (SELECT user_id, COUNT(*) AS n FROM temp.{OVERLAP} "
            "GROUP BY user_id) GROUP BY n ORDER BY n")}
        total = int(conn.execute("SELECT COUNT(*) FROM users").fetchone()[0])
        out[0] = total - sum(out.values())
        return dict(sorted(out.items()))
    finally:
        conn.execute(f"DROP TABLE IF EXISTS temp.{OVERLAP}")


def users_with_event(conn: Any, type_id: int | None, after: int, before: int) -> list[str]:
    """Users with an event of this type in (after, before), through the (type, ts) index."""
    if type_id is None:
        return []
    return [u for (u,) in conn.execute(
        "SELECT DISTINCT user_id FROM events WHERE type_id = ? AND ts > ? AND ts < ?",
        (type_id, after, before))]
