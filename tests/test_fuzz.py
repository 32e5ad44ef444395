"""Hypothesis: whatever text an operator (or a pull request) puts in a condition or a YAML file,
only the project's own diagnostics come out, never a Python exception; and every well-typed
condition built from the grammar checks cleanly."""
from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.codes import CODES
from engine.errors import ConditionError, Diagnostic
from engine.lang.checker import Scope, check_all
from engine.lang.typed import BOOL
from engine.validate import format_github, format_json, format_text, validate

from conftest import REPO

# FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py  hunts harder; the default keeps the suite fast.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ_FILES = settings(FUZZ, max_examples=max(1, EXAMPLES // 2))  # a whole validate each

# -- (a) random condition text --------------------------------------------------------------------

TOKENS = [
    # grammar words and operators
    "and", "or", "not", "in", "not in", "contains", "starts_with", "is", "null", "is not null",
    "true", "false", "where", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "(", ")",
    "[", "]", ",", ".", "=", "&&", "||", "!",
    # names, functions, aggregates
    "user", "user.tier", "user.city", "user.tags", "user.signup_at", "user.birthday", "user.points",
    "user.nope", "event", "event.target", "event.amount", "rfm", "rfm.segment", "rfm.r",
    "lifecycle", "now", "order_paid", "order_paid.amount", "cart_add", "share", "checkin",
    "target", "amount", "items", "count", "sum", "avg", "min", "max", "last", "first", "exists",
    "days_with", "streak", "days_since", "hours_since", "days_until", "has_tag", "lower", "len",
    "coalesce", "hour", "weekday", "date", "timestamp", "nosuchfn",
    # literals, good and bad
    "0", "7", "-3", "12.50", "1e3", "99999999999999999999", "7d", "2h", "1h30m", "0d", "1mo",
    "30s", "2w", "7dd", '"gold"', '"gld"', "'母婴'", '"important_value"', '"moments"',
    '"2026-11-11"', '"2026-13-01"', '"2026-11-11T20:00:00+08:00"', '"\\u4e2d"', '"\\q"',
    '"', "'", '"unterminated', "\\", "\n", "\t", "。", "（", "）", "＝", "用户", "🙂", "\x00",
    "\u200b", "\ufeff",
]

condition_text = st.lists(
    st.one_of(st.sampled_from(TOKENS), st.text(max_size=4)), max_size=30,
).flatmap(lambda parts: st.lists(st.sampled_from(["", " ", "  ", "\n"]), min_size=len(parts),
                                 max_size=len(parts)).map(
    lambda seps: "".join(p + s for p, s in zip(parts, seps))))

COND_CODES = {c for c in CODES if c.startswith("COND_")} | {"UNKNOWN_EVENT"}


def assert_only_condition_errors(text: str, scope: Scope) -> None:
    node, errors = check_all(text, scope)
    assert (node is None) == bool(errors)
    if node is not None:
        assert node.type == BOOL
    for e in errors:
        assert isinstance(e, ConditionError)
        assert e.code in COND_CODES, e.code
        assert 0 <= e.offset <= len(text), (e.offset, len(text))
        assert e.length >= 1
        assert e.message.strip()


@FUZZ
@given(text=condition_text)
def test_random_condition_text_gives_only_condition_errors(text: str, scope: Scope,
                                                           event_scope: Scope) -> None:
    assert_only_condition_errors(text, scope)
    assert_only_condition_errors(text, event_scope)
    where_scope = Scope(scope.model, scope.tz, trigger_event="order_paid", bare_event="order_paid")
    assert_only_condition_errors(text, where_scope)


@FUZZ
@given(text=st.text(max_size=200))
def test_arbitrary_unicode_gives_only_condition_errors(text: str, scope: Scope) -> None:
    assert_only_condition_errors(text, scope)


@settings(max_examples=30, deadline=None, database=None)
@given(n=st.integers(min_value=33, max_value=400), opener=st.sampled_from(["(", "[", "not ", "-"]))
def test_deep_nesting_is_refused_not_a_recursion_error(n: int, opener: str, scope: Scope) -> None:
    closer = {"(": ")", "[": "]"}.get(opener, "")
    text = opener * n + "1" + closer * n
    node, errors = check_all(text, scope)
    assert node is None and errors
    assert all(0 <= e.offset <= len(text) for e in errors)


