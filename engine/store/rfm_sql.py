"""RFM as of T, computed inside the database (see LANGUAGE.md "RFM" and engine/rfm.py).

One pass streams the purchase events before T through the covering index (type_id, user_id,
ts, amount_fen) into per-user metrics. A user's score needs w, the number of users strictly
worse: it is computed once per distinct value of each metric (a running count over a
GROUP BY, far fewer rows than users) and joined back, rather than by ranking every user three
times with window functions (three full sorts). Each metric is compared with the mean exactly,
in integers (x * N <= sum, never a float mean). The result is a temporary table keyed by
user_id, rebuilt on every call, so it is never stale for another T.

Without scores, from the tick's per-user summary (`source`), nothing is copied: `temp.rfm` is
then a temporary view over the summary whose segment compares each user's metrics with the
exact sums held, with N and T, in a one-row temporary table (`temp.zl_rfm_params`, filled
with bound parameters and read by scalar subqueries that SQLite evaluates once per
statement). The view has the table's columns (r, f and m NULL) and the same rows and values;
a lookup by user_id is one seek in the summary's primary key.
"""
from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

RFM_TABLE = "temp.rfm"
DAY_US = 86_400_000_000

_CREATE = """CREATE TEMP TABLE rfm (
    user_id TEXT PRIMARY KEY,
    recency_days INTEGER NOT NULL,
    frequency INTEGER NOT NULL,
    monetary INTEGER NOT NULL,      -- fen
    r INTEGER, f INTEGER, m INTEGER,  -- NULL when built without scores (scores=False)
    segment TEXT NOT NULL) WITHOUT ROWID"""

_BASE = "temp.zl_rfm_base"
_PARAMS = "temp.zl_rfm_params"
_SEGMENT_CASE = """CASE 4 * (b.recency_days * :n <= :sr) + 2 * (b.frequency * :n >= :sf)
            + (b.monetary * :n >= :sm)
           WHEN 7 THEN :s7 WHEN 6 THEN :s6 WHEN 5 THEN :s5 WHEN 4 THEN :s4
           WHEN 3 THEN :s3 WHEN 2 THEN :s2 WHEN 1 THEN :s1 ELSE :s0 END"""
_WORSE = "temp.zl_rfm_worse"

# One pass over the purchase events through the covering index, in user_id order.
_FILL_BASE = f"""INSERT INTO {_BASE}(user_id, recency_days, frequency, monetary)
SELECT user_id, (:at - MAX(ts)) / :day, COUNT(*), COALESCE(SUM(amount_fen), 0)
FROM events WHERE type_id = :type AND ts < :at GROUP BY user_id"""

# The same metrics read from the tick's per-user summary, in place (no copy into _BASE).
_FROM_SOURCE = """(SELECT user_id, (:at - last_ts) / :day AS recency_days, n AS frequency,
COALESCE(amount, 0) AS monetary FROM {source})"""

# w (users strictly worse) per distinct value of a metric: a running count over the few
# distinct values (recency: larger is worse; frequency, monetary: smaller is worse).
_FILL_WORSE = f"""INSERT INTO {_WORSE}(metric, v, w)
SELECT :metric, v, SUM(c) OVER (ORDER BY v {{order}}) - c
FROM (SELECT {{col}} AS v, COUNT(*) AS c FROM {{base}} GROUP BY {{col}})"""
_METRICS = ((0, "recency_days", "DESC"), (1, "frequency", "ASC"), (2, "monetary", "ASC"))

# The segment code is 4 * (R near) + 2 * (F high) + (M high); names are bound by code.
# Means are compared exactly, in integers: x * N <= sum, never a float mean.
_FILL = f"""INSERT INTO temp.rfm(user_id, recency_days, frequency, monetary, r, f, m, segment)
SELECT b.user_id, b.recency_days, b.frequency, b.monetary,
       {{scores}},
       {_SEGMENT_CASE}
FROM {{base}} b {{joins}}"""

# The view over the tick's summary (no scores): the same metrics and segment, the named
# parameters read from the one-row table of bound values (`:x` becomes `(SELECT x FROM p)`).
_PARAM_NAMES = ("at", "day", "n", "sr", "sf", "sm", *(f"s{i}" for i in range(8)))
_VIEW_BODY = ("SELECT b.user_id, b.recency_days, b.frequency, b.monetary, NULL AS r, "
              "NULL AS f, NULL AS m, " + _SEGMENT_CASE + " AS segment FROM (SELECT user_id, "
              "(:at - last_ts) / :day AS recency_days, n AS frequency, COALESCE(amount, 0) "
              "AS monetary FROM {source}) b")
