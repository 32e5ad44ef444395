"""Every query of `engine report`: fires, delivery, goals, activity and cohorts, in SQL.

The window's fires are first copied once into a temporary table with what the report needs
of each (its local day, its delivery status, the instant it reached the user), and each
user's activity into another (first and last event, a bit per local day) by one ordered pass
over the events; every figure is then one grouped query over those tables (conversions: one
query per goal over the events). Nothing loops over users in Python.

Delivery status of a fire (outcome `fire` or `deferred`), from its outbox steps:
`failed` when a step failed or died, else `unknown` when a step's outcome is unknown, else
`sent` when every step was sent, else `pending`. Exposure: the send time of the fire's first
sent message or coupon step (any sent step when it has neither kind); for a holdout fire, its
evaluation time (the would-be send).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, tzinfo
from typing import Any, Mapping, Sequence

from ..lang import typed as t
from ..lang.values import DAY_US, local_midnight_us
from .audience import Compiler, Env, Query, register_time_functions, uses
from .ledger import ITEMS_OF_FIRE

# Read by the report's window scan; added by engine migration 0004 (engine/store/schema.py).
REPORT_INDEXES: Sequence[str] = (
    "CREATE INDEX IF NOT EXISTS fires_tick ON fires(tick_at, rule_id)",
)

WINDOW = "zl_report_fires"


@dataclass(frozen=True)
class GoalQuery:
    """A rule's goal as the report's SQL needs it."""

    rule_id: str
    type_id: int | None
    within_us: int
    where: t.TExpr | None  # None: no `where`, or one that cannot run in SQL (see supported)


def where_supported(cond: t.TExpr) -> bool:
    """A goal's `where` runs in SQL when it reads only the goal event's fields, user
    attributes, literals and `now`: no aggregates, `rfm.*` or `lifecycle`."""
    return not any(uses(cond, kind) for kind in (t.TAgg, t.TRfm, t.TLifecycle))


class _Sql(Compiler):
    """The condition compiler, with the goal event (row `g`) as the condition's event."""

    def __init__(self, T: int, tz: tzinfo, type_ids: Mapping[str, int], event: str = "") -> None:
        super().__init__(Env(T, tz, type_ids), Query())
        self.event = event

    def expr(self, n: t.TExpr, row: str | None = None) -> str:
        if isinstance(n, t.TEventField):
            return super().expr(t.TRowField(n.type, n.span, self.event, n.name, n.standard), "g")
        return super().expr(n, row)


def _compiler(conn: Any, T: int, tz: tzinfo, event: str = "") -> _Sql:
    """A compiler at T; in a zone whose offset changes, local days are Python callbacks."""
    sql = _Sql(T, tz, {}, event)
    if sql.offset is None:
        register_time_functions(conn, tz)
    return sql


def _has_fires(conn: Any) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'fires'").fetchone() is not None


def load_window(conn: Any, tz: tzinfo, lo: int, hi: int) -> None:
    """The fires with lo <= tick_at < hi into the temporary table WINDOW (replaced)."""
    sql = _compiler(conn, hi, tz)
    conn.execute(f"DROP TABLE IF EXISTS temp.{WINDOW}")
    conn.execute(f"CREATE TEMP TABLE {WINDOW} (fire_id TEXT PRIMARY KEY, rule_id TEXT, "
                 "user_id TEXT, variant TEXT, outcome TEXT, reason TEXT, day INTEGER, "
                 "status TEXT, exposed_at INTEGER) WITHOUT ROWID")
    if not _has_fires(conn):
        return
    lo_p, hi_p = sql.bind(lo), sql.bind(hi)
    day = sql.local_day_sql("f.tick_at")
    reach = "o.kind IN ('message', 'coupon')"
    items = ITEMS_OF_FIRE.format(item="o.item_id", fire="f.fire_id")
    sql.run(conn, f"""
        INSERT INTO {WINDOW}
        SELECT f.fire_id, f.rule_id, f.user_id, f.variant, f.outcome, f.reason, {day},
          CASE WHEN f.outcome NOT IN ('fire', 'deferred') THEN NULL
               WHEN SUM(o.state IN ('failed', 'dead')) > 0 THEN 'failed'
               WHEN SUM(o.state = 'unknown') > 0 THEN 'unknown'
               WHEN SUM(o.state <> 'sent') > 0 THEN 'pending'
               ELSE 'sent' END,
          CASE WHEN f.outcome = 'suppressed' AND f.reason = 'holdout' THEN f.eval_at
               WHEN f.outcome NOT IN ('fire', 'deferred') THEN NULL
               WHEN SUM({reach}) > 0
                 THEN MIN(CASE WHEN o.state = 'sent' AND {reach} THEN o.updated_at END)
               ELSE MIN(CASE WHEN o.state = 'sent' THEN o.updated_at END) END
        FROM fires f LEFT JOIN outbox o ON {items}
             AND f.outcome IN ('fire', 'deferred')
        WHERE f.tick_at >= {lo_p} AND f.tick_at < {hi_p}
        GROUP BY f.fire_id""")


