"""The condition language's type checker (LANGUAGE.md): for every literal, name, operator,
aggregate and function, one valid example with the type it has, and invalid examples with the
code they get and the token the error points at."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from engine.lang import syntax
from engine.lang.checker import AGGREGATES, FUNCTIONS, Scope, check, check_all
from engine.lang.typed import (TAgg, TAnd, TCompare, TIn, TIsNull, TLit, TNot, TOr, TUserAttr,
                               walk)

# -- valid: expression -> type ----------------------------------------------------------------------

TYPES: list[tuple[str, str]] = [
    # literals
    ("7", "number"), ("-3", "number"), ("12.50", "number"), ('"gold"', "string"),
    ("'母婴'", "string"), ("true", "bool"), ("false", "bool"), ("null", "null"),
    ("30s", "duration"), ("15m", "duration"), ("2h", "duration"), ("1h30m", "duration"),
    ("7d", "duration"), ("2w", "duration"), ('date("2026-11-11")', "date"),
    ('timestamp("2026-11-11T20:00:00+08:00")', "timestamp"),
    ('timestamp("2026-11-11 20:00")', "timestamp"),
    ('["gold", "black_gold"]', "list<string>"), ("[1, 2, 3]", "list<number>"),
    ("[]", "list<?>"),
    # names
    ("user.tier", "string"), ("user.tags", "list<string>"), ("user.signup_at", "timestamp"),
    ("user.birthday", "date"), ("user.points", "number"), ("user.user_id", "string"),
    ("rfm.recency_days", "number"), ("rfm.frequency", "number"), ("rfm.monetary", "money"),
    ("rfm.r", "number"), ("rfm.f", "number"), ("rfm.m", "number"), ("rfm.segment", "string"),
    ("lifecycle", "string"), ("now", "timestamp"),
    # aggregates
    ("count(order_paid)", "number"), ("count(order_paid, 30d)", "number"),
    ("count(order_paid where amount > 50, 30d)", "number"),
    ("count(share where target != \"moments\")", "number"),
    ("sum(order_paid.amount, 90d)", "money"), ("sum(order_paid.items, 90d)", "number"),
    ("avg(order_paid.amount)", "money"), ("min(order_paid.amount, 30d)", "money"),
    ("max(order_paid.ts)", "timestamp"), ("max(price_drop.new_price, 7d)", "money"),
    ("last(order_paid)", "timestamp"), ("first(order_paid where items >= 2)", "timestamp"),
    ("exists(order_paid, 7d)", "bool"), ("exists(checkin)", "bool"),
    ("days_with(checkin, 7d)", "number"), ("streak(checkin)", "number"),
    # functions
    ("days_since(last(order_paid))", "number"), ("days_since(user.birthday)", "number"),
    ("hours_since(user.signup_at)", "number"), ("days_until(user.points_expire_at)", "number"),
    ('has_tag("vip")', "bool"), ("lower(user.city)", "string"), ("len(user.tags)", "number"),
    ("len(user.city)", "number"), ("coalesce(user.points, 0)", "number"),
    ("coalesce(rfm.monetary, 0)", "money"), ("coalesce(last(checkin), user.signup_at)", "timestamp"),
    ("hour(now)", "number"), ("weekday(now)", "number"), ("weekday(user.birthday)", "number"),
    # arithmetic
    ("user.points + 1", "number"), ("user.points - 1", "number"), ("user.points * 2", "number"),
    ("user.points / 2", "number"), ("-user.points", "number"), ("(user.points + 1) * 2", "number"),
    ("sum(order_paid.amount) + 10", "money"), ("sum(order_paid.amount) * 2", "money"),
    ("sum(order_paid.amount) / 2", "money"),
    ("sum(order_paid.amount) / sum(order_paid.amount, 30d)", "number"),
    ("now + 7d", "timestamp"), ("now - 30d", "timestamp"), ("user.signup_at + 1h30m", "timestamp"),
    ("7d + now", "timestamp"), ("user.birthday + 1d", "timestamp"),
    ("now - user.signup_at", "duration"), ("7d + 1h", "duration"), ("7d * 2", "duration"),
    ("7d / 2", "duration"), ("7d / 1d", "number"),
    # comparisons and logic
    ("user.points == 1", "bool"), ("user.points != 1", "bool"), ("user.points < 1", "bool"),
    ("user.points <= 1", "bool"), ("user.points > 1", "bool"), ("user.points >= 1", "bool"),
    ("rfm.monetary > 100", "bool"), ("last(order_paid) < now - 7d", "bool"),
    ('user.birthday == date("2000-01-01")', "bool"), ("true and false", "bool"),
    ("true or false", "bool"), ("not true", "bool"), ('user.tier in ["gold", "silver"]', "bool"),
    ('user.tier not in ["gold"]', "bool"), ('"vip" in user.tags', "bool"),
    ('user.tags contains "vip"', "bool"), ('user.city contains "京"', "bool"),
    ('user.city starts_with "北"', "bool"), ("user.city is null", "bool"),
    ("last(order_paid) is not null", "bool"), ("user.points in [1, 2, 3]", "bool"),
    ("(true)", "bool"),
]

EVENT_TYPES: list[tuple[str, str]] = [
    ("event.target", "string"), ("event.amount", "money"), ("event.ts", "timestamp"),
    ("event.user_id", "string"), ("event.event_id", "string"),
]


def type_of(expr: str, scope: Scope) -> str:
    """The type the checker gives `expr` (wrapped as `(expr) is null`, which takes any type)."""
    node, errors = check_all(f"({expr}) is null", scope)
    assert errors == [], [(e.code, e.message) for e in errors]
    assert isinstance(node, TIsNull)
    return node.operand.type


@pytest.mark.parametrize("expr, expected", TYPES, ids=[e for e, _ in TYPES])
def test_types(expr: str, expected: str, scope: Scope) -> None:
    assert type_of(expr, scope) == expected


@pytest.mark.parametrize("expr, expected", EVENT_TYPES, ids=[e for e, _ in EVENT_TYPES])
def test_event_field_types(expr: str, expected: str, event_scope: Scope) -> None:
    assert type_of(expr, event_scope) == expected


def test_bare_names_in_a_trigger_where(example_model: object, scope: Scope) -> None:
    where = Scope(scope.model, scope.tz, trigger_event="order_paid", bare_event="order_paid")
    assert type_of("amount", where) == "money"
    assert type_of("items", where) == "number"
    assert check("amount > 50 and order_id starts_with \"A\"", where).type == "bool"


def test_the_table_covers_every_function_and_operator() -> None:
    text = " ".join(e for e, _ in TYPES)
    for name in AGGREGATES + FUNCTIONS:
        assert f"{name}(" in text, name
    for op in ("and", "or", "not", "==", "!=", "<", "<=", ">", ">=", " in ", "not in", "contains",
               "starts_with", "is null", "is not null", "+", "-", "*", "/", "("):
        assert op in text, op


# -- literals are converted once, exactly ------------------------------------------------------------

def test_literal_values(scope: Scope) -> None:
    node = check('user.points > 12.50 and now - 1h30m > user.signup_at '
                 'and user.birthday != date("2026-11-11") '
                 'and last(order_paid) < timestamp("2026-11-11 20:00")', scope)
    lits = [n for n in walk(node) if isinstance(n, TLit)]
    values = [n.value for n in lits]
    assert Decimal("12.50") in values and isinstance(values[0], Decimal)
    assert timedelta(hours=1, minutes=30) in values
    assert date(2026, 11, 11) in values
    ts = next(v for v in values if isinstance(v, datetime))
    assert ts.utcoffset() == timedelta(hours=8)  # no offset: the project's timezone


def test_string_escapes(scope: Scope) -> None:
    node = check(r'user.city == "a\"b\\c\u4e2d" or user.city == ' + r"'it\'s'", scope)
    values = {n.value for n in walk(node) if isinstance(n, TLit)}
    assert {'a"b\\c中', "it's"} <= values


def test_and_or_chains_are_flat(scope: Scope) -> None:
    node = check("true and false and true and (true or false or true)", scope)
    assert isinstance(node, TAnd) and len(node.items) == 4
    assert isinstance(node.items[3], TOr) and len(node.items[3].items) == 3


def test_precedence(scope: Scope) -> None:
    node = check("not user.points > 1 + 2 * 3 or true and false", scope)
    assert isinstance(node, TOr)
    left, right = node.items
    assert isinstance(left, TNot) and isinstance(left.operand, TCompare)
    assert isinstance(right, TAnd)
    arith = left.operand.right
    assert arith.op == "+" and arith.right.op == "*"  # type: ignore[union-attr]


def test_has_tag_is_membership_in_user_tags(scope: Scope) -> None:
    node = check('has_tag("vip")', scope)
    assert isinstance(node, TIn) and isinstance(node.container, TUserAttr)
    assert node.container.name == "tags"


def test_aggregate_nodes_carry_event_window_and_filter(scope: Scope) -> None:
    node = check("count(order_paid where amount > 50, 30d) >= 2", scope)
    agg = next(n for n in walk(node) if isinstance(n, TAgg))
    assert (agg.func, agg.event, agg.window) == ("count", "order_paid", timedelta(days=30))
    assert agg.where is not None and agg.where.type == "bool"


def test_positions_cover_the_source(scope: Scope) -> None:
    text = "user.points > 1 and count(order_paid, 7d) >= 2"
    node = check(text, scope)
    for n in walk(node):
        a, b = n.span
        assert 0 <= a <= b <= len(text)
    assert text[slice(*node.span)] == text


# -- invalid: condition -> code, and the token the error points at ------------------------------------

ERRORS: list[tuple[str, str, str]] = [
    # names
    ('user.tierr == "gold"', "COND_UNKNOWN_NAME", "user.tierr"),
    ("rfm.score > 1", "COND_UNKNOWN_NAME", "rfm.score"),
    ("user > 1", "COND_UNKNOWN_NAME", "user"),
    ("nosuch > 1", "COND_UNKNOWN_NAME", "nosuch"),
    ('event.target == "x"', "COND_EVENT_CONTEXT", "event.target"),
    ('lifecycle == "asleep"', "COND_UNKNOWN_VALUE", '"asleep"'),
    ('rfm.segment == "vip"', "COND_UNKNOWN_VALUE", '"vip"'),
    ('user.tier in ["gold", "platinum"]', "COND_UNKNOWN_VALUE", '"platinum"'),
    ('"gld" == user.tier', "COND_UNKNOWN_VALUE", '"gld"'),
    ("order_paid > 1", "COND_TYPE", "order_paid"),
    ("order_paid.amount > 1", "COND_TYPE", "order_paid.amount"),
    ("count > 1", "COND_SYNTAX", "count"),
    # aggregates
    ("count(nothing) > 1", "UNKNOWN_EVENT", "nothing"),
    ("count(order_paid, 30d, 1) > 1", "COND_ARGUMENTS", "count("),
    ("count() > 1", "COND_ARGUMENTS", "count("),
    ("count(order_paid, 5) > 1", "COND_ARGUMENTS", "5"),
    ("count(order_paid.amount) > 1", "COND_ARGUMENTS", "order_paid.amount"),
    ("count(order_paid, 0d) > 1", "COND_BAD_LITERAL", "0d"),
    ("sum(order_paid, 30d) > 1", "COND_ARGUMENTS", "order_paid"),
    ("sum(order_paid.order_id) > 1", "COND_TYPE", "order_paid.order_id"),
    ("sum(order_paid.nope) > 1", "COND_UNKNOWN_NAME", "order_paid.nope"),
    ("days_with(checkin) > 1", "COND_ARGUMENTS", "days_with("),
    ("streak(checkin, 7d) > 1", "COND_ARGUMENTS", "streak("),
    ("count(order_paid where count(cart_add) > 0) > 1", "COND_NESTED", "count(cart_add)"),
    ("count(order_paid where amount) > 1", "COND_TYPE", "amount"),
    ("count(order_paid where nope > 1) > 1", "COND_UNKNOWN_NAME", "nope"),
    ("user.points where true", "COND_SYNTAX", "where"),
    ("last(order_paid) > 7", "COND_TYPE", ">"),
    ("exists(order_paid, 7d) > 1", "COND_TYPE", ">"),
    # functions
    ("frobnicate(1) > 1", "COND_UNKNOWN_FUNCTION", "frobnicate"),
    ("days_ago(last(order_paid)) > 1", "COND_UNKNOWN_FUNCTION", "days_ago"),
    ("days_since(7) > 1", "COND_TYPE", "7"),
    ("days_since(last(order_paid)) >= 7d", "COND_TYPE", ">="),
    ('hours_since("x") > 1', "COND_TYPE", '"x"'),
    ("days_until(user.points) > 1", "COND_TYPE", "user.points"),
    ("has_tag(1)", "COND_TYPE", "1"),
    ('lower(1) == "a"', "COND_TYPE", "1"),
    ("len(1) > 1", "COND_TYPE", "1"),
    ("len(user.tags, 1) > 1", "COND_ARGUMENTS", "len("),
    ("coalesce(user.points) > 1", "COND_ARGUMENTS", "coalesce("),
    ('coalesce(user.points, "x") > 1', "COND_TYPE", '"x"'),
    ("hour(user.birthday) > 1", "COND_TYPE", "user.birthday"),
    ("weekday(1) == 1", "COND_TYPE", "1"),
    ('date("2026-13-01") < user.birthday', "COND_BAD_LITERAL", '"2026-13-01"'),
    ("date(user.city) < user.birthday", "COND_ARGUMENTS", "user.city"),
    ('timestamp("nope") < now', "COND_BAD_LITERAL", '"nope"'),
    ("user.signup_at > now - 1mo", "COND_SYNTAX", "1mo"),
    ('user.birthday > timestamp("2026-11-11T00:00:00+08:00")', "COND_TYPE", ">"),
    # operators
    ("now + 7 > now", "COND_TYPE", "+"),
    ('"a" - 1 > 0', "COND_TYPE", "-"),
    ("-user.city == \"x\"", "COND_TYPE", "-user.city"),
    ("user.city < 1", "COND_TYPE", "<"),
    ('user.tags < ["a"]', "COND_TYPE", "<"),
    ('user.tags == ["a"]', "COND_TYPE", "=="),
    ("true > false", "COND_TYPE", ">"),
    ("user.city == null", "COND_NULL_COMPARE", "user.city"),
    ("user.points != null", "COND_NULL_COMPARE", "user.points"),
    ("1 and true", "COND_TYPE", "1"),
    ('true or "x"', "COND_TYPE", '"x"'),
    ("not 1", "COND_TYPE", "1"),
    ('user.city in "abc"', "COND_TYPE", '"abc"'),
    ('1 in ["a"]', "COND_TYPE", "1"),
    ('[1, "a"] contains 1', "COND_TYPE", '"a"'),
    ("user.points contains 1", "COND_TYPE", "user.points"),
    ("user.city starts_with 1", "COND_TYPE", "1"),
    ("[[1]] contains 1", "COND_TYPE", "[[1]]"),
    # not a condition
    ("count(order_paid)", "COND_NOT_BOOL", "count(order_paid)"),
    ('"yes"', "COND_NOT_BOOL", '"yes"'),
    # syntax
    ("a = 1", "COND_SYNTAX", "="),
    ("1 < 2 < 3", "COND_SYNTAX", "< 3"),
    ("user.points > 1 &&  true", "COND_SYNTAX", "&&"),
    ("user.points > 1 || true", "COND_SYNTAX", "||"),
    ("!true", "COND_SYNTAX", "!"),
    ('user.city == "unterminated', "COND_SYNTAX", '"unterminated'),
    ('user.city == "\\q"', "COND_SYNTAX", "\\q"),
    ("user.points >", "COND_SYNTAX", ""),
    ("(user.points > 1", "COND_SYNTAX", ""),
    ("user.points > 1)", "COND_SYNTAX", ")"),
    ("user.points > 1 user.points", "COND_SYNTAX", "user.points"),
    ("", "COND_SYNTAX", ""),
    ("   ", "COND_SYNTAX", ""),
    ("用户 > 1", "COND_SYNTAX", "用户"),
    ("1.2.3 > 1", "COND_SYNTAX", "1.2.3"),
    # limits
    ("(" * 33 + "true" + ")" * 33, "COND_TOO_DEEP", "("),
    ('user.city == "' + "x" * 5000 + '"', "COND_TOO_LONG", "x"),
]


@pytest.mark.parametrize("text, code, token", ERRORS,
                         ids=[f"{c}:{t[:40]}" for t, c, _ in ERRORS])
def test_errors(text: str, code: str, token: str, scope: Scope) -> None:
    node, errors = check_all(text, scope)
    assert node is None
    assert [e.code for e in errors][:1] == [code], [(e.code, e.message) for e in errors]
    e = errors[0]
    assert text[e.offset:].startswith(token), (e.offset, text[e.offset:e.offset + 20])
    assert e.message.strip()
    with pytest.raises(type(e)):
        check(text, scope)


@pytest.mark.parametrize("text, hint", [
    ('user.tierr == "gold"', "did you mean `user.tier`?"),
    ("daysince(last(order_paid)) > 1", "did you mean `days_since`?"),
    ("days_ago(last(order_paid)) > 1", "did you mean `days_since`?"),
    ("count(ordr_paid) > 1", "did you mean `order_paid`?"),
    ('user.tier == "gld"', "did you mean `gold`?"),
    ("last(order_paid) > 7", "did you mean `days_since(...)`?"),
    ("user.points > 1 && true", "write `and`"),
    ("a = 1", "write `==`"),
    ("user.city == null", "is null"),
], ids=lambda v: str(v))
def test_errors_offer_a_fix(text: str, hint: str, scope: Scope) -> None:
    _, errors = check_all(text, scope)
    assert errors and hint in errors[0].hint


def test_all_errors_are_reported_not_just_the_first(scope: Scope) -> None:
    text = 'user.tierr == "gold" and frob(1) > 1 and user.points > "x"'
    _, errors = check_all(text, scope)
    assert [e.code for e in errors] == ["COND_UNKNOWN_NAME", "COND_UNKNOWN_FUNCTION", "COND_TYPE"]
    assert [text[e.offset:e.offset + e.length] for e in errors] == ["user.tierr", "frob", ">"]


def test_one_mistake_does_not_cascade(scope: Scope) -> None:
    _, errors = check_all("days_since(last(nosuch)) >= 7 and not (user.nope > 1)", scope)
    assert [e.code for e in errors] == ["UNKNOWN_EVENT", "COND_UNKNOWN_NAME"]


def test_deep_chains_of_and_are_not_too_deep(scope: Scope) -> None:
    text = " and ".join(["user.points > 1"] * 100)
    assert check_all(text, scope)[1] == []


def test_syntax_tree_nodes_carry_spans_outside_equality() -> None:
    a = syntax.parse("user.points > 1")
    b = syntax.parse("  user.points   >   1")
    assert a == b and a.span != b.span
