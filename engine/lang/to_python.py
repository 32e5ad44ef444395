"""Compile a typed condition to a Python closure: per-event triggers and `explain`.

The closure takes an evaluation context (`Ctx`: the user's facts, the time T, the triggering
event) and returns True, False or None (unknown), with exactly the semantics of the SQL
compiler: visibility `ts < T`, windows `T - W <= ts < T`, three-valued logic, money in fen,
floor division for day counts, division by zero -> unknown. The tree is compiled once; no
tree is walked per evaluation.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from typing import Any, Callable, Mapping, Protocol, Sequence

from ..timeutil import from_micros
from . import typed as t
from .values import DAY_US, HOUR_US, literal, local_midnight_us

Fn = Callable[["Ctx", Any], Any]


@dataclass(frozen=True)
class EventRow:
    ts: int  # microseconds since the epoch
    amount: int | None = None  # fen
    props: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = ""
    user_id: str = ""
    type: str = ""


class Facts(Protocol):
    """What the evaluator needs to know about one user (the store provides it)."""

    user_id: str
    attrs: Mapping[str, Any]
    rfm: Mapping[str, Any]  # recency_days, frequency, monetary, r, f, m, segment; {} if none

    def events(self, event_type: str) -> Sequence[EventRow]:
        """All of the user's events of that type, sorted by ts (the closure applies ts < T)."""
        ...

    def activity_bounds(self, before: int) -> tuple[int | None, int | None]:
        """(first, last) ts of any event of the user with ts < before."""
        ...


@dataclass(frozen=True)
class Lifecycle:
    new_within: int = 7 * DAY_US
    active_within: int = 7 * DAY_US
    sleeping_within: int = 30 * DAY_US


