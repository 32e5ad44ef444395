"""Typed conditions compiled to SQL: audience selection inside the database.

Each aggregate in a condition (`count(order_paid, 30d)`, `last(cart_add)` ...) becomes one
temporary table keyed by user_id, filled by a single GROUP BY over the covering events index;
the audience is then one pass over `users` with LEFT JOINs to those tables. No Python loop
runs over users, and every value reaches SQL as a bound parameter.

The semantics are exactly those of the Python closures (`engine.lang.to_python`), which a
property test checks: visibility ts < T, windows T - W <= ts < T, three-valued logic, money
in fen, floor division for day counts, division by zero -> NULL, list attributes that are
absent behave as empty lists.
"""
from __future__ import annotations

import itertools
import re
from decimal import Decimal
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from typing import Any, Callable, Mapping, Sequence

from ..lang import typed as t
from ..lang.to_python import EventRow, local_day
from ..lang.values import DAY_US, HOUR_US, fixed_offset_us, literal, local_midnight_us
from . import event_summary, rfm_sql
from .dialect import SQLITE

_counter = itertools.count()
_JULIAN_EPOCH = 2440587.5
_PARAM = re.compile(r"\?(\d+)")


@dataclass
class Query:
    """The statements of one audience selection: temp tables first, then the SELECT."""

    prelude: list[str] = field(default_factory=list)
    # (inner: the condition needs a row there, table and alias, ON condition)
    joins: list[tuple[bool, str, str]] = field(default_factory=list)
    cleanup: list[str] = field(default_factory=list)


@dataclass
class Env:
    T: int
    tz: tzinfo
    type_ids: Mapping[str, int]
    rfm_table: str | None = None
    event: EventRow | None = None
    lifecycle: tuple[int, int, int] = (7 * DAY_US, 7 * DAY_US, 30 * DAY_US)
    # type_id -> a shared per-user summary of that event type before T (materialise_summary):
    # unwindowed, unfiltered count/exists/first/last/sum(amount) read it instead of a pass
    summary: Callable[[int], str] | None = None
    # the stored event summary is fresh (event_summary.is_fresh): `lifecycle` reads each user's
    # activity row from it instead of seeking in the events, and `exists(E, W)` (no filter)
    # reads the per-type summary (`summary`) instead of a GROUP BY over the window
    stored_summary: bool = False
    # (purchase event type id, the means as of T) when no rule reads rfm.r/f/m: rfm.segment
    # and the metrics are then computed in the query from that type's per-user summary
    # (`summary`), with the means bound, instead of being read from an RFM table
    rfm_means: Callable[[], tuple[int, rfm_sql.SegmentMeans]] | None = None