def test_the_length_limit_is_exact(scope: Scope) -> None:
    ok = 'user.city == "' + "x" * (4096 - 15) + '"'
    assert len(ok) == 4096
    assert check_all(ok, scope)[1] == []
    node, errors = check_all(ok + " ", scope)
    assert [e.code for e in errors] == ["COND_TOO_LONG"]


# -- (c) well-typed conditions built from a small grammar check cleanly ----------------------------

EVENTS = ["order_paid", "cart_add", "checkin", "share", "price_drop", "enter_geofence"]
WINDOWS = ["30s", "15m", "2h", "1h30m", "7d", "30d", "2w"]
window = st.sampled_from(WINDOWS)
event = st.sampled_from(EVENTS)

order_filter = st.sampled_from([
    "amount > 50", "items >= 2", 'order_id == "A1"', "amount is not null",
    'order_id starts_with "VIP"', "ts > now - 7d", "not (amount < 10)"])


def _agg_count(e: str, w: str | None) -> str:
    return f"count({e}, {w})" if w else f"count({e})"


numbers = st.recursive(
    st.one_of(
        st.integers(min_value=0, max_value=10_000).map(str),
        st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False).map(
            lambda d: str(Decimal(d).quantize(Decimal("0.01")))),
        st.builds(_agg_count, event, st.none() | window),
        st.builds(lambda f, w: f"count(order_paid where {f}, {w})", order_filter, window),
        event.map(lambda e: f"days_since(last({e}))"),
        event.map(lambda e: f"hours_since(first({e}))"),
        st.sampled_from(["user.points", "rfm.recency_days", "rfm.frequency", "rfm.r", "rfm.f",
                         "rfm.m", "len(user.tags)", "hour(now)", "weekday(now)",
                         "days_until(user.points_expire_at)", "streak(checkin)",
                         "days_since(user.birthday)", "coalesce(user.points, 0)"]),
        st.builds(lambda e, w: f"days_with({e}, {w})", event, window),
    ),
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from("+-*"), inner),
        inner.map(lambda a: f"({a})"),
    ),
    max_leaves=4,
)
money = st.sampled_from(["sum(order_paid.amount, 30d)", "avg(order_paid.amount, 90d)",
                         "max(order_paid.amount)", "rfm.monetary", "min(price_drop.new_price, 7d)"])
timestamps = st.one_of(
    st.sampled_from(["now", "user.signup_at", "user.points_expire_at", "now - 7d",
                     "user.signup_at + 1d", 'timestamp("2026-11-11T20:00:00+08:00")',
                     "max(order_paid.ts, 30d)"]),
    event.map(lambda e: f"last({e})"), event.map(lambda e: f"first({e})"),
)
strings = st.sampled_from(["user.city", "lower(user.city)", "user.nickname", '"上海"', '"x"'])
enum_compare = st.sampled_from([
    'user.tier == "gold"', 'user.tier != "silver"', 'user.tier in ["gold", "black_gold"]',
    'rfm.segment == "important_value"', 'rfm.segment not in ["general_retain"]',
    'lifecycle == "sleeping"', 'lifecycle in ["new", "active"]',
    'count(share where target != "moments", 7d) >= 1'])
COMPARE = ["==", "!=", "<", "<=", ">", ">="]

atoms = st.one_of(
    st.builds(lambda a, op, b: f"{a} {op} {b}", numbers, st.sampled_from(COMPARE), numbers),
    st.builds(lambda a, op, b: f"{a} {op} {b}", money, st.sampled_from(COMPARE), numbers),
    st.builds(lambda a, op, b: f"{a} {op} {b}", timestamps, st.sampled_from(COMPARE), timestamps),
    st.builds(lambda a, op, b: f"{a} {op} {b}", strings, st.sampled_from(["==", "!=", "contains",
                                                                         "starts_with"]), strings),
    st.builds(lambda e, w: f"exists({e}, {w})", event, window),
    st.sampled_from(['has_tag("vip")', '"vip" in user.tags', "user.tags contains \"vip\"",
                     "true", "false", 'user.city in ["北京", "上海"]']),
    st.builds(lambda x, neg: f"{x} is {'not ' if neg else ''}null",
              st.one_of(timestamps, strings, numbers), st.booleans()),
    enum_compare,
)
conditions = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["and", "or"]), inner),
        inner.map(lambda a: f"not ({a})"),
        inner.map(lambda a: f"({a})"),
    ),
    max_leaves=6,
)


