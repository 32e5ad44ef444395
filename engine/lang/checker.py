"""Type checking: names resolved against the data model, every node given a type.

Errors are collected, not thrown at the first one: a node that fails to check becomes an
`ANY`-typed placeholder so one mistake does not cascade into ten. Each error carries the
character span of the offending token and, where it can, a fix ("did you mean `user.tier`?").
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

from ..config import DataModel, Field, STANDARD_EVENT_FIELDS
from ..durations import BadLiteral, parse_duration
from ..errors import ConditionError
from . import syntax as s
from .typed import (BOOL, DATE, DURATION, LIFECYCLE_STAGES, MONEY, NULL, NUMBER, RFM_FIELDS,
                    RFM_SEGMENTS, STRING, TIMESTAMP, TAgg, TAnd, TArith, TCall, TCompare,
                    TEventField, TExpr, TIn, TIsNull, TLifecycle, TList, TLit, TNeg, TNot, TNow,
                    TOr, TRfm, TRowField, TStr, TUserAttr, item_of, list_of, numeric)

ANY = "?"  # the type of a node that already failed to check

# Names operators reach for from other tools, mapped to ours (better than edit distance).
_FUNCTION_ALIASES = {
    "days_ago": "days_since", "hours_ago": "hours_since", "since": "days_since",
    "size": "len", "length": "len", "count_if": "count", "countif": "count",
    "ifnull": "coalesce", "nvl": "coalesce", "lowercase": "lower", "tolower": "lower",
    "dow": "weekday", "day_of_week": "weekday", "dayofweek": "weekday",
    "tag": "has_tag", "tagged": "has_tag", "any": "exists", "latest": "last",
    "earliest": "first", "total": "sum", "average": "avg", "mean": "avg",
}

AGGREGATES = ("count", "sum", "avg", "min", "max", "last", "first", "exists", "days_with",
              "streak")
FUNCTIONS = ("days_since", "hours_since", "days_until", "has_tag", "lower", "len", "coalesce",
             "hour", "weekday", "date", "timestamp")
_WORDS = {NUMBER: "a number", MONEY: "an amount of money", STRING: "a string",
          BOOL: "true/false", TIMESTAMP: "a timestamp", DATE: "a date",
          DURATION: "a duration", NULL: "null", ANY: "a value"}


def describe(t: str) -> str:
    item = item_of(t)
    if item is not None:
        return f"a list of {describe(item).split(' ', 1)[-1]}s"
    return _WORDS.get(t, t)


@dataclass(frozen=True)
class Scope:
    """What names mean where a condition appears."""

    model: DataModel
    tz: ZoneInfo
    trigger_event: str | None = None  # `event.x` refers to this event type
    bare_event: str | None = None  # bare names are this event's fields (a trigger's `where`)


def check(text: str, scope: Scope) -> TExpr:
    """Parse and type-check a condition; raise the first ConditionError (see check_all)."""
    node, errors = check_all(text, scope)
    if errors:
        raise errors[0]
    assert node is not None
    return node


def check_all(text: str, scope: Scope) -> tuple[TExpr | None, list[ConditionError]]:
    """Parse and type-check; return the typed tree (None on errors) and every error found."""
    try:
        tree = s.parse(text)
    except ConditionError as exc:
        return None, [exc]
    checker = _Checker(scope)
    typed = checker.expr(tree, None)
    if typed.type not in (BOOL, ANY):
        hint = ""
        if typed.type == NUMBER:
            hint = "compare it, e.g. `... >= 1`"
        checker.error("COND_NOT_BOOL", f"a condition must be true or false, but this is "
                      f"{describe(typed.type)}", tree.span, hint)
    if checker.errors:
        return None, checker.errors
    return typed, []


def suggest(word: str, choices: Iterable[str]) -> str:
    """Nearest choice; for dotted names, compares the part after the dot among same-head names
    (so `user.x` is not "close" to every `user.` name)."""
    pool = list(dict.fromkeys(choices))
    if "." in word:
        head, tail = word.rsplit(".", 1)
        same = {c.rsplit(".", 1)[1]: c for c in pool if c.startswith(head + ".")}
        if same:
            match = difflib.get_close_matches(tail, list(same), n=1, cutoff=0.6)
            return f"did you mean `{same[match[0]]}`?" if match else ""
    match = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else ""


class _Checker:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.model = scope.model
        self.errors: list[ConditionError] = []

    # -- helpers ---------------------------------------------------------------------------
    def error(self, code: str, message: str, span: s.Span, hint: str = "") -> TLit:
        self.errors.append(ConditionError(message, code=code, offset=span[0],
                                          length=span[1] - span[0], hint=hint))
        return TLit(ANY, span, None)

    def names(self, row: str | None) -> list[str]:
        out = ["now", "lifecycle"]
        out += [f"user.{a}" for a in ["user_id", *self.model.user]]
        out += [f"rfm.{f}" for f in RFM_FIELDS]
        trig = self.scope.trigger_event
        if trig is not None and trig in self.model.events:
            out += [f"event.{f}" for f in self.model.events[trig].field_names()]
        for ev in (row, self.scope.bare_event):
            if ev is not None and ev in self.model.events:
                out += self.model.events[ev].field_names()
        return out

    def _field_type(self, f: Field) -> str:
        return str(f.type)

    # -- dispatch --------------------------------------------------------------------------
    def expr(self, n: s.Node, row: str | None) -> TExpr:
        if isinstance(n, s.Lit):
            return self.lit(n)
        if isinstance(n, s.ListLit):
            return self.list_lit(n, row)
        if isinstance(n, s.Name):
            return self.name(n, row)
        if isinstance(n, s.Call):
            return self.call(n, row)
        if isinstance(n, s.Unary):
            return self.unary(n, row)
        if isinstance(n, s.Logical):
            return self.logical(n, row)
        if isinstance(n, s.Binary):
            return self.binary(n, row)
        if isinstance(n, s.IsNull):
            return TIsNull(BOOL, n.span, self.expr(n.operand, row), n.negated)
        if isinstance(n, s.Where):
            return self.error("COND_SYNTAX", "`where` filters only the first argument of an "
                              "aggregate, e.g. count(order_paid where amount > 50, 30d)", n.span)
        raise AssertionError(f"unknown node {n!r}")  # pragma: no cover

    def lit(self, n: s.Lit) -> TExpr:
        if n.kind == "number":
            return TLit(NUMBER, n.span, n.value)
        if n.kind == "string":
            return TLit(STRING, n.span, n.value)
        if n.kind == "bool":
            return TLit(BOOL, n.span, n.value)
        if n.kind == "null":
            return TLit(NULL, n.span, None)
        try:
            return TLit(DURATION, n.span, parse_duration(n.value))
        except BadLiteral as exc:
            return self.error("COND_BAD_LITERAL", str(exc), n.span)

    def list_lit(self, n: s.ListLit, row: str | None) -> TExpr:
        items = tuple(self.expr(i, row) for i in n.items)
        t = ANY
        for it in items:
            if it.type in (ANY, NULL):
                continue
            if t == ANY:
                t = it.type
            elif not _compatible(t, it.type):
                return self.error("COND_TYPE", f"a list mixes {describe(t)} and "
                                  f"{describe(it.type)}", it.span)
            elif t == NUMBER and it.type == MONEY:
                t = MONEY
        if t.startswith("list<"):
            return self.error("COND_TYPE", "lists of lists are not supported", n.span)
        return TList(list_of(t), n.span, items)

    # -- names -----------------------------------------------------------------------------
    def name(self, n: s.Name, row: str | None) -> TExpr:
        parts, span = n.parts, n.span
        model = self.model
        if len(parts) == 1:
            word = parts[0]
            if row is not None and model.events[row].field(word):
                f = model.events[row].field(word)
                assert f is not None
                return TRowField(str(f.type), span, row, word, word in STANDARD_EVENT_FIELDS)
            bare = self.scope.bare_event
            if bare is not None and bare in model.events and model.events[bare].field(word):
                f = model.events[bare].field(word)
                assert f is not None
                return TEventField(str(f.type), span, word, word in STANDARD_EVENT_FIELDS)
            if word == "now":
                return TNow(TIMESTAMP, span)
            if word == "lifecycle":
                return TLifecycle(STRING, span)
            if word in model.events:
                return self.error("COND_TYPE", f"`{word}` is an event type, not a value",
                                  span, f"use it in an aggregate, e.g. count({word}) >= 1 or "
                                  f"days_since(last({word})) >= 7")
            if word in ("user", "event", "rfm"):
                return self.error("COND_UNKNOWN_NAME", f"`{word}` needs a field after a dot",
                                  span, f"e.g. {self._example(word)}")
            if word in FUNCTIONS or word in AGGREGATES:
                return self.error("COND_SYNTAX", f"`{word}` is a function; call it with "
                                  "parentheses", span, f"e.g. {word}(...)")
            return self.unknown(n, row)
        if len(parts) == 2:
            head, attr = parts
            if head == "user":
                if attr == "user_id":
                    return TUserAttr(STRING, span, "user_id")
                f = model.user.get(attr)
                if f is None:
                    return self.unknown(n, row, [f"user.{a}" for a in ["user_id", *model.user]])
                return TUserAttr(str(f.type), span, attr)
            if head == "event":
                ev = self.scope.trigger_event
                if ev is None:
                    return self.error("COND_EVENT_CONTEXT", f"`{n.dotted}` can only be used in "
                                      "rules with an event trigger", span,
                                      "there is no triggering event here")
                if ev not in model.events:
                    return TLit(ANY, span, None)  # the trigger itself is reported
                f = model.events[ev].field(attr)
                if f is None:
                    return self.unknown(n, row, [f"event.{x}" for x in model.events[ev].field_names()],
                                        what=f"field of `{ev}` events")
                return TEventField(str(f.type), span, attr, attr in STANDARD_EVENT_FIELDS)
            if head == "rfm":
                if attr not in RFM_FIELDS:
                    return self.unknown(n, row, [f"rfm.{x}" for x in RFM_FIELDS])
                return TRfm(RFM_FIELDS[attr], span, attr)
            if row is not None and head == row:
                f = model.events[row].field(attr)
                if f is None:
                    return self.unknown(n, row, [f"{row}.{x}" for x in model.events[row].field_names()],
                                        what=f"field of `{row}` events")
                return TRowField(str(f.type), span, row, attr, attr in STANDARD_EVENT_FIELDS)
            if head in model.events:
                return self.error("COND_TYPE", f"`{n.dotted}` is a field of every `{head}` event, "
                                  "not one value", span, f"aggregate it, e.g. "
                                  f"sum({n.dotted}, 30d) or max({n.dotted})")
        return self.unknown(n, row)

    def _example(self, head: str) -> str:
        if head == "user":
            return "user." + next(iter(self.model.user), "tier")
        if head == "rfm":
            return "rfm.segment"
        return "event.amount"

    def unknown(self, n: s.Name, row: str | None, choices: Sequence[str] | None = None,
                what: str = "name") -> TExpr:
        pool = list(choices) if choices else self.names(row) + list(self.model.events)
        hint = suggest(n.dotted, pool)
        if not hint and choices:
            shown = ", ".join(f"`{c}`" for c in list(choices)[:8])
            hint = f"known: {shown}" + (" ..." if len(choices) > 8 else "")
        return self.error("COND_UNKNOWN_NAME", f"unknown {what} `{n.dotted}`", n.span, hint)

    # -- calls -----------------------------------------------------------------------------
    def call(self, n: s.Call, row: str | None) -> TExpr:
        if n.func in AGGREGATES:
            if row is not None:
                return self.error("COND_NESTED", "aggregates cannot be nested inside a `where` "
                                  "filter", n.span)
            return self.aggregate(n)
        if n.func not in FUNCTIONS:
            alias = _FUNCTION_ALIASES.get(n.func.lower())
            hint = f"did you mean `{alias}`?" if alias else suggest(n.func, AGGREGATES + FUNCTIONS)
            return self.error("COND_UNKNOWN_FUNCTION", f"unknown function `{n.func}`",
                              n.name_span, hint)
        return self.function(n, row)

    def _arity(self, n: s.Call, lo: int, hi: int) -> bool:
        if lo <= len(n.args) <= hi:
            return True
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        self.error("COND_ARGUMENTS", f"{n.func}() takes {want} argument(s), got {len(n.args)}",
                   n.span)
        return False

    def aggregate(self, n: s.Call) -> TExpr:
        func = n.func
        model = self.model
        if not n.args:
            return self.error("COND_ARGUMENTS", f"{func}() needs an event type, e.g. "
                              f"{func}(order_paid)", n.span)
        windowed_max = 1 if func == "streak" else 2
        if not self._arity(n, 1, windowed_max):
            return TLit(ANY, n.span, None)
        subject: s.Node = n.args[0]
        where: s.Node | None = None
        if isinstance(subject, s.Where):
            where = subject.cond
            subject = subject.subject
        wants_prop = func in ("sum", "avg", "min", "max")
        if not isinstance(subject, s.Name) or len(subject.parts) != (2 if wants_prop else 1):
            example = f"{func}(order_paid.amount, 90d)" if wants_prop else f"{func}(order_paid)"
            return self.error("COND_ARGUMENTS", f"the first argument of {func}() must be "
                              + ("an event field" if wants_prop else "an event type"),
                              subject.span, f"e.g. {example}")
        event = subject.parts[0]
        if event not in model.events:
            return self.error("UNKNOWN_EVENT", f"unknown event type `{event}`",
                              (subject.span[0], subject.span[0] + len(event)),
                              suggest(event, model.events) or
                              "declare it under `events:` in datamodel.yaml")
        etype = model.events[event]
        prop: str | None = None
        rtype = NUMBER
        if wants_prop:
            prop = subject.parts[1]
            f = etype.field(prop)
            if f is None:
                return self.error("COND_UNKNOWN_NAME", f"`{event}` events have no field `{prop}`",
                                  subject.span, suggest(prop, etype.field_names()))
            ft = str(f.type)
            allowed = (NUMBER, MONEY) if func in ("sum", "avg") else (NUMBER, MONEY, TIMESTAMP,
                                                                       DATE)
            if ft not in allowed:
                return self.error("COND_TYPE", f"{func}() needs a numeric field, but "
                                  f"`{event}.{prop}` is {describe(ft)}", subject.span)
            rtype = ft
        elif func in ("last", "first"):
            rtype = TIMESTAMP
        elif func == "exists":
            rtype = BOOL
        typed_where = None
        if where is not None:
            typed_where = self.expr(where, event)
            if typed_where.type not in (BOOL, ANY):
                self.error("COND_TYPE", f"a `where` filter must be true or false, but this is "
                           f"{describe(typed_where.type)}", where.span)
        window = None
        if len(n.args) == 2:
            w = n.args[1]
            if isinstance(w, s.Lit) and w.kind == "duration":
                try:
                    window = parse_duration(w.value)
                except BadLiteral as exc:
                    return self.error("COND_BAD_LITERAL", str(exc), w.span)
            else:
                return self.error("COND_ARGUMENTS", f"the second argument of {func}() is a "
                                  "window, a duration such as 30d", w.span)
        elif func == "days_with":
            return self.error("COND_ARGUMENTS", "days_with() needs a window, e.g. "
                              f"days_with({event}, 7d)", n.span)
        return TAgg(rtype, n.span, func, event, prop,
                    bool(prop and prop in STANDARD_EVENT_FIELDS), typed_where, window)

    def function(self, n: s.Call, row: str | None) -> TExpr:
        func = n.func
        if func in ("date", "timestamp"):
            if not self._arity(n, 1, 1):
                return TLit(ANY, n.span, None)
            a = n.args[0]
            if not (isinstance(a, s.Lit) and a.kind == "string"):
                return self.error("COND_ARGUMENTS", f"{func}() takes a quoted literal, e.g. "
                                  f"{func}(\"2026-11-11\")", a.span)
            return self.date_literal(func, a)
        if func == "coalesce":
            if len(n.args) < 2:
                return self.error("COND_ARGUMENTS", "coalesce() takes at least 2 arguments",
                                  n.span)
            args = tuple(self.expr(a, row) for a in n.args)
            t = ANY
            for ta in args:
                if ta.type in (ANY, NULL):
                    continue
                if t == ANY:
                    t = ta.type
                elif not _compatible(t, ta.type):
                    return self.error("COND_TYPE", f"coalesce() mixes {describe(t)} and "
                                      f"{describe(ta.type)}", ta.span)
                elif ta.type == MONEY:
                    t = MONEY
            return TCall(t, n.span, func, args)
        if not self._arity(n, 1, 1):
            return TLit(ANY, n.span, None)
        arg = self.expr(n.args[0], row)
        at = arg.type
        if func == "has_tag":
            tags = self.model.user.get("tags")
            if tags is None or str(tags.type) != list_of(STRING):
                return self.error("COND_UNKNOWN_NAME", "has_tag() needs a `tags` user attribute "
                                  "of type list<string> in datamodel.yaml", n.span)
            if at not in (STRING, ANY):
                return self.error("COND_TYPE", f"has_tag() takes a string, not {describe(at)}",
                                  arg.span)
            return TIn(BOOL, n.span, arg, TUserAttr(list_of(STRING), n.name_span, "tags"), False)
        want: dict[str, tuple[tuple[str, ...], str]] = {
            "days_since": ((TIMESTAMP, DATE), NUMBER), "hours_since": ((TIMESTAMP, DATE), NUMBER),
            "days_until": ((TIMESTAMP, DATE), NUMBER), "lower": ((STRING,), STRING),
            "hour": ((TIMESTAMP,), NUMBER), "weekday": ((TIMESTAMP, DATE), NUMBER),
        }
        if func == "len":
            if at != ANY and at != STRING and item_of(at) is None:
                return self.error("COND_TYPE", f"len() takes a list or a string, not "
                                  f"{describe(at)}", arg.span)
            return TCall(NUMBER, n.span, func, (arg,))
        accepted, result = want[func]
        if at not in accepted and at not in (ANY, NULL):
            hint = ""
            if at == NUMBER and func.endswith("since"):
                hint = "it already counts; compare the number directly"
            return self.error("COND_TYPE", f"{func}() takes "
                              + " or ".join(describe(a) for a in accepted)
                              + f", not {describe(at)}", arg.span, hint)
        return TCall(result, n.span, func, (arg,))

    def date_literal(self, func: str, a: s.Lit) -> TExpr:
        text = str(a.value)
        try:
            if func == "date":
                return TLit(DATE, a.span, date.fromisoformat(text))
            ts = datetime.fromisoformat(text)
        except ValueError:
            example = "2026-11-11" if func == "date" else "2026-11-11T20:00:00+08:00"
            return self.error("COND_BAD_LITERAL", f"`{text}` is not a valid {func}", a.span,
                              f"write e.g. {func}(\"{example}\")")
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=self.scope.tz)
        return TLit(TIMESTAMP, a.span, ts)

    # -- operators -------------------------------------------------------------------------
    def unary(self, n: s.Unary, row: str | None) -> TExpr:
        operand = self.expr(n.operand, row)
        if n.op == "not":
            if operand.type not in (BOOL, ANY):
                return self.error("COND_TYPE", f"`not` needs a condition, but this is "
                                  f"{describe(operand.type)}", n.operand.span)
            return TNot(BOOL, n.span, operand)
        if operand.type not in (NUMBER, MONEY, DURATION, ANY):
            return self.error("COND_TYPE", f"cannot negate {describe(operand.type)}", n.span)
        return TNeg(operand.type, n.span, operand)

    def logical(self, n: s.Logical, row: str | None) -> TExpr:
        cls = TAnd if n.op == "and" else TOr
        items: list[TExpr] = []
        for src in n.items:
            side = self.expr(src, row)
            if side.type not in (BOOL, ANY):
                hint = "compare it, e.g. `count(order_paid) >= 1`" if side.type == NUMBER else ""
                self.error("COND_TYPE", f"`{n.op}` joins conditions, but this is "
                           f"{describe(side.type)}", src.span, hint)
            items.extend(side.items if isinstance(side, cls) else (side,))
        return cls(BOOL, n.span, tuple(items))

    def binary(self, n: s.Binary, row: str | None) -> TExpr:
        op = n.op
        left, right = self.expr(n.left, row), self.expr(n.right, row)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            return self.compare(n, left, right)
        if op in ("in", "not in"):
            return self.membership(n, left, right, op == "not in")
        if op == "contains":
            if item_of(left.type) is not None:
                return self.membership(n, right, left, False)
            return self.strings(n, left, right)
        if op == "starts_with":
            return self.strings(n, left, right)
        return self.arith(n, left, right)

    def compare(self, n: s.Binary, left: TExpr, right: TExpr) -> TExpr:
        lt, rt = left.type, right.type
        if ANY in (lt, rt):
            return TCompare(BOOL, n.span, n.op, left, right)
        if NULL in (lt, rt):
            fix = "is null" if n.op == "==" else "is not null"
            return self.error("COND_NULL_COMPARE", "comparing with null is never true "
                              "(null is unknown)", n.span, f"write `x {fix}`")
        if not _compatible(lt, rt):
            hint = ""
            if DURATION in (lt, rt) and (numeric(lt) or numeric(rt)):
                other = left if rt == DURATION else right
                if isinstance(other, TCall) and other.func in ("days_since", "hours_since",
                                                                "days_until"):
                    hint = f"{other.func}() already counts; compare with a plain number, e.g. 7"
                else:
                    hint = "did you mean `days_since(...)`? or compare timestamps: `now - 7d`"
            elif {lt, rt} == {TIMESTAMP, DATE}:
                hint = "compare a date with date(\"...\"), a timestamp with timestamp(\"...\")"
            elif {lt, rt} == {TIMESTAMP, NUMBER}:
                hint = "did you mean `days_since(...)`?"
            return self.error("COND_TYPE", f"cannot compare {describe(lt)} with {describe(rt)}",
                              n.op_span if n.op_span != (0, 0) else n.span, hint)
        if n.op not in ("==", "!=") and (lt == BOOL or item_of(lt) is not None):
            return self.error("COND_TYPE", f"`{n.op}` cannot order {describe(lt)}", n.op_span)
        if item_of(lt) is not None:
            return self.error("COND_TYPE", "lists cannot be compared with `==`", n.op_span,
                              "test membership with `in` or `contains`")
        self.check_enum(left, right)
        self.check_enum(right, left)
        return TCompare(BOOL, n.span, n.op, left, right)

    def membership(self, n: s.Binary, item: TExpr, container: TExpr, negated: bool) -> TExpr:
        it, ct = item.type, container.type
        if ANY in (it, ct):
            return TIn(BOOL, n.span, item, container, negated)
        inner = item_of(ct)
        if inner is None:
            hint = "write a list, e.g. `x in [\"a\", \"b\"]`"
            if ct == STRING and it == STRING:
                hint = "for text use `contains`"
            return self.error("COND_TYPE", f"`{n.op}` needs a list on the right, but this is "
                              f"{describe(ct)}", container.span, hint)
        if inner != ANY and it != NULL and not _compatible(it, inner):
            return self.error("COND_TYPE", f"cannot look for {describe(it)} in "
                              f"{describe(ct)}", item.span)
        if isinstance(container, TList):
            for element in container.items:
                self.check_enum(item, element)
        return TIn(BOOL, n.span, item, container, negated)

    def strings(self, n: s.Binary, left: TExpr, right: TExpr) -> TExpr:
        for side in (left, right):
            if side.type not in (STRING, ANY):
                return self.error("COND_TYPE", f"`{n.op}` works on strings, not "
                                  f"{describe(side.type)}", side.span)
        return TStr(BOOL, n.span, n.op, left, right)

    def arith(self, n: s.Binary, left: TExpr, right: TExpr) -> TExpr:
        lt, rt, op = left.type, right.type, n.op
        if ANY in (lt, rt):
            return TArith(ANY, n.span, op, left, right)
        result = _arith_type(op, lt, rt)
        if result is None:
            hint = ""
            if TIMESTAMP in (lt, rt) and NUMBER in (lt, rt):
                hint = "add a duration, e.g. `now - 7d`"
            return self.error("COND_TYPE", f"cannot compute {describe(lt)} {op} {describe(rt)}",
                              n.op_span, hint)
        return TArith(result, n.span, op, left, right)

    def check_enum(self, subject: TExpr, literal: TExpr) -> None:
        """A string literal compared with a field of known values must be one of them."""
        if not (isinstance(literal, TLit) and literal.type == STRING):
            return
        values = self.known_values(subject)
        if values is not None and literal.value not in values:
            shown = ", ".join(f'"{v}"' for v in values[:8])
            hint = suggest(str(literal.value), [str(v) for v in values]) or f"known: {shown}"
            self.error("COND_UNKNOWN_VALUE", f"\"{literal.value}\" is not a possible value here",
                       literal.span, hint)

    def known_values(self, node: TExpr) -> list[str] | None:
        if isinstance(node, TRfm) and node.name == "segment":
            return list(RFM_SEGMENTS)
        if isinstance(node, TLifecycle):
            return list(LIFECYCLE_STAGES)
        f: Field | None = None
        if isinstance(node, TUserAttr):
            f = self.model.user.get(node.name)
        elif isinstance(node, TRowField):
            f = self.model.events[node.event].field(node.name)
        elif isinstance(node, TEventField):
            ev = self.scope.trigger_event or self.scope.bare_event
            if ev is not None and ev in self.model.events:
                f = self.model.events[ev].field(node.name)
        if f is not None and f.enum is not None:
            return [str(v) for v in f.enum]
        return None


def _compatible(a: str, b: str) -> bool:
    if a == b or ANY in (a, b):
        return True
    if numeric(a) and numeric(b):
        return True
    ia, ib = item_of(a), item_of(b)
    if ia is not None and ib is not None:
        return _compatible(ia, ib)
    return False


def _arith_type(op: str, lt: str, rt: str) -> str | None:
    if lt == NUMBER and rt == NUMBER:
        return NUMBER
    if op in ("+", "-"):
        if lt == MONEY and rt in (MONEY, NUMBER) or rt == MONEY and lt == NUMBER:
            return MONEY
        if lt in (TIMESTAMP, DATE) and rt == DURATION:
            return TIMESTAMP
        if op == "+" and lt == DURATION and rt in (TIMESTAMP, DATE):
            return TIMESTAMP
        if op == "-" and lt == TIMESTAMP and rt == TIMESTAMP:
            return DURATION
        if lt == DURATION and rt == DURATION:
            return DURATION
        return None
    if op == "*":
        if {lt, rt} == {MONEY, NUMBER}:
            return MONEY
        if {lt, rt} == {DURATION, NUMBER}:
            return DURATION
        return None
    if op == "/":
        if lt == MONEY and rt == NUMBER:
            return MONEY
        if lt == MONEY and rt == MONEY:
            return NUMBER
        if lt == DURATION and rt == NUMBER:
            return DURATION
        if lt == DURATION and rt == DURATION:
            return NUMBER
    return None