_SCORES = "1 + 5 * wr.w / :n, 1 + 5 * wf.w / :n, 1 + 5 * wm.w / :n"
_SCORE_JOINS = f"""
CROSS JOIN {_WORSE} wr ON wr.metric = 0 AND wr.v = b.recency_days
CROSS JOIN {_WORSE} wf ON wf.metric = 1 AND wf.v = b.frequency
CROSS JOIN {_WORSE} wm ON wm.metric = 2 AND wm.v = b.monetary"""


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
                segment_names: Sequence[str], scores: bool = True,
                source: str | None = None) -> str:
    """(Re)build the RFM temp table as of `at_us`; returns its name. `segment_names[code]`
    names the segment with code 4*R_near + 2*F_high + M_high. Without `scores`, r, f and m
    are left NULL (the segment needs only the means): for callers that never read them.
    `source`: a per-user summary of the purchase events before `at_us` already built for this
    tick (audience.materialise_summary), read instead of the events."""
    if len(segment_names) != 8:
        raise ValueError("eight segment names, indexed by code")
    params: dict[str, object] = {"at": at_us, "day": 86_400_000_000, "type": type_id}
    _drop(conn)
    if source is not None and not scores:
        return _view(conn, source, at_us, segment_names)
    for stmt in (f"DROP TABLE IF EXISTS {_BASE}", f"DROP TABLE IF EXISTS {_WORSE}", _CREATE,
                 f"CREATE TEMP TABLE {_BASE.split('.')[1]} (user_id TEXT PRIMARY KEY, "
                 "recency_days INTEGER, frequency INTEGER, monetary INTEGER) WITHOUT ROWID",
                 f"CREATE TEMP TABLE {_WORSE.split('.')[1]} (metric INTEGER, v INTEGER, "
                 "w INTEGER, PRIMARY KEY (metric, v)) WITHOUT ROWID"):
        conn.execute(stmt)
    try:
        base = _BASE
        if source is None:
            conn.execute(_FILL_BASE, params)
        else:
            base = _FROM_SOURCE.format(source=source)
        at = {"at": at_us, "day": params["day"]}
        n, sr, sf, sm = conn.execute(f"SELECT COUNT(*), SUM(recency_days), SUM(frequency), "
                                     f"SUM(monetary) FROM {base}", at).fetchone()
        if n:
            for metric, col, order in _METRICS if scores else ():  # fixed names, never input
                conn.execute(_FILL_WORSE.format(col=col, order=order, base=base),
                             {"metric": metric, **at})
            params = {"n": n, "sr": sr, "sf": sf, "sm": sm, **at}
            params.update({f"s{i}": name for i, name in enumerate(segment_names)})
            conn.execute(_FILL.format(scores=_SCORES, joins=_SCORE_JOINS, base=base) if scores
                         else _FILL.format(scores="NULL, NULL, NULL", joins="", base=base),
                         params)
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {_BASE}")
        conn.execute(f"DROP TABLE IF EXISTS {_WORSE}")
    return RFM_TABLE


def _drop(conn: sqlite3.Connection) -> None:
    """Drop the RFM of an earlier call: a table, or a view and its parameters."""
    row = conn.execute("SELECT type FROM sqlite_temp_master WHERE name = 'rfm'").fetchone()
    if row is not None:
        conn.execute("DROP VIEW temp.rfm" if row[0] == "view" else "DROP TABLE temp.rfm")
    conn.execute(f"DROP TABLE IF EXISTS {_PARAMS}")


@dataclass(frozen=True)
class SegmentMeans:
    """What the segment of a user needs besides the user's own metrics, exactly: T, the
    number N of users with a purchase before T and the sums of their metrics (the means are
    sum / N, compared as x * N against the sum). Sums are None when N is 0."""

    at_us: int
    n: int
    sum_recency_days: int | None
    sum_frequency: int | None
    sum_monetary_fen: int | None
    segment_names: tuple[str, ...]  # indexed by 4 * R_near + 2 * F_high + M_high