class Compiler:
    """Compile one condition for one evaluation time.

    Values are bound as numbered parameters (?1, ?2 ...) collected in `self.params`, so an
    expression can appear twice in the SQL text (floor division needs that) and still carry
    each value once."""

    def __init__(self, env: Env, query: Query) -> None:
        self.env = env
        self.q = query
        self.params: list[Any] = []
        self.offset = fixed_offset_us(env.tz)
        self.needs_rfm = False
        self.rfm_strict = False
        self.has_signup = False
        self.strict: set[int] = set()
        self._activity: tuple[str, str, str] | None = None
        self._summaries: dict[int, tuple[str, str]] = {}  # type_id -> (alias, "table alias")
        self._rfm_inline: dict[str, str] | None = None

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return f"?{len(self.params)}"

    # -- time helpers (fixed-offset zones in pure SQL; others through registered functions) --
    def local_day_sql(self, ts_sql: str) -> str:
        if self.offset is not None:
            return _floordiv(f"({ts_sql}) + {self.offset}", DAY_US)
        return f"zl_local_day({ts_sql})"

    def midnight_sql(self, days_sql: str) -> str:
        if self.offset is not None:
            return f"(({days_sql}) * {DAY_US} - {self.offset})"
        return f"zl_local_midnight({days_sql})"

    @staticmethod
    def date_days_sql(text_sql: str) -> str:
        return f"CAST(julianday({text_sql}) - {_JULIAN_EPOCH} AS INTEGER)"

    # -- the compiler ----------------------------------------------------------------------
    def expr(self, n: t.TExpr, row: str | None = None) -> str:  # noqa: C901
        if isinstance(n, t.TLit):
            v = literal(n.value, n.type)
            return "NULL" if v is None else self.bind(v)
        if isinstance(n, t.TList):
            raise TypeError("a list literal is only valid on the right of `in`")
        if isinstance(n, t.TUserAttr):
            if n.name == "user_id":
                return "u.user_id"
            col = f"u.{SQLITE.ident(n.name)}"
            if n.type == t.DATE:
                return self.date_days_sql(col)
            if t.item_of(n.type) is not None:
                raise TypeError("a list attribute is only valid in `in`, `contains` and len()")
            return col
        if isinstance(n, t.TEventField):
            ev = self.env.event
            if ev is None:
                return "NULL"
            value = getattr(ev, n.name) if n.standard else ev.props.get(n.name)
            return "NULL" if value is None else self.bind(value)
        if isinstance(n, t.TRowField):
            assert row is not None
            if n.standard:
                col = {"ts": "ts", "amount": "amount_fen", "event_id": "event_id",
                       "user_id": "user_id"}[n.name]
                return f"{row}.{col}"
            sql = f"json_extract({row}.props, {self.bind('$.' + n.name)})"
            return self.date_days_sql(sql) if n.type == t.DATE else sql
        if isinstance(n, t.TRfm):
            if inlines_rfm(self.env, n):
                return self.rfm_inline(n)
            self.needs_rfm = True
            self.rfm_strict = self.rfm_strict or id(n) in self.strict
            return f"rfm.{SQLITE.ident(n.name)}"
        if isinstance(n, t.TLifecycle):
            return self.lifecycle()
        if isinstance(n, t.TNow):
            return self.bind(self.env.T)
        if isinstance(n, t.TAgg):
            return self.aggregate(n)
        if isinstance(n, t.TCall):
            return self.call(n, row)
        if isinstance(n, t.TArith):
            return self.arith(n, row)
        if isinstance(n, t.TNeg):
            return f"(-({self.expr(n.operand, row)}))"
        if isinstance(n, t.TCompare):
            return self.compare(n, row)
        if isinstance(n, t.TIn):
            return self.membership(n, row)
        if isinstance(n, t.TStr):
            a, b = self.expr(n.left, row), self.expr(n.right, row)
            if n.op == "starts_with":
                return f"(substr({a}, 1, length({b})) = {b})"
            return f"(instr({a}, {b}) > 0)"
        if isinstance(n, t.TIsNull):
            return f"(({self.expr(n.operand, row)}) IS {'NOT ' if n.negated else ''}NULL)"
        if isinstance(n, (t.TAnd, t.TOr)):
            joiner = " AND " if isinstance(n, t.TAnd) else " OR "
            return "(" + joiner.join(self.expr(i, row) for i in n.items) + ")"
        if isinstance(n, t.TNot):
            return f"(NOT ({self.expr(n.operand, row)}))"
        raise TypeError(f"cannot compile {type(n).__name__}")  # pragma: no cover

    def lifecycle(self) -> str:
        """`lifecycle` at T, computed in the query for the rows that reach it (no per-tick
        table over every user). Each test is one seek in the (user_id, ts) index: the last
        event before T is >= X iff some event lies in [X, T), and the first one is >= X iff
        none lies before X while one lies in [X, T) (read only when signup_at does not
        decide `new`)."""
        new_w, active_w, sleeping_w = self.env.lifecycle
        if self.env.stored_summary:
            return self.lifecycle_from_summary()
        T = self.bind(self.env.T)

        def any_in(lo: str | None, hi: str) -> str:
            low = f" AND lc_e.ts >= {lo}" if lo is not None else ""
            return (f"EXISTS (SELECT 1 FROM events lc_e WHERE lc_e.user_id = u.user_id"
                    f"{low} AND lc_e.ts < {hi})")

        since_new = self.bind(self.env.T - new_w)
        first_new = f"(NOT {any_in(None, since_new)} AND {any_in(since_new, T)})"
        new = (f"(CASE WHEN u.\"signup_at\" < {T} THEN u.\"signup_at\" >= {since_new} "
               f"ELSE {first_new} END)") if self.has_signup else first_new
        return (f"(CASE WHEN {new} THEN 'new' "
                f"WHEN {any_in(self.bind(self.env.T - active_w), T)} THEN 'active' "
                f"WHEN {any_in(self.bind(self.env.T - sleeping_w), T)} THEN 'sleeping' "
                "ELSE 'churned' END)")

    def lifecycle_from_summary(self) -> str:
        """`lifecycle` from each user's activity row of the stored event summary (first and
        last event before T, joined once): the same cases as `lifecycle`, without a seek
        except one for each user with an event at or after T."""
        new_w, active_w, sleeping_w = self.env.lifecycle
        if self._activity is None:
            table, on, first, last, seek = event_summary.activity_sql(self.bind, self.env.T)
            self.q.joins.append((False, table, on))
            self._activity = (first, last, seek)
        first, last, seek = self._activity
        T = self.bind(self.env.T)
        since_new = self.bind(self.env.T - new_w)
        first_new = f"({first} >= {since_new})"
        new = (f"(CASE WHEN u.\"signup_at\" < {T} THEN u.\"signup_at\" >= {since_new} "
               f"ELSE {first_new} END)") if self.has_signup else first_new
        active, sleeping = self.bind(self.env.T - active_w), self.bind(self.env.T - sleeping_w)

        def by_last(x: str) -> str:  # NULL (no event before T): churned
            return (f"(CASE WHEN {x} >= {active} THEN 'active' WHEN {x} >= {sleeping} "
                    "THEN 'sleeping' ELSE 'churned' END)")
        return (f"(CASE WHEN {new} THEN 'new' WHEN {last} < {T} THEN {by_last(last)} "
                f"WHEN {last} >= {T} THEN {seek.format(value=by_last('MAX(lc_e.ts)'))} "
                "ELSE 'churned' END)")

    def summary_join(self, type_id: int, inner: bool) -> str:
        """The alias of the per-type summary of `type_id`, joined once per query whatever
        reads it (aggregates, RFM); inner as soon as one reader needs a row there."""
        assert self.env.summary is not None
        joined = self._summaries.get(type_id)
        if joined is None:
            name = f"zl_agg_{next(_counter)}"
            joined = self._summaries[type_id] = (name, f"{self.env.summary(type_id)} {name}")
            self.q.joins.append((inner, joined[1], f"{name}.user_id = u.user_id"))
        elif inner:
            self.q.joins = [(True, tb, on) if tb == joined[1] else (i, tb, on)
                            for i, tb, on in self.q.joins]
        return joined[0]

    def rfm_inline(self, n: t.TRfm) -> str:
        """rfm.segment, recency_days, frequency or monetary from the purchase summary."""
        assert self.env.rfm_means is not None
        type_id, means = self.env.rfm_means()
        name = self.summary_join(type_id, id(n) in self.strict)
        if self._rfm_inline is None:
            self._rfm_inline = rfm_sql.segment_sql(self.bind, means, f"{name}.last_ts",
                                                   f"{name}.n", f"{name}.amount")
        return self._rfm_inline[n.name]

    def aggregate(self, n: t.TAgg) -> str:
        type_id = self.env.type_ids.get(n.event)
        name = f"zl_agg_{next(_counter)}"
        col = _summary_column(n)
        if col is not None and type_id is not None and self.env.summary is not None:
            name = self.summary_join(type_id, id(n) in self.strict)
            if n.func in ("count", "sum"):
                return f"COALESCE({name}.{col}, 0)"
            if n.func == "exists":
                return f"({name}.{col} IS NOT NULL)"
            return f"{name}.{col}"
        if (n.func == "exists" and n.window is not None and n.where is None
                and type_id is not None and self.env.summary is not None
                and self.env.stored_summary):
            # an event in [T - W, T) exists iff the last one before T is at or after T - W
            name = self.summary_join(type_id, id(n) in self.strict)
            since = self.bind(self.env.T - n.window // timedelta(microseconds=1))
            return f"({name}.last_ts IS NOT NULL AND {name}.last_ts >= {since})"
        T = self.env.T
        where = [f"e.type_id = {self.bind(type_id if type_id is not None else -1)}",
                 f"e.ts < {self.bind(T)}"]
        if n.window is not None:
            where.append(f"e.ts >= {self.bind(T - n.window // timedelta(microseconds=1))}")
        if n.where is not None:
            where.append(f"({self.expr(n.where, 'e')})")
        cond = " AND ".join(where)
        if n.func in ("count", "exists"):
            value = "COUNT(*)"
        elif n.func == "last":
            value = "MAX(e.ts)"
        elif n.func == "first":
            value = "MIN(e.ts)"
        elif n.func == "days_with":
            value = f"COUNT(DISTINCT {self.local_day_sql('e.ts')})"
        elif n.func == "streak":
            return self.streak(name, cond, id(n) in self.strict)
        else:
            assert n.prop is not None
            col = self.expr(t.TRowField(n.type, n.span, n.event, n.prop, n.prop_standard), "e")
            value = f"{n.func.upper()}({col})"
        self.q.prelude.append(f"CREATE TEMP TABLE {name} (user_id TEXT PRIMARY KEY, v) "
                              "WITHOUT ROWID")
        self.q.prelude.append(f"INSERT INTO {name} SELECT e.user_id, {value} FROM events e "
                              f"WHERE {cond} GROUP BY e.user_id")
        self.q.joins.append((id(n) in self.strict, name, f"{name}.user_id = u.user_id"))
        self.q.cleanup.append(f"DROP TABLE IF EXISTS {name}")
        if n.func in ("count", "sum", "days_with"):
            return f"COALESCE({name}.v, 0)"
        if n.func == "exists":
            return f"({name}.v IS NOT NULL)"
        return f"{name}.v"

    def streak(self, name: str, cond: str, inner: bool) -> str:
        """Consecutive local days with an event, ending today or yesterday (gaps and islands)."""
        day = self.local_day_sql("e.ts")
        today = local_day(self.env.T, self.env.tz)
        days = f"{name}_d"
        self.q.prelude.append(f"CREATE TEMP TABLE {days} AS SELECT DISTINCT e.user_id AS "
                              f"user_id, {day} AS d FROM events e WHERE {cond}")
        self.q.prelude.append(f"CREATE TEMP TABLE {name} (user_id TEXT PRIMARY KEY, v) "
                              "WITHOUT ROWID")
        self.q.prelude.append(
            f"INSERT INTO {name} SELECT user_id, COUNT(*) FROM ("
            f"  SELECT user_id, d + ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY d DESC)"
            f"    AS grp, MAX(d) OVER (PARTITION BY user_id) AS top FROM {days}"
            f") WHERE top >= {self.bind(today - 1)} AND grp = top + 1 GROUP BY user_id")
        self.q.joins.append((inner, name, f"{name}.user_id = u.user_id"))
        self.q.cleanup += [f"DROP TABLE IF EXISTS {name}", f"DROP TABLE IF EXISTS {days}"]
        return f"COALESCE({name}.v, 0)"

    def call(self, n: t.TCall, row: str | None) -> str:
        func = n.func
        if func == "coalesce":
            return "COALESCE(" + ", ".join(self.expr(a, row) for a in n.args) + ")"
        arg = n.args[0]
        if func == "len":
            if isinstance(arg, t.TUserAttr) and t.item_of(arg.type) is not None:
                return f"COALESCE(json_array_length(u.{SQLITE.ident(arg.name)}), 0)"
            if isinstance(arg, t.TList):
                return self.bind(len(arg.items))
            return f"length({self.expr(arg, row)})"
        a = self.expr(arg, row)
        if func in ("days_since", "hours_since", "days_until"):
            at = self.midnight_sql(a) if arg.type == t.DATE else f"({a})"
            unit = HOUR_US if func == "hours_since" else DAY_US
            T = self.bind(self.env.T)
            diff = f"({at} - {T})" if func == "days_until" else f"({T} - {at})"
            return _floordiv(diff, unit)
        if func == "hour":
            if self.offset is not None:
                local = f"(({a}) + {self.offset})"
                return f"(((({local} % {DAY_US}) + {DAY_US}) % {DAY_US}) / {HOUR_US})"
            return f"zl_hour({a})"
        if func == "weekday":
            d = a if arg.type == t.DATE else self.local_day_sql(a)
            return f"((((({d}) + 3) % 7) + 7) % 7 + 1)"
        if func == "lower":
            return f"lower({a})"
        raise TypeError(f"cannot compile function {func}")  # pragma: no cover

    def arith(self, n: t.TArith, row: str | None) -> str:
        a, b = self.expr(n.left, row), self.expr(n.right, row)
        if n.left.type == t.DATE:
            a = self.midnight_sql(a)
        if n.right.type == t.DATE:
            b = self.midnight_sql(b)
        if n.op in ("+", "-") and n.type == t.MONEY:
            if n.left.type == t.NUMBER:
                a = f"(({a}) * 100)"
            if n.right.type == t.NUMBER:
                b = f"(({b}) * 100)"
        if n.op == "/":
            return f"(CASE WHEN ({b}) = 0 THEN NULL ELSE CAST(({a}) AS REAL) / ({b}) END)"
        return f"(({a}) {n.op} ({b}))"

    def compare(self, n: t.TCompare, row: str | None) -> str:
        a, b = self.expr(n.left, row), self.expr(n.right, row)
        if t.MONEY in (n.left.type, n.right.type):
            if n.left.type == t.NUMBER:
                a = f"(({a}) * 100)"
            if n.right.type == t.NUMBER:
                b = f"(({b}) * 100)"
        op = "=" if n.op == "==" else n.op
        return f"(({a}) {op} ({b}))"

    def membership(self, n: t.TIn, row: str | None) -> str:
        item = self.expr(n.item, row)
        inner = t.item_of(n.container.type)
        if n.item.type == t.NUMBER and inner == t.MONEY:
            item = f"(({item}) * 100)"
        not_ = "NOT " if n.negated else ""
        c = n.container
        if isinstance(c, t.TList):
            scale = n.item.type == t.MONEY and inner == t.NUMBER
            values = [self.expr(it, row) for it in c.items]
            if scale:
                values = [f"(({v}) * 100)" for v in values]
            return f"(({item}) {not_}IN ({', '.join(values)}))"
        if isinstance(c, t.TUserAttr):
            attr = self.bind(c.name)
            if isinstance(n.item, t.TLit) and n.item.value is not None:
                # the inverted (attr, value, user_id) index: a semi-join, no per-user scan
                return (f"(u.user_id {not_}IN (SELECT user_id FROM user_list_items "
                        f"WHERE attr = {attr} AND value = {item}))")
            return (f"(({item}) {not_}IN (SELECT value FROM user_list_items "
                    f"WHERE attr = {attr} AND user_id = u.user_id))")
        raise TypeError("`in` needs a list literal or a list attribute")

    # -- assembling the statement --------------------------------------------------------------
    def select(self, cond: t.TExpr, has_signup: bool) -> str:
        self.has_signup = has_signup
        self.strict = strict_refs(cond)
        if isinstance(cond, t.TAnd):
            # SQLite tests the conjuncts in the order written: the ones that seek per row
            # (lifecycle) go last, so they run only for rows the cheap ones let through.
            # A conjunction is TRUE iff every conjunct is, in any order (no side effects).
            cond = t.TAnd(cond.type, cond.span, tuple(sorted(
                cond.items, key=lambda c: uses(c, t.TLifecycle))))
        where = self.expr(cond)
        joins = list(self.q.joins)
        if self.needs_rfm:
            assert self.env.rfm_table is not None, "RFM was not materialised"
            joins.append((self.rfm_strict, f"{self.env.rfm_table} rfm", "rfm.user_id = u.user_id"))
        # A table the condition needs a row in (an inner join) drives the query: its users
        # (buyers, an RFM table: a third of all users) are looked up in `users`, rather than
        # every user being scanned and looked up in it; SQLite's planner, without statistics
        # on the temp tables, scans `users`. CROSS JOIN fixes the order; the rows are the same.
        inner = [j for j in joins if j[0]]
        head = "users u"
        if inner:
            _, table, on = inner[0]
            head = f"{table} CROSS JOIN users u ON {on}"
            joins.remove(inner[0])
        rest = " ".join(f"{'JOIN' if i else 'LEFT JOIN'} {table} ON {on}"
                        for i, table, on in sorted(joins, key=lambda j: not j[0]))
        return f"SELECT u.user_id FROM {head} {rest} WHERE {where} ORDER BY u.user_id"

    def run(self, conn: Any, sql: str) -> Any:
        """Execute with the numbered parameters the statement uses (?1 .. ?max)."""
        used = [int(m) for m in _PARAM.findall(sql)]
        return conn.execute(sql, self.params[:max(used, default=0)])


_COALESCED = ("count", "sum", "exists", "days_with", "streak")


def strict_refs(cond: t.TExpr) -> set[int]:
    """Aggregates and RFM fields that must be non-null for the condition to be TRUE.

    A top-level conjunct such as `days_since(last(order_paid)) >= 7` is unknown for a user
    with no order, so that user can never match: the aggregate's table can be INNER-joined,
    and SQLite then drives the query from the (small) aggregate instead of every user."""
    out: set[int] = set()
    conjuncts = cond.items if isinstance(cond, t.TAnd) else (cond,)
    for c in conjuncts:
        zero = _rejects_zero(c)
        if zero is not None:
            out.add(id(zero))
            continue
        if isinstance(c, (t.TCompare, t.TStr)) or (
                isinstance(c, t.TIn) and isinstance(c.container, t.TList) and c.container.items):
            # (`null in []` is false and `null not in []` true: only non-empty lists reject)
            stack: list[t.TExpr] = list(t.tchildren(c))
            while stack:
                n = stack.pop()
                if isinstance(n, t.TAgg):
                    if n.func not in _COALESCED:
                        out.add(id(n))
                    continue
                if isinstance(n, t.TRfm):
                    out.add(id(n))
                    continue
                if isinstance(n, (t.TArith, t.TNeg)) or (isinstance(n, t.TCall)
                                                          and n.func != "coalesce"):
                    stack.extend(t.tchildren(n))
    return out


_ZERO_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: bool(a == b), "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b), "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b), ">=": lambda a, b: bool(a >= b)}
_MIRROR = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _rejects_zero(c: t.TExpr) -> t.TAgg | None:
    """The counting aggregate of a conjunct that a user without any of its events fails:
    `exists(E, W)` alone, or `count(E) >= 1`-like comparisons with a literal that 0 (the
    value of a user with no row) does not satisfy. Inner-joining its table then changes no
    result, and the aggregate's (usually small) table drives the query."""
    if isinstance(c, t.TAgg) and c.func == "exists":
        return c
    if not isinstance(c, t.TCompare):
        return None
    agg, lit, op = c.left, c.right, c.op
    if isinstance(agg, t.TLit):
        agg, lit, op = lit, agg, _MIRROR[op]
    if not (isinstance(agg, t.TAgg) and agg.func in ("count", "days_with", "streak")
            and isinstance(lit, t.TLit) and isinstance(lit.value, (int, float, Decimal))
            and not isinstance(lit.value, bool)):
        return None
    return None if _ZERO_TESTS[op](0, lit.value) else agg


