"""engine.yaml12: YAML 1.2 core semantics (yes is a string, 21:30 is a string, 010 is ten,
duplicate keys are errors), exact decimals, and positions for every node, down to the
character inside a scalar (`locate`), which is how condition errors point at their token."""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest

from engine.errors import Position
from engine import yaml12
from engine.yaml12 import Document, YamlError, load


def data(text: str) -> Any:
    doc = load(text, "t.yaml")
    assert doc.problems == []
    return doc.data


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "OFF",
                                  "Y", "N"])
def test_yaml11_booleans_are_strings(word: str) -> None:
    assert data(f"a: {word}") == {"a": word}


@pytest.mark.parametrize("word, value", [("true", True), ("True", True), ("TRUE", True),
                                         ("false", False), ("False", False), ("FALSE", False)])
def test_core_booleans(word: str, value: bool) -> None:
    assert data(f"a: {word}")["a"] is value


@pytest.mark.parametrize("text, value", [
    ("010", 10), ("0010", 10), ("00", 0), ("-0", 0), ("+12", 12), ("-7", -7),
    ("0o10", 8), ("0o17", 15), ("0x1F", 31), ("0xff", 255), ("12345678901234567890", 12345678901234567890),
], ids=lambda v: str(v))
def test_integers(text: str, value: int) -> None:
    got = data(f"a: {text}")["a"]
    assert got == value and type(got) is int


@pytest.mark.parametrize("text", ["21:30", "08:30", "1:30:00", "1_000", "0b101", "0o9",
                                  "2026-11-11", "2026-11-11T20:00:00+08:00", "1,000", "12e",
                                  "0x", "+", ".", "7d", "1h30m", "10%", "¥10"])
def test_yaml11_numbers_and_dates_are_strings(text: str) -> None:
    assert data(f"a: {text}") == {"a": text}


@pytest.mark.parametrize("text, value", [
    ("10.10", Decimal("10.10")), ("0.1", Decimal("0.1")), ("12.50", Decimal("12.50")),
    ("-.5", Decimal("-0.5")), ("3.", Decimal("3")), ("1e3", Decimal("1e3")),
    ("1.5E-2", Decimal("0.015")),
], ids=lambda v: str(v))
def test_floats_are_exact_decimals(text: str, value: Decimal) -> None:
    got = data(f"a: {text}")["a"]
    assert isinstance(got, Decimal) and got == value
    assert str(data("a: 10.10")["a"]) == "10.10"  # not 10.1, not 10.0999999


def test_decimal_sums_are_exact() -> None:
    values = data("a: [0.1, 0.2]")["a"]
    assert sum(values) == Decimal("0.3")


def test_special_floats() -> None:
    d = data("a: [.inf, -.inf, +.INF, .nan, .NaN]")["a"]
    assert d[0] == math.inf and d[1] == -math.inf and d[2] == math.inf
    assert math.isnan(d[3]) and math.isnan(d[4])


@pytest.mark.parametrize("text", ["~", "null", "Null", "NULL", ""])
def test_nulls(text: str) -> None:
    assert data(f"a: {text}") == {"a": None}


def test_quoted_values_stay_strings() -> None:
    assert data("a: ['10', \"true\", 'null', \"1e3\"]") == {"a": ["10", "true", "null", "1e3"]}


def test_keys_are_always_strings() -> None:
    assert data("1: a\ntrue: b\nnull: c\n010: d") == {"1": "a", "true": "b", "null": "c",
                                                       "010": "d"}


def test_explicit_standard_tags() -> None:
    assert data("a: !!str 5\nb: !!int 7\nc: !!float 1\nd: !!bool true\ne: !!null ~") == \
        {"a": "5", "b": 7, "c": Decimal("1"), "d": True, "e": None}


@pytest.mark.parametrize("text", ["!!int abc", "!!int 1.5", "!!int ''", "!!float abc",
                                  "!!float 1_0", "!!bool maybe", "!!null x", "!!int 0o9"])
def test_explicit_tags_on_the_wrong_text_are_problems_not_crashes(text: str) -> None:
    doc = load(f"a: {text}", "t.yaml")
    assert [p.code for p in doc.problems] == ["YAML_TAG"]
    assert doc.problems[0].pos == Position("t.yaml", 1, 4)
    assert isinstance(doc.data["a"], str)


