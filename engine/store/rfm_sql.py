"""RFM as of T, computed inside the database (see LANGUAGE.md "RFM" and engine/rfm.py).

One `INSERT INTO ... SELECT` streams the purchase events before T through the covering index
(type_id, user_id, ts, amount_fen), ranks the users with window functions and compares each
metric with the mean exactly, in integers (x * N <= sum, never a float mean). The result is a
temporary table keyed by user_id, rebuilt on every call, so it is never stale for another T.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Mapping, Sequence

RFM_TABLE = "temp.rfm"

_CREATE = """CREATE TEMP TABLE rfm (
    user_id TEXT PRIMARY KEY,
    recency_days INTEGER NOT NULL,
    frequency INTEGER NOT NULL,
    monetary INTEGER NOT NULL,      -- fen
    r INTEGER NOT NULL, f INTEGER NOT NULL, m INTEGER NOT NULL,
    segment TEXT NOT NULL) WITHOUT ROWID"""

# The segment code is 4 * (R near) + 2 * (F high) + (M high); names are bound by code.
_FILL = """INSERT INTO temp.rfm(user_id, recency_days, frequency, monetary, r, f, m, segment)
WITH base AS (
    SELECT user_id,
           (:at - MAX(ts)) / :day AS recency_days,
           COUNT(*) AS frequency,
           COALESCE(SUM(amount_fen), 0) AS monetary
    FROM events
    WHERE type_id = :type AND ts < :at
    GROUP BY user_id),
totals AS (
    SELECT COUNT(*) AS n, SUM(recency_days) AS sr, SUM(frequency) AS sf, SUM(monetary) AS sm
    FROM base),
ranked AS (
    SELECT b.user_id, b.recency_days, b.frequency, b.monetary, t.n, t.sr, t.sf, t.sm,
           RANK() OVER (ORDER BY b.recency_days DESC) - 1 AS wr,
           RANK() OVER (ORDER BY b.frequency) - 1 AS wf,
           RANK() OVER (ORDER BY b.monetary) - 1 AS wm
    FROM base b, totals t)
SELECT user_id, recency_days, frequency, monetary,
       1 + 5 * wr / n, 1 + 5 * wf / n, 1 + 5 * wm / n,
       CASE 4 * (recency_days * n <= sr) + 2 * (frequency * n >= sf) + (monetary * n >= sm)
           WHEN 7 THEN :s7 WHEN 6 THEN :s6 WHEN 5 THEN :s5 WHEN 4 THEN :s4
           WHEN 3 THEN :s3 WHEN 2 THEN :s2 WHEN 1 THEN :s1 ELSE :s0 END
FROM ranked"""


@dataclass(frozen=True)
class RfmTotals:
    """What the temp table holds, aggregated: exact integer sums and counts."""

    n: int
    sum_recency_days: int
    sum_frequency: int
    sum_monetary_fen: int
    segments: Mapping[str, int]
    r: Mapping[int, int]
    f: Mapping[int, int]
    m: Mapping[int, int]


def materialise(conn: sqlite3.Connection, at_us: int, type_id: int,
                segment_names: Sequence[str]) -> str:
    """(Re)build the RFM temp table as of `at_us`; returns its name. `segment_names[code]`
    names the segment with code 4*R_near + 2*F_high + M_high."""
    if len(segment_names) != 8:
        raise ValueError("eight segment names, indexed by code")
    params: dict[str, object] = {"at": at_us, "day": 86_400_000_000, "type": type_id}
    params.update({f"s{i}": name for i, name in enumerate(segment_names)})
    conn.execute("DROP TABLE IF EXISTS temp.rfm")
    conn.execute(_CREATE)
    conn.execute(_FILL, params)
    return RFM_TABLE


def totals(conn: sqlite3.Connection) -> RfmTotals:
    n, sr, sf, sm = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(recency_days), 0), COALESCE(SUM(frequency), 0), "
        "COALESCE(SUM(monetary), 0) FROM temp.rfm").fetchone()

    def dist(col: str) -> dict[int, int]:
        # col is one of the three fixed names below, never input
        return {int(k): int(v) for k, v in
                conn.execute(f"SELECT {col}, COUNT(*) FROM temp.rfm GROUP BY {col}")}
    segments = {str(s): int(c) for s, c in
                conn.execute("SELECT segment, COUNT(*) FROM temp.rfm GROUP BY segment")}
    return RfmTotals(int(n), int(sr), int(sf), int(sm), segments, dist("r"), dist("f"),
                     dist("m"))


def rows(conn: sqlite3.Connection) -> list[tuple[str, int, int, int, int, int, int, str]]:
    """Every user's RFM row, by user_id (for tests and small exports)."""
    return [tuple(r) for r in conn.execute(
        "SELECT user_id, recency_days, frequency, monetary, r, f, m, segment FROM temp.rfm "
        "ORDER BY user_id")]