@FUZZ
@given(text=conditions)
def test_well_typed_conditions_check_cleanly(text: str, scope: Scope) -> None:
    node, errors = check_all(text, scope)
    assert errors == [], [(e.code, e.message, text[e.offset:e.offset + e.length]) for e in errors]
    assert node is not None and node.type == BOOL


@FUZZ
@given(text=conditions, spaces=st.sampled_from([" ", "  ", "\n", "\n  ", "\t"]))
def test_whitespace_does_not_change_the_verdict(text: str, spaces: str, scope: Scope) -> None:
    spaced = text.replace(" ", spaces)
    assume(spaced.count('"') == text.count('"') and '" ' not in text)  # not inside strings
    assert check_all(spaced, scope)[1] == []


# -- (b) random YAML documents as rule and config files -------------------------------------------

@pytest.fixture(scope="module")
def fuzz_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project's config files and no rules: each example writes rules/fuzz.yaml."""
    root = tmp_path_factory.mktemp("fuzz")
    for name in ("engine.yaml", "datamodel.yaml", "templates.yaml", "coupons.yaml"):
        shutil.copyfile(REPO / name, root / name)
    (root / "rules").mkdir()
    (root / "schemas").mkdir()
    return root


def assert_only_diagnostics(root: Path, paths: tuple[str, ...] = ("rules/fuzz.yaml",)) -> None:
    result = validate(str(root), [str(root / p) for p in paths])
    for d in result.diagnostics:
        assert isinstance(d, Diagnostic)
        assert d.code in CODES, d.code
        assert d.pos.line >= 1 and d.pos.column >= 1, d
        assert d.message.strip()
    for fmt in (format_text, format_json, format_github):
        fmt(result, True)


SCALARS = ["yes", "no", "on", "off", "~", "null", "true", "010", "0o17", "0x1F", "1_000", "21:30",
           "10.10", ".inf", ".nan", "-", "?", ":", "'q''s'", '"d\\"q"', '"\\u4e2d\\x41"',
           "再来", "🙂", "7d", "1mo", '"0 10 * * 7"', "\"{{ coupon.name }}\"", "\"{{ user.phone }}\"",
           "\"{% if %}\"", "分享后才能领取", "100%中奖", "全网最低价", "''", '""', "@", "`",
           "!!python/object:os.system {}", "!!binary aGk=", "!!int x", "!!float 1", "!!set {a}",
           "!!omap [a: 1]", "!custom x", "!!str 5", "&a 1", "*a", "*undefined", "|\n  x",
           ">-\n  y", "{", "[", "}", "]", "- ", "#c"]
KEYS = ["id", "name", "category", "trigger", "schedule", "event", "where", "wait", "date",
        "before", "after", "annual", "every", "coupon_expiring", "audience", "unless", "actions",
        "coupon", "stock", "message", "channel", "fallback", "template", "data", "text", "page",
        "points", "add", "tag", "remove", "webhook", "body", "limits", "max", "per", "goal",
        "within", "experiment", "holdout", "variants", "weight", "allow", "check", "reason",
        "enabled", "priority", "fire", "thing1", "user", "events", "props", "type", "enum",
        "pii", "social", "<<", "? x", "1", "true", "null", "键"]

yaml_values = st.recursive(
    st.sampled_from(SCALARS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=5).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"),
    ),
    max_leaves=12,
)
block_documents = st.lists(st.tuples(st.sampled_from(KEYS), yaml_values), max_size=10).map(
    lambda kv: "".join(f"{k}: {v}\n" for k, v in kv))