@pytest.mark.parametrize("text, code, line, col", [
    ("a: !!python/object:os.system {x: 1}", "YAML_TAG", 1, 4),
    ("a: !!python/object/apply:os.system [ls]", "YAML_TAG", 1, 4),
    ("a: !!set {x}", "YAML_TAG", 1, 4),
    ("a: !!omap [b: 1]", "YAML_TAG", 1, 4),
    ("? [a]\n: 1", "YAML_KEY", 1, 3),
    ("a: {? {b: 1} : 2}", "YAML_KEY", 1, 7),
    ("a: [1, 2", "YAML_SYNTAX", 2, 1),
    ("a: b: c", "YAML_SYNTAX", 1, 5),
    ("a: 1\n b: 2", "YAML_SYNTAX", 2, 3),
    ("---\na: 1\n---\nb: 2", "YAML_SYNTAX", 3, 1),
    ("a: *nowhere", "YAML_SYNTAX", 1, 4),
    ("a:\n\t- 1", "YAML_SYNTAX", 2, 1),
], ids=lambda v: str(v))
def test_refused_documents(text: str, code: str, line: int, col: int) -> None:
    with pytest.raises(YamlError) as info:
        load(text, "t.yaml")
    d = info.value.diagnostic
    assert (d.code, d.pos) == (code, Position("t.yaml", line, col))


@pytest.mark.parametrize("text", ["a: !custom x", "a: !!binary aGk=", "a: !!timestamp 2026-11-11"])
def test_scalar_tags_are_reported_and_reading_goes_on(text: str) -> None:
    doc = load(text + "\nb: 2", "t.yaml")
    assert [p.code for p in doc.problems] == ["YAML_TAG"]
    assert doc.data["b"] == 2


def test_nesting_and_alias_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml12, "MAX_NODES", 5_000)  # the real limit is 200,000: same code path
    with pytest.raises(YamlError) as deep:
        load("[" * 70 + "]" * 70, "t.yaml")
    assert deep.value.diagnostic.code == "YAML_TOO_DEEP"
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(YamlError) as large:
        load("\n".join(bomb), "t.yaml")
    assert large.value.diagnostic.code == "YAML_TOO_LARGE"
    assert load("\n".join(bomb[:3]), "t.yaml").data["a2"][0][0] == ["x"] * 10  # 1,000 nodes: fine
    assert load("[" * 60 + "]" * 60, "t.yaml").data is not None  # deep, but within the limit


def test_aliases_within_limits_work() -> None:
    assert data("base: &b {max: 1, per: 7d}\ncopy: *b") == {
        "base": {"max": 1, "per": "7d"}, "copy": {"max": 1, "per": "7d"}}


def test_empty_documents() -> None:
    assert load("", "t.yaml").data is None
    assert load("# only a comment\n", "t.yaml").data is None


# -- duplicate keys ---------------------------------------------------------------------------------

def test_duplicate_keys_are_errors_and_the_first_value_stays() -> None:
    doc = load("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\na: 4\n", "t.yaml")
    assert doc.data == {"a": 1, "b": {"c": 1, "d": 2}}  # never last-one-wins
    assert [(p.code, p.pos.line, p.pos.column) for p in doc.problems] == [
        ("YAML_DUPLICATE_KEY", 5, 3), ("YAML_DUPLICATE_KEY", 6, 1)]
    assert "first defined at line 3" in doc.problems[0].message
    assert "first defined at line 1" in doc.problems[1].message


def test_duplicate_keys_in_flow_mappings() -> None:
    doc = load("limits: {max: 1, per: 7d, max: 2}", "t.yaml")
    assert doc.data == {"limits": {"max": 1, "per": "7d"}}
    assert [(p.code, p.pos.column) for p in doc.problems] == [("YAML_DUPLICATE_KEY", 27)]


def test_a_quoted_and_a_plain_spelling_of_one_key_are_duplicates() -> None:
    doc = load("1: a\n'1': b", "t.yaml")
    assert doc.data == {"1": "a"}
    assert [p.code for p in doc.problems] == ["YAML_DUPLICATE_KEY"]


# -- positions --------------------------------------------------------------------------------------

DOC = """\
# a comment line
id: winback-7d
trigger:
  schedule: "0 10 * * *"
actions:
  - coupon: {stock: WINBACK10}
  - message:
      channel: sms
      text: 你好
"""


def test_positions_of_values_and_keys() -> None:
    doc = load(DOC, "r.yaml")
    assert doc.pos(("id",)) == Position("r.yaml", 2, 5)
    assert doc.pos(("id",), key=True) == Position("r.yaml", 2, 1)
    assert doc.pos(("trigger", "schedule")) == Position("r.yaml", 4, 13)
    assert doc.pos(("trigger", "schedule"), key=True) == Position("r.yaml", 4, 3)
    assert doc.pos(("actions", 0, "coupon", "stock")) == Position("r.yaml", 6, 21)
    assert doc.pos(("actions", 0, "coupon", "stock"), key=True) == Position("r.yaml", 6, 14)
    assert doc.pos(("actions", 1, "message", "text")) == Position("r.yaml", 9, 13)
    assert doc.pos(("actions", 1)) == Position("r.yaml", 7, 5)


def test_position_of_a_missing_path_is_its_nearest_ancestor() -> None:
    doc = load(DOC, "r.yaml")
    assert doc.pos(("trigger", "nope", "deeper")) == doc.pos(("trigger",))
    assert doc.pos(("nope",)) == doc.pos(())
    assert doc.pos(()) == Position("r.yaml", 2, 1)