def window_counts(conn: Any) -> list[tuple[str, int, str, str | None, str | None, int]]:
    """(rule id, local day, outcome, reason, delivery status, fires) over the window."""
    return [(r, int(d), o, why, s, int(n)) for r, d, o, why, s, n in conn.execute(
        f"SELECT rule_id, day, outcome, reason, status, COUNT(*) FROM {WINDOW} "
        "GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2")]


def window_variants(conn: Any) -> list[tuple[str, str | None]]:
    """(rule id, variant) of the window's fires that acted (outcome fire or deferred)."""
    return [(r, v) for r, v in conn.execute(
        f"SELECT DISTINCT rule_id, variant FROM {WINDOW} WHERE outcome IN ('fire', 'deferred')")]


def conversions(conn: Any, tz: tzinfo, at: int, goal: GoalQuery, event: str
                ) -> list[tuple[bool, str | None, int, int]]:
    """Per group of a rule's exposed users: (holdout?, variant, users, converted users).
    A user converts when a goal event of theirs lies in (exposure, exposure + within] for
    one of their exposures, and before `at`."""
    if goal.type_id is None:
        return []
    sql = _compiler(conn, at, tz, event)
    rule, tid, within, T = (sql.bind(goal.rule_id), sql.bind(goal.type_id),
                            sql.bind(goal.within_us), sql.bind(at))
    where = f" AND ({sql.expr(goal.where)})" if goal.where is not None else ""
    users = " JOIN users u ON u.user_id = r.user_id" if goal.where is not None else ""
    rows = sql.run(conn, f"""
        SELECT hold, variant, COUNT(*), SUM(conv) FROM (
          SELECT r.user_id, r.outcome = 'suppressed' AS hold, r.variant,
                 MAX(EXISTS (SELECT 1 FROM events g WHERE g.type_id = {tid}
                             AND g.user_id = r.user_id AND g.ts > r.exposed_at
                             AND g.ts <= r.exposed_at + {within} AND g.ts < {T}{where})) AS conv
          FROM {WINDOW} r{users}
          WHERE r.rule_id = {rule} AND r.exposed_at IS NOT NULL
          GROUP BY r.user_id, hold, r.variant)
        GROUP BY hold, variant""")
    return [(bool(h), v, int(n), int(c or 0)) for h, v, n, c in rows]


USERS = "zl_report_users"
BITS = 62  # days per activity mask: sums of distinct powers of two below 2**62 fit in 64 bits


@dataclass(frozen=True)
class Activity:
    """Per-user activity, materialised once by `load_activity`: each user's first and last
    event before T and, for every local day from `first` to `last`, whether the user had an
    event that day (bit d - first of the masks m0, m1 ..., BITS days to a mask)."""

    first: int  # local day numbers
    last: int
    T: int

    @property
    def masks(self) -> int:
        return (self.last - self.first) // BITS + 1

    def active_on(self, day_sql: str, alias: str = "a") -> str:
        """SQL: 1 when the user of row `alias` had an event on local day `day_sql` (in
        [first, last]), else 0 (also for a user with no events)."""
        x = f"(({day_sql}) - {self.first})"
        pick = " ".join(f"WHEN {c} THEN {alias}.m{c}" for c in range(self.masks))
        return (f"COALESCE((CASE {x} / {BITS} {pick} END >> ({x} % {BITS})) & 1, 0)")