@dataclass
class Ctx:
    facts: Facts
    T: int
    tz: tzinfo
    event: EventRow | None = None
    lifecycle: Lifecycle = Lifecycle()
    attrs: Mapping[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.attrs = self.facts.attrs  # one lookup less on the hot path


def compile_condition(expr: t.TExpr) -> Callable[[Ctx], bool]:
    """A condition matches only when it is True (unknown does not match)."""
    fn = _compile(expr)

    def matches(ctx: Ctx) -> bool:
        return fn(ctx, None) is True
    return matches


def compile_value(expr: t.TExpr) -> Callable[[Ctx], Any]:
    """The value of any sub-expression (True/False/None for conditions), for `explain`."""
    fn = _compile(expr)

    def value(ctx: Ctx) -> Any:
        return fn(ctx, None)
    return value


# -- helpers with SQL semantics ----------------------------------------------------------------

def _floordiv(a: int, b: int) -> int:
    return a // b


def lifecycle_of(ctx: Ctx) -> str:
    """new / active / sleeping / churned as of ctx.T (LANGUAGE.md "Lifecycle")."""
    T = ctx.T
    first, last = ctx.facts.activity_bounds(T)
    signup = ctx.facts.attrs.get("signup_at")
    first_seen = signup if isinstance(signup, int) and signup < T else first
    lc = ctx.lifecycle
    if first_seen is not None and T - lc.new_within <= first_seen < T:
        return "new"
    if last is not None and last >= T - lc.active_within:
        return "active"
    if last is not None and last >= T - lc.sleeping_within:
        return "sleeping"
    return "churned"


def local_day(ts: int, tz: tzinfo) -> int:
    d = from_micros(ts, tz).date()
    return d.toordinal() - 719163  # days since 1970-01-01


# -- the compiler ----------------------------------------------------------------------------

def _compile(n: t.TExpr) -> Fn:  # noqa: C901 - one dispatch over the node types
    if isinstance(n, t.TLit):
        v = literal(n.value, n.type)
        return lambda c, r: v
    if isinstance(n, t.TList):
        items = [_compile(i) for i in n.items]
        return lambda c, r: tuple(f(c, r) for f in items)
    if isinstance(n, t.TUserAttr):
        name = n.name
        if name == "user_id":
            return lambda c, r: c.facts.user_id
        return lambda c, r: c.attrs.get(name)
    if isinstance(n, t.TEventField):
        return _field_getter(n.name, n.standard, trigger=True)
    if isinstance(n, t.TRowField):
        return _field_getter(n.name, n.standard, trigger=False)
    if isinstance(n, t.TRfm):
        key = n.name
        return lambda c, r: c.facts.rfm.get(key)
    if isinstance(n, t.TLifecycle):
        return lambda c, r: lifecycle_of(c)
    if isinstance(n, t.TNow):
        return lambda c, r: c.T
    if isinstance(n, t.TAgg):
        return _aggregate(n)
    if isinstance(n, t.TCall):
        return _call(n)
    if isinstance(n, t.TArith):
        return _arith(n)
    if isinstance(n, t.TNeg):
        inner = _compile(n.operand)

        def neg(c: Ctx, r: Any) -> Any:
            v = inner(c, r)
            return None if v is None else -v
        return neg
    if isinstance(n, t.TCompare):
        return _compare(n)
    if isinstance(n, t.TIn):
        return _membership(n)
    if isinstance(n, t.TStr):
        return _strings(n)
    if isinstance(n, t.TIsNull):
        inner = _compile(n.operand)
        if n.negated:
            return lambda c, r: inner(c, r) is not None
        return lambda c, r: inner(c, r) is None
    if isinstance(n, (t.TAnd, t.TOr)):
        # Kleene logic: `and` stops at the first False, `or` at the first True
        return _kleene([_compile(i) for i in n.items], isinstance(n, t.TOr))
    if isinstance(n, t.TNot):
        inner = _compile(n.operand)

        def not_(c: Ctx, r: Any) -> Any:
            v = inner(c, r)
            return None if v is None else not v
        return not_
    raise TypeError(f"cannot compile {type(n).__name__}")  # pragma: no cover


def _kleene(parts: list[Fn], decisive: bool) -> Fn:
    def logical(c: Ctx, r: Any) -> Any:
        unknown = False
        for p in parts:
            v = p(c, r)
            if v is decisive:
                return decisive
            if v is None:
                unknown = True
        return None if unknown else not decisive
    return logical


def _field_getter(name: str, standard: bool, trigger: bool) -> Fn:
    def row_of(c: Ctx, r: Any) -> Any:
        return c.event if trigger else r
    if standard:
        def std(c: Ctx, r: Any) -> Any:
            row = row_of(c, r)
            return None if row is None else getattr(row, name)
        return std

    def prop(c: Ctx, r: Any) -> Any:
        row = row_of(c, r)
        return None if row is None else row.props.get(name)
    return prop


def _aggregate(n: t.TAgg) -> Fn:
    event, func, prop = n.event, n.func, n.prop
    window = n.window // timedelta(microseconds=1) if n.window is not None else None
    where = _compile(n.where) if n.where is not None else None
    getter = _field_getter(prop, n.prop_standard, trigger=False) if prop else None

    def rows(c: Ctx) -> list[EventRow]:
        T = c.T
        lo = T - window if window is not None else None
        out = []
        for e in c.facts.events(event):
            if e.ts >= T:
                break
            if lo is not None and e.ts < lo:
                continue
            if where is not None and where(c, e) is not True:
                continue
            out.append(e)
        return out

    if func == "count":
        return lambda c, r: len(rows(c))
    if func == "exists":
        return lambda c, r: len(rows(c)) > 0
    if func == "last":
        def last(c: Ctx, r: Any) -> Any:
            rs = rows(c)
            return rs[-1].ts if rs else None
        return last
    if func == "first":
        def first(c: Ctx, r: Any) -> Any:
            rs = rows(c)
            return rs[0].ts if rs else None
        return first
    if func in ("days_with", "streak"):
        def days(c: Ctx) -> set[int]:
            return {local_day(e.ts, c.tz) for e in rows(c)}
        if func == "days_with":
            return lambda c, r: len(days(c))

        def streak(c: Ctx, r: Any) -> Any:
            ds = days(c)
            today = local_day(c.T, c.tz)
            anchor = today if today in ds else today - 1
            k = 0
            while anchor - k in ds:
                k += 1
            return k
        return streak
    assert getter is not None

    def values(c: Ctx) -> list[Any]:
        return [v for v in (getter(c, e) for e in rows(c)) if v is not None]
    if func == "sum":
        return lambda c, r: sum(values(c))
    if func == "avg":
        def avg(c: Ctx, r: Any) -> Any:
            vs = values(c)
            return (sum(vs) / len(vs)) if vs else None
        return avg
    if func == "min":
        return lambda c, r: min(values(c), default=None)
    return lambda c, r: max(values(c), default=None)


def _call(n: t.TCall) -> Fn:
    func = n.func
    args = [_compile(a) for a in n.args]
    if func == "coalesce":
        def coalesce(c: Ctx, r: Any) -> Any:
            for a in args:
                v = a(c, r)
                if v is not None:
                    return v
            return None
        return coalesce
    (arg,) = args
    arg_type = n.args[0].type

    def as_instant(c: Ctx, v: int) -> int:
        return local_midnight_us(v, c.tz) if arg_type == t.DATE else v

    if func in ("days_since", "hours_since", "days_until"):
        unit = HOUR_US if func == "hours_since" else DAY_US
        until = func == "days_until"

        def since(c: Ctx, r: Any) -> Any:
            v = arg(c, r)
            if v is None:
                return None
            at = as_instant(c, v)
            return _floordiv(at - c.T, unit) if until else _floordiv(c.T - at, unit)
        return since
    if func == "hour":
        def hour(c: Ctx, r: Any) -> Any:
            v = arg(c, r)
            return None if v is None else from_micros(v, c.tz).hour
        return hour
    if func == "weekday":
        def weekday(c: Ctx, r: Any) -> Any:
            v = arg(c, r)
            if v is None:
                return None
            if arg_type == t.DATE:
                return (v + 3) % 7 + 1  # 1970-01-01 was a Thursday
            return from_micros(v, c.tz).isoweekday()
        return weekday
    if func == "lower":
        table = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

        def lower(c: Ctx, r: Any) -> Any:
            v = arg(c, r)
            return None if v is None else v.translate(table)  # ASCII only, as SQLite
        return lower
    if func == "len":
        list_attr = isinstance(n.args[0], t.TUserAttr) and t.item_of(arg_type) is not None

        def length(c: Ctx, r: Any) -> Any:
            v = arg(c, r)
            if v is None:
                return 0 if list_attr else None
            return len(v)
        return length
    raise TypeError(f"cannot compile function {func}")  # pragma: no cover


def _money_scale(n: t.TArith) -> tuple[int, int]:
    """Multipliers that bring plain numbers into fen where they meet money (+ and -)."""
    if n.op in ("+", "-") and n.type == t.MONEY:
        return (100 if n.left.type == t.NUMBER else 1, 100 if n.right.type == t.NUMBER else 1)
    return (1, 1)


def _arith(n: t.TArith) -> Fn:
    left, right = _compile(n.left), _compile(n.right)
    ls, rs = _money_scale(n)
    op = n.op
    date_left = n.left.type == t.DATE
    date_right = n.right.type == t.DATE

    def arith(c: Ctx, r: Any) -> Any:
        a, b = left(c, r), right(c, r)
        if a is None or b is None:
            return None
        if date_left:
            a = local_midnight_us(a, c.tz)
        if date_right:
            b = local_midnight_us(b, c.tz)
        a, b = a * ls, b * rs
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0:
            return None
        return a / b
    return arith


def _money_cmp(n: t.TCompare) -> tuple[int, int]:
    lt, rt = n.left.type, n.right.type
    if t.MONEY in (lt, rt):
        return (100 if lt == t.NUMBER else 1, 100 if rt == t.NUMBER else 1)
    return (1, 1)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}