def test_line_text_and_index_to_position() -> None:
    doc = load(DOC, "r.yaml")
    assert doc.line_text(9) == "      text: 你好"
    assert doc.line_text(0) == "" and doc.line_text(99) == ""
    i = DOC.index("你好")
    assert doc.index_to_position(i) == Position("r.yaml", 9, 13)
    assert doc.index_to_position(i + 1) == Position("r.yaml", 9, 14)  # characters, not bytes


# -- locate: offsets inside a scalar back to the file ------------------------------------------------

SCALARS = """\
plain: user.tier == "gold" and 北京 > 1
multi: first 行
  second line
    third
single: 'it''s 北京 ok ''q'''
double: "tab\\there \\"q\\" \\u4e2d end \\\\ x"
double_multi: "one
  two \\
  three"
literal: |
  line one 用户
    indented two
  three
folded: >
  fold one
  fold two

  para 北京
strip: >-
  stripped
  text
keep: |+
  kept

explicit: |2
    two extra
  tail
list:
  - |
    in a list
  - 'quoted in a list'
flow: {k: "v 值 x", l: [a 1, 'b 2']}
"""


def located_chars(doc: Document, path: tuple[Any, ...]) -> list[tuple[str, str]]:
    """(value character, source character at the located position) for every content char."""
    value = doc.data
    for p in path:
        value = value[p]
    out = []
    for i, ch in enumerate(value):
        if ch in " \n\t":
            continue
        pos = doc.locate(path, i, value[i:i + 3])
        out.append((ch, doc.line_text(pos.line)[pos.column - 1]))
    return out


@pytest.mark.parametrize("path", [("plain",), ("multi",), ("single",), ("literal",), ("folded",),
                                  ("strip",), ("keep",), ("explicit",), ("list", 0), ("list", 1),
                                  ("flow", "k"), ("flow", "l", 0), ("flow", "l", 1),
                                  ("double_multi",)],
                         ids=lambda p: ".".join(map(str, p)))
def test_locate_is_exact_for_every_character(path: tuple[Any, ...]) -> None:
    doc = load(SCALARS, "s.yaml")
    pairs = located_chars(doc, path)
    assert pairs and all(ch == src for ch, src in pairs), pairs


def test_locate_in_double_quotes_points_at_escapes() -> None:
    doc = load(SCALARS, "s.yaml")
    value = doc.data["double"]
    assert value == 'tab\there "q" 中 end \\ x'
    for ch, src in located_chars(doc, ("double",)):
        assert src == ch or src == "\\", (ch, src)
    i = value.index("end")
    assert doc.locate(("double",), i) == Position("s.yaml", 6, 33)
    assert doc.line_text(6)[32:35] == "end"


def test_locate_specific_tokens() -> None:
    doc = load(SCALARS, "s.yaml")
    v = doc.data
    assert doc.locate(("plain",), v["plain"].index("北京")) == Position("s.yaml", 1, 32)
    assert doc.locate(("multi",), v["multi"].index("third")) == Position("s.yaml", 4, 5)
    assert doc.locate(("single",), v["single"].index("北京")) == Position("s.yaml", 5, 16)
    assert doc.locate(("literal",), v["literal"].index("indented")) == Position("s.yaml", 12, 5)
    assert doc.locate(("folded",), v["folded"].index("para")) == Position("s.yaml", 18, 3)
    assert doc.locate(("explicit",), v["explicit"].index("two")) == Position("s.yaml", 26, 5)


def test_locate_past_the_end_points_just_after_the_last_character() -> None:
    doc = load("a: user.tier ==\nb: 1\n", "t.yaml")
    assert doc.locate(("a",), len("user.tier ==")) == Position("t.yaml", 1, 16)


def test_locate_in_a_folded_scalar_with_unusual_folding_finds_the_line() -> None:
    text = "a: >\n  first\n    more indented\n  back x_marks\n"
    doc = load(text, "t.yaml")
    value = doc.data["a"]
    i = value.index("x_marks")
    pos = doc.locate(("a",), i, "x_marks")
    assert pos.line == 4
    assert doc.line_text(4)[pos.column - 1:].startswith("x_marks")


def test_locate_of_a_non_string_falls_back_to_the_value() -> None:
    doc = load("a: 12\nb: [1]\n", "t.yaml")
    assert doc.locate(("a",), 1) == Position("t.yaml", 1, 4)
    assert doc.locate(("b",), 0) == Position("t.yaml", 2, 4)


def test_crlf_files_locate_the_same_columns() -> None:
    lf = 'x: 1\naudience: user.tier == "gold" and user.cty == "上海"\n'
    for text in (lf, lf.replace("\n", "\r\n")):
        doc = load(text, "t.yaml")
        value = doc.data["audience"]
        assert doc.locate(("audience",), value.index("user.cty")) == Position("t.yaml", 2, 35)