def _floordiv(a: str, unit: int) -> str:
    """floor(a / unit) for a positive unit, whatever the sign of a (SQLite truncates)."""
    return f"((({a}) - (((({a}) % {unit}) + {unit}) % {unit})) / {unit})"


def inlines_rfm(env: Env, n: t.TRfm) -> bool:
    """Whether `n` is computed in the query from the purchase summary (not a score)."""
    return env.rfm_means is not None and env.summary is not None and n.name in (
        "segment", "recency_days", "frequency", "monetary")


def uses(expr: t.TExpr, kind: type) -> bool:
    return any(isinstance(n, kind) for n in t.walk(expr))


def register_time_functions(conn: Any, tz: tzinfo) -> None:
    """For zones whose offset changes (DST), local-time arithmetic calls back into Python."""
    conn.create_function("zl_local_day", 1, lambda ts: None if ts is None else local_day(ts, tz),
                         deterministic=True)
    conn.create_function("zl_local_midnight", 1,
                         lambda d: None if d is None else local_midnight_us(d, tz),
                         deterministic=True)
    from ..timeutil import from_micros
    conn.create_function("zl_hour", 1,
                         lambda ts: None if ts is None else from_micros(ts, tz).hour,
                         deterministic=True)


def _summary_column(n: t.TAgg) -> str | None:
    """The column of a per-type summary (materialise_summary) that answers `n`, if any."""
    if n.window is not None or n.where is not None:
        return None
    if n.func == "sum":
        return "amount" if n.prop == "amount" and n.prop_standard else None
    return {"count": "n", "exists": "n", "last": "last_ts", "first": "first_ts"}.get(n.func)