def segment_means(conn: sqlite3.Connection, source: str, at_us: int,
                  segment_names: Sequence[str]) -> SegmentMeans:
    """The means of the per-user summary `source` of the purchase events before `at_us`
    (audience.materialise_summary): one aggregate pass over it."""
    if len(segment_names) != 8:
        raise ValueError("eight segment names, indexed by code")
    n, sr, sf, sm = conn.execute(
        f"SELECT COUNT(*), SUM((?1 - last_ts) / ?2), SUM(n), SUM(COALESCE(amount, 0)) "
        f"FROM {source}", (at_us, DAY_US)).fetchone()
    return SegmentMeans(at_us, int(n), sr, sf, sm, tuple(segment_names))


def segment_sql(bind: Callable[[Any], str], means: SegmentMeans, last_ts: str, n: str,
                amount: str) -> dict[str, str]:
    """SQL for rfm.recency_days, frequency, monetary and segment over one user's summary
    columns (`last_ts`, `n`, `amount`: NULL when the user has no purchase before T, and then
    so is each field), with the values bound by `bind(value) -> placeholder`. The segment
    makes the materialised table's integer comparisons with the sums, x * N <= S, as
    comparisons with bound integer thresholds, which is the same for integers x and N > 0:
    x * N <= S iff x <= floor(S / N), x * N >= S iff x >= ceil(S / N); and recency, the whole
    days in T - last_ts > 0, is <= k iff last_ts > T - (k + 1) days."""
    recency = f"(({bind(means.at_us)} - {last_ts}) / {DAY_US})"
    monetary = f"(CASE WHEN {n} IS NULL THEN NULL ELSE COALESCE({amount}, 0) END)"
    out = {"recency_days": recency, "frequency": n, "monetary": monetary}
    if not means.n:  # no buyer: every user's fields are null
        out["segment"] = "NULL"
        return out
    assert means.sum_recency_days is not None and means.sum_frequency is not None
    assert means.sum_monetary_fen is not None
    near_after = means.at_us - (means.sum_recency_days // means.n + 1) * DAY_US
    f_min = -(-means.sum_frequency // means.n)
    m_min = -(-means.sum_monetary_fen // means.n)
    # a decision tree on R near, F high, M high: three tests a row (cheaper than a code
    # computed then matched against eight cases); names[code], code = 4 * R + 2 * F + M
    r_near, f_high, m_high = bind(near_after), bind(f_min), bind(m_min)
    names = [bind(name) for name in means.segment_names]

    def by_m(code: int) -> str:
        return (f"(CASE WHEN COALESCE({amount}, 0) >= {m_high} THEN {names[code + 1]} "
                f"ELSE {names[code]} END)")

    def by_f(code: int) -> str:
        return f"(CASE WHEN {n} >= {f_high} THEN {by_m(code + 2)} ELSE {by_m(code)} END)"
    out["segment"] = (f"(CASE WHEN {n} IS NULL THEN NULL WHEN {last_ts} > {r_near} "
                      f"THEN {by_f(4)} ELSE {by_f(0)} END)")
    return out


def _view(conn: sqlite3.Connection, source: str, at_us: int,
          segment_names: Sequence[str]) -> str:
    """temp.rfm as a view over the tick's summary `source` (see the module's docstring)."""
    day = DAY_US
    m = segment_means(conn, source, at_us, segment_names)
    n, sr, sf, sm = m.n, m.sum_recency_days, m.sum_frequency, m.sum_monetary_fen
    values = {"at": at_us, "day": day, "n": n, "sr": sr, "sf": sf, "sm": sm,
              **{f"s{i}": name for i, name in enumerate(segment_names)}}
    conn.execute(f"CREATE TEMP TABLE {_PARAMS.split('.')[1]} ({', '.join(_PARAM_NAMES)})")
    conn.execute(f"INSERT INTO {_PARAMS} VALUES ({', '.join('?' * len(_PARAM_NAMES))})",
                 [values[k] for k in _PARAM_NAMES])
    body = re.sub(r":(\w+)", lambda m: f"(SELECT {m.group(1)} FROM {_PARAMS})",
                  _VIEW_BODY.format(source=source))
    conn.execute(f"CREATE TEMP VIEW rfm AS {body}")
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