def _compare(n: t.TCompare) -> Fn:
    left, right = _compile(n.left), _compile(n.right)
    ls, rs = _money_cmp(n)
    cmp = _OPS[n.op]
    if isinstance(n.right, t.TLit) and n.right.value is not None:
        # the common shape `x op literal`: the literal (already in fen when needed) is a
        # constant, and a user attribute is read inline
        const = literal(n.right.value, n.right.type) * rs
        if isinstance(n.left, t.TUserAttr) and n.left.name != "user_id" and ls == 1:
            name = n.left.name

            def attr_vs_const(c: Ctx, r: Any) -> Any:
                a = c.attrs.get(name)
                return None if a is None else cmp(a, const)
            return attr_vs_const

        def vs_const(c: Ctx, r: Any) -> Any:
            a = left(c, r)
            return None if a is None else cmp(a * ls, const)
        return vs_const
    if ls == 1 and rs == 1:
        def compare(c: Ctx, r: Any) -> Any:
            a = left(c, r)
            if a is None:
                return None
            b = right(c, r)
            if b is None:
                return None
            return cmp(a, b)
        return compare

    def compare_money(c: Ctx, r: Any) -> Any:
        a, b = left(c, r), right(c, r)
        if a is None or b is None:
            return None
        return cmp(a * ls, b * rs)
    return compare_money