def materialise_summary(conn: Any, T: int, type_id: int, stored: bool = False) -> str:
    """Per user with an event of `type_id` before T: how many, the first and last ts and the
    sum of amounts (fen). One pass shared by every rule of a tick that counts or dates that
    event type without a window or a filter, and by RFM (its purchase metrics). With `stored`
    (the stored event summary is fresh), copied from it, corrected as of T, when it can."""
    name = f"zl_act_e{type_id}_{next(_counter)}"  # zl_act_: dropped with the tick's tables
    conn.execute(f"CREATE TEMP TABLE {name} (user_id TEXT PRIMARY KEY, n, first_ts, last_ts, "
                 "amount) WITHOUT ROWID")
    if stored and event_summary.as_of(conn, T, type_id, name):
        return name
    conn.execute(f"INSERT INTO {name} SELECT user_id, COUNT(*), MIN(ts), MAX(ts), "
                 "SUM(amount_fen) FROM events WHERE type_id = ? AND ts < ? GROUP BY user_id",
                 (type_id, T))
    return name


def select_users(conn: Any, cond: t.TExpr, env: Env, has_signup: bool,
                 rfm: Callable[[], str] | None = None) -> list[str]:
    """The user ids for whom `cond` is TRUE at env.T, in user-id order."""
    if fixed_offset_us(env.tz) is None:
        register_time_functions(conn, env.tz)
    q = Query()
    comp = Compiler(env, q)
    if any(isinstance(n, t.TRfm) and not inlines_rfm(env, n) for n in t.walk(cond)) \
            and env.rfm_table is None:
        if rfm is None:
            raise ValueError("the condition uses rfm.* but no RFM table is available")
        env.rfm_table = rfm()
    sql = comp.select(cond, has_signup)
    try:
        for stmt in q.prelude:
            comp.run(conn, stmt)
        return [r[0] for r in comp.run(conn, sql)]
    finally:
        for stmt in q.cleanup:
            conn.execute(stmt)


__all__: Sequence[str] = ("Env", "Compiler", "select_users", "materialise_summary")
