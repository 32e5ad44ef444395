"""The typed condition tree: what the type checker produces and the compilers consume.

Every name is resolved (user attribute, event property, RFM field, aggregate over an event
type) and every node knows its type, so the SQL and Python compilers never look anything up
and never guess. Literals are already converted: numbers are `Decimal`, money literals stay
yuan `Decimal` (compilers convert to fen where they meet a money operand), durations are
`timedelta`, dates `date`, timestamps aware `datetime`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Union

Span = tuple[int, int]

NUMBER, MONEY, STRING, BOOL = "number", "money", "string", "bool"
TIMESTAMP, DATE, DURATION, NULL = "timestamp", "date", "duration", "null"

RFM_FIELDS = {
    "recency_days": NUMBER, "frequency": NUMBER, "monetary": MONEY,
    "r": NUMBER, "f": NUMBER, "m": NUMBER, "segment": STRING,
}
RFM_SEGMENTS = ("important_value", "important_develop", "important_keep", "important_retain",
                "general_value", "general_develop", "general_keep", "general_retain")
LIFECYCLE_STAGES = ("new", "active", "sleeping", "churned")


def list_of(t: str) -> str:
    return f"list<{t}>"


def item_of(t: str) -> str | None:
    return t[5:-1] if t.startswith("list<") else None


def numeric(t: str) -> bool:
    return t in (NUMBER, MONEY)


@dataclass(frozen=True)
class TNode:
    type: str
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class TLit(TNode):
    value: Any


@dataclass(frozen=True)
class TList(TNode):
    items: tuple["TExpr", ...]


@dataclass(frozen=True)
class TUserAttr(TNode):
    name: str  # "user_id" or an attribute declared in the data model


@dataclass(frozen=True)
class TEventField(TNode):
    """A field of the triggering event (`event.x`, or a bare name in a trigger's `where`)."""

    name: str
    standard: bool  # event_id, user_id, ts, amount: columns, not props


@dataclass(frozen=True)
class TRowField(TNode):
    """A field of the event row being aggregated (inside `count(E where ...)`)."""

    event: str
    name: str
    standard: bool


@dataclass(frozen=True)
class TRfm(TNode):
    name: str


@dataclass(frozen=True)
class TLifecycle(TNode):
    pass


@dataclass(frozen=True)
class TNow(TNode):
    pass


@dataclass(frozen=True)
class TAgg(TNode):
    """count, sum, avg, min, max, last, first, exists, days_with, streak over one event type."""

    func: str
    event: str
    prop: str | None  # for sum/avg/min/max
    prop_standard: bool
    where: "TExpr | None"
    window: timedelta | None


@dataclass(frozen=True)
class TCall(TNode):
    """days_since, hours_since, days_until, lower, len, coalesce, hour, weekday."""

    func: str
    args: tuple["TExpr", ...]


@dataclass(frozen=True)
class TArith(TNode):
    op: str  # + - * /
    left: "TExpr"
    right: "TExpr"


@dataclass(frozen=True)
class TNeg(TNode):
    operand: "TExpr"


@dataclass(frozen=True)
class TCompare(TNode):
    op: str  # == != < <= > >=
    left: "TExpr"
    right: "TExpr"


@dataclass(frozen=True)
class TIn(TNode):
    item: "TExpr"
    container: "TExpr"  # a list literal or a list-typed value
    negated: bool


@dataclass(frozen=True)
class TStr(TNode):
    """`a contains b` on strings, or `a starts_with b`."""

    op: str  # contains | starts_with
    left: "TExpr"
    right: "TExpr"


@dataclass(frozen=True)
class TIsNull(TNode):
    operand: "TExpr"
    negated: bool


@dataclass(frozen=True)
class TAnd(TNode):
    items: tuple["TExpr", ...]


@dataclass(frozen=True)
class TOr(TNode):
    items: tuple["TExpr", ...]


@dataclass(frozen=True)
class TNot(TNode):
    operand: "TExpr"


TExpr = Union[TLit, TList, TUserAttr, TEventField, TRowField, TRfm, TLifecycle, TNow, TAgg,
              TCall, TArith, TNeg, TCompare, TIn, TStr, TIsNull, TAnd, TOr, TNot]


def walk(node: TExpr) -> list[TExpr]:
    """Every node of the tree, parents before children."""
    out: list[TExpr] = []
    stack: list[TExpr] = [node]
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(reversed(tchildren(n)))
    return out


def tchildren(n: TExpr) -> tuple[TExpr, ...]:
    if isinstance(n, (TList,)):
        return n.items
    if isinstance(n, (TAnd, TOr)):
        return n.items
    if isinstance(n, TCall):
        return n.args
    if isinstance(n, (TArith, TCompare, TStr)):
        return (n.left, n.right)
    if isinstance(n, TIn):
        return (n.item, n.container)
    if isinstance(n, (TNeg, TNot, TIsNull)):
        return (n.operand,)
    if isinstance(n, TAgg) and n.where is not None:
        return (n.where,)
    return ()