def _membership(n: t.TIn) -> Fn:
    item, container = _compile(n.item), _compile(n.container)
    negated = n.negated
    scale = 100 if (n.item.type == t.NUMBER and t.item_of(n.container.type) == t.MONEY) else 1
    cscale = 100 if (n.item.type == t.MONEY and t.item_of(n.container.type) == t.NUMBER) else 1

    absent_is_empty = isinstance(n.container, t.TUserAttr)  # an absent list attribute is []
    fast = _fast_membership(n, scale, cscale)
    if fast is not None:
        return fast

    def member(c: Ctx, r: Any) -> Any:
        v = item(c, r)
        values = container(c, r)
        if values is None:
            if not absent_is_empty:
                return None
            values = ()
        if v is None:
            return None if values else negated
        v = v * scale
        found = False
        unknown = False
        for x in values:
            if x is None:
                unknown = True
            elif x * cscale == v:
                found = True
                break
        if found:
            return not negated
        if unknown:
            return None
        return negated
    return member


def _fast_membership(n: t.TIn, scale: int, cscale: int) -> Fn | None:
    """`attr in ["a", "b"]` against a set, and `"x" in user.tags`: no closure per element."""
    negated = n.negated
    c = n.container
    if (isinstance(c, t.TList) and all(isinstance(i, t.TLit) for i in c.items)
            and scale == 1 and cscale == 1):
        values = [literal(i.value, i.type) for i in c.items]  # type: ignore[union-attr]
        has_null = any(v is None for v in values)
        members = frozenset(v for v in values if v is not None)
        empty = not values
        item = _compile(n.item)

        def in_set(ctx: Ctx, r: Any) -> Any:
            v = item(ctx, r)
            if v is None:
                return negated if empty else None
            if v in members:
                return not negated
            return None if has_null else negated
        return in_set
    if (isinstance(c, t.TUserAttr) and isinstance(n.item, t.TLit) and n.item.value is not None
            and scale == 1 and cscale == 1):
        name = c.name
        wanted = literal(n.item.value, n.item.type)

        def in_attr(ctx: Ctx, r: Any) -> Any:
            values = ctx.attrs.get(name)
            if values is None:
                return negated
            return (wanted in values) != negated
        return in_attr
    return None


def _strings(n: t.TStr) -> Fn:
    left, right = _compile(n.left), _compile(n.right)
    starts = n.op == "starts_with"

    def strings(c: Ctx, r: Any) -> Any:
        a, b = left(c, r), right(c, r)
        if a is None or b is None:
            return None
        return a.startswith(b) if starts else b in a
    return strings


__all__ = ["Ctx", "EventRow", "Facts", "Lifecycle", "compile_condition", "compile_value",
           "lifecycle_of", "local_day"]