def load_activity(conn: Any, tz: tzinfo, first: int, last: int, T: int) -> Activity:
    """One ordered pass over the (user_id, ts) events index for every event before T: the
    temporary table USERS (user_id, first_ts, last_ts, m0 ...) keyed by user id."""
    sql = _compiler(conn, T, tz)
    act = Activity(first, last, T)
    T_p = sql.bind(T)
    # inside a mask's range ts is positive, so plain division is the floor
    day = (f"((e.ts + {sql.offset}) / {DAY_US})" if sql.offset is not None
           else "zl_local_day(e.ts)")
    masks = []
    for c in range(act.masks):
        lo_d = first + c * BITS
        lo_p, hi_p = (sql.bind(local_midnight(sql, lo_d)),
                      sql.bind(local_midnight(sql, lo_d + BITS)))
        masks.append(f"SUM(DISTINCT CASE WHEN e.ts >= {lo_p} AND e.ts < {hi_p} "
                     f"THEN 1 << ({day} - {lo_d}) END)")
    conn.execute(f"DROP TABLE IF EXISTS temp.{USERS}")
    conn.execute(f"CREATE TEMP TABLE {USERS} (user_id TEXT PRIMARY KEY, first_ts INTEGER, "
                 f"last_ts INTEGER, {', '.join(f'm{c} INTEGER' for c in range(act.masks))}) "
                 "WITHOUT ROWID")
    sql.run(conn, f"INSERT INTO {USERS} SELECT e.user_id, MIN(e.ts), MAX(e.ts), "
                  f"{', '.join(masks)} FROM events e WHERE e.ts < {T_p} GROUP BY e.user_id")
    return act


def local_midnight(sql: Compiler, day: int) -> int:
    return local_midnight_us(day, sql.env.tz)


def activity(conn: Any, act: Activity) -> tuple[int, int, int]:
    """Distinct users with an event in the last day, 7 days and 30 days before T."""
    T = act.T
    row = conn.execute(f"SELECT COALESCE(SUM(last_ts >= ?1), 0), COALESCE(SUM(last_ts >= ?2), 0), "
                       f"COALESCE(SUM(last_ts >= ?3), 0) FROM {USERS}",
                       (T - DAY_US, T - 7 * DAY_US, T - 30 * DAY_US)).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def daily_active(conn: Any, act: Activity, days: Sequence[int]) -> list[int]:
    """Users with an event on each of the given local days (each in [first, last])."""
    if not days:
        return []
    cols = ", ".join(f"COALESCE(SUM({act.active_on(str(int(d)))}), 0)" for d in days)
    return [int(x) for x in conn.execute(f"SELECT {cols} FROM {USERS} a").fetchone()]


def cohorts(conn: Any, tz: tzinfo, act: Activity, signup_column: bool,
            offsets: Sequence[int] = (1, 7, 30)) -> list[tuple[int, int, int, list[int]]]:
    """Users first seen from local day act.first to T, grouped by the local Monday of their
    signup day: (Monday's day number, users, latest signup day, [users active on signup day
    + k for each k in offsets]). First seen is `signup_at` when `signup_column` (users
    without events count too), else the first event."""
    sql = _compiler(conn, act.T, tz)
    lo_p, hi_p = sql.bind(local_midnight(sql, act.first)), sql.bind(act.T)
    if signup_column:
        seen = (f"SELECT u.user_id, u.\"signup_at\" AS ts FROM users u "
                f"WHERE u.\"signup_at\" >= {lo_p} AND u.\"signup_at\" < {hi_p}")
    else:
        seen = (f"SELECT a.user_id, a.first_ts AS ts FROM {USERS} a "
                f"WHERE a.first_ts >= {lo_p} AND a.first_ts < {hi_p}")
    day = sql.local_day_sql("s.ts")
    actives = [f"SUM(CASE WHEN c.d + {int(k)} <= {act.last} THEN "
               f"{act.active_on(f'c.d + {int(k)}')} ELSE 0 END)" for k in offsets]
    rows = sql.run(conn, f"""
        SELECT c.d - ((((c.d + 3) % 7) + 7) % 7) AS monday, COUNT(*), MAX(c.d),
               {', '.join(actives)}
        FROM (SELECT s.user_id, {day} AS d FROM ({seen}) s) c
        LEFT JOIN {USERS} a ON a.user_id = c.user_id
        GROUP BY monday ORDER BY monday""")
    return [(int(r[0]), int(r[1]), int(r[2]), [int(x or 0) for x in r[3:]]) for r in rows]


def drop_window(conn: Any) -> None:
    conn.execute(f"DROP TABLE IF EXISTS temp.{WINDOW}")
    conn.execute(f"DROP TABLE IF EXISTS temp.{USERS}")


def within_us(within: timedelta) -> int:
    return within // timedelta(microseconds=1)


__all__: Sequence[str] = ("REPORT_INDEXES", "GoalQuery", "Activity", "where_supported",
                          "load_window", "window_counts", "window_variants", "conversions",
                          "load_activity", "activity", "daily_active", "cohorts",
                          "drop_window", "within_us")