@FUZZ_FILES
@given(text=st.one_of(block_documents, yaml_values, st.text(max_size=300)))
def test_random_yaml_rule_files_give_only_diagnostics(text: str, fuzz_project: Path) -> None:
    (fuzz_project / "rules" / "fuzz.yaml").write_text(text, encoding="utf-8")
    assert_only_diagnostics(fuzz_project)


@FUZZ_FILES
@given(data=st.binary(max_size=300))
def test_random_bytes_give_only_diagnostics(data: bytes, fuzz_project: Path) -> None:
    (fuzz_project / "rules" / "fuzz.yaml").write_bytes(data)
    assert_only_diagnostics(fuzz_project)


@settings(max_examples=20, deadline=None, database=None)
@given(depth=st.integers(min_value=1, max_value=300), width=st.integers(min_value=2, max_value=6))
def test_deep_nesting_and_alias_fans_give_only_diagnostics(depth: int, width: int,
                                                           fuzz_project: Path) -> None:
    nested = "id: deep\nactions: " + "[" * depth + "]" * depth + "\n"
    (fuzz_project / "rules" / "fuzz.yaml").write_text(nested, encoding="utf-8")
    assert_only_diagnostics(fuzz_project)
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]"
                               for i in range(1, 1 + depth % 6)]
    (fuzz_project / "rules" / "fuzz.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert_only_diagnostics(fuzz_project)


EXAMPLE_RULES = sorted((REPO / "rules").glob("*.yaml"))
EDITS = ["", " ", "\n", "\t", ":", "- ", "{", "}", "[", "]", "'", '"', "#", "&x ", "*x", "!!int ",
         "yes", "0", "-1", "1mo", "用户", "user.nope", "and", "(", ")", "==", "{{", "}}", "|", ">",
         "!!python/object ", "null", "moments", "red_packet", "sms", "分享后才能", "\\"]


@FUZZ_FILES
@given(which=st.integers(min_value=0, max_value=len(EXAMPLE_RULES) - 1),
       edits=st.lists(st.tuples(st.floats(min_value=0, max_value=1), st.integers(0, 12),
                                st.sampled_from(EDITS)), min_size=1, max_size=4))
def test_mutated_example_rules_give_only_diagnostics(which: int,
                                                     edits: list[tuple[float, int, str]],
                                                     fuzz_project: Path) -> None:
    """Near-valid files reach deep into the checks: the example rules with a few random edits."""
    text = EXAMPLE_RULES[which].read_text("utf-8")
    for where, cut, insert in edits:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + cut:]
    (fuzz_project / "rules" / "fuzz.yaml").write_text(text, encoding="utf-8")
    assert_only_diagnostics(fuzz_project)


CONFIGS = ["engine.yaml", "datamodel.yaml", "templates.yaml", "coupons.yaml"]


@FUZZ_FILES
@given(name=st.sampled_from(CONFIGS),
       edits=st.lists(st.tuples(st.floats(min_value=0, max_value=1), st.integers(0, 12),
                                st.sampled_from(EDITS)), min_size=1, max_size=4))
def test_mutated_config_files_give_only_diagnostics(name: str, edits: list[tuple[float, int, str]],
                                                    fuzz_project: Path) -> None:
    text = (REPO / name).read_text("utf-8")
    for where, cut, insert in edits:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + cut:]
    (fuzz_project / name).write_text(text, encoding="utf-8")
    shutil.copyfile(REPO / "rules" / "churned-sms.yaml", fuzz_project / "rules" / "fuzz.yaml")
    try:
        assert_only_diagnostics(fuzz_project)
    finally:
        shutil.copyfile(REPO / name, fuzz_project / name)


@settings(FUZZ_FILES, max_examples=max(1, EXAMPLES // 4))
@given(name=st.sampled_from(CONFIGS), text=st.one_of(block_documents, yaml_values))
def test_random_config_files_give_only_diagnostics(name: str, text: str,
                                                   fuzz_project: Path) -> None:
    (fuzz_project / name).write_text(text, encoding="utf-8")
    shutil.copyfile(REPO / "rules" / "winback-7d.yaml", fuzz_project / "rules" / "fuzz.yaml")
    try:
        assert_only_diagnostics(fuzz_project)
    finally:
        shutil.copyfile(REPO / name, fuzz_project / name)
