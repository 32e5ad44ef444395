"""Parsing condition text into an untyped syntax tree whose nodes carry character spans.

The grammar lives in `grammar.lark` and is built once per process. Spans are 0-based
character offsets into the condition text; the loader maps them to file lines and columns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

from lark import Lark, Token, Transformer
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF, UnexpectedInput,
                             UnexpectedToken, VisitError)

from ..errors import ConditionError

MAX_LENGTH = 4096
MAX_DEPTH = 32

Span = tuple[int, int]


@dataclass(frozen=True)
class Node:
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Lit(Node):
    value: Any  # Decimal, str, bool, None, or the duration text
    kind: str  # number | string | bool | null | duration


@dataclass(frozen=True)
class ListLit(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Name(Node):
    parts: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Where(Node):
    """`E where cond` (or `E.prop where cond`) as the first argument of an aggregate."""

    subject: Node
    cond: Node


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]
    name_span: Span = field(compare=False, repr=False, default=(0, 0))


@dataclass(frozen=True)
class Unary(Node):
    op: str  # "not" | "-"
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str  # and or + - * / == != < <= > >= in "not in" contains starts_with
    left: Node
    right: Node
    op_span: Span = field(compare=False, repr=False, default=(0, 0))


@dataclass(frozen=True)
class Logical(Node):
    """`a and b and c` / `a or b or c`, kept flat: a chain of 500 terms is one level deep,
    not 500 (and nothing recursing over the tree can run out of stack)."""

    op: str  # and | or
    items: tuple[Node, ...]


@dataclass(frozen=True)
class IsNull(Node):
    operand: Node
    negated: bool


Expr = Union[Lit, ListLit, Name, Where, Call, Unary, Binary, Logical, IsNull]

_GRAMMAR = Path(__file__).with_name("grammar.lark")


@lru_cache(maxsize=None)
def parser() -> Lark:
    # cache=True stores the built LALR tables in the temp directory, keyed by the grammar's
    # hash: a cold process then loads them instead of rebuilding (0.15 s -> ~0.01 s)
    # The transformer runs inside the LALR parser: no intermediate parse tree is built.
    return Lark(_GRAMMAR.read_text(encoding="utf-8"), parser="lalr", propagate_positions=True,
                maybe_placeholders=False, cache=True, transformer=_Build())


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "r": "\r", "0": "\0"}


def _unescape(raw: str, start: int) -> str:
    body = raw[1:-1]
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            n = body[i + 1]
            if n in _ESCAPES:
                out.append(_ESCAPES[n])
                i += 2
                continue
            if n == "u" and re.match(r"[0-9a-fA-F]{4}", body[i + 2:i + 6]):
                out.append(chr(int(body[i + 2:i + 6], 16)))
                i += 6
                continue
            raise ConditionError(f"unknown escape `\\{n}` in a string", code="COND_SYNTAX",
                                 offset=start + 1 + i, length=2)
        out.append(c)
        i += 1
    return "".join(out)


def _tspan(tok: Token) -> Span:
    return (tok.start_pos or 0, tok.end_pos or 0)


def _pos(c: Any, end: bool) -> int:
    if isinstance(c, Token):
        return (c.end_pos if end else c.start_pos) or 0
    return int(c.span[1] if end else c.span[0])


def _cover(c: list[Any]) -> Span:
    items = [x for x in c if x is not None]
    return (_pos(items[0], False), _pos(items[-1], True)) if items else (0, 0)


def _nodes(c: list[Any]) -> list[Any]:
    return [x for x in c if isinstance(x, Node)]


def _chain(op: str, c: list[Any]) -> Logical:
    left, right = c[0], c[2]
    head = left.items if isinstance(left, Logical) and left.op == op else (left,)
    return Logical(_cover(c), op, head + (right,))


class _Build(Transformer):
    """Runs inside the LALR parser (Lark's `transformer=`): no parse tree is built."""

    def or_(self, c: list[Any]) -> Logical:
        return _chain("or", c)

    def and_(self, c: list[Any]) -> Logical:
        return _chain("and", c)

    def not_(self, c: list[Any]) -> Unary:
        return Unary(_cover(c), "not", c[1])

    def compare(self, c: list[Any]) -> Binary:
        return Binary(_cover(c), str(c[1]), c[0], c[2], _tspan(c[1]))

    def in_(self, c: list[Any]) -> Binary:
        return Binary(_cover(c), "in", c[0], c[2], _tspan(c[1]))

    def not_in(self, c: list[Any]) -> Binary:
        return Binary(_cover(c), "not in", c[0], c[3], (_pos(c[1], False), _pos(c[2], True)))

    def contains(self, c: list[Any]) -> Binary:
        return Binary(_cover(c), "contains", c[0], c[2], _tspan(c[1]))

    def starts_with(self, c: list[Any]) -> Binary:
        return Binary(_cover(c), "starts_with", c[0], c[2], _tspan(c[1]))

    def is_null(self, c: list[Any]) -> IsNull:
        return IsNull(_cover(c), c[0], False)

    def is_not_null(self, c: list[Any]) -> IsNull:
        return IsNull(_cover(c), c[0], True)

    def arith(self, c: list[Any]) -> Binary:
        return Binary(_cover(c), str(c[1]), c[0], c[2], _tspan(c[1]))

    def neg(self, c: list[Any]) -> Node:
        operand = c[1]
        if isinstance(operand, Lit) and operand.kind == "number":
            return Lit(_cover(c), -operand.value, "number")
        return Unary(_cover(c), "-", operand)

    def number(self, c: list[Any]) -> Lit:
        return Lit(_cover(c), Decimal(str(c[0])), "number")

    def string(self, c: list[Any]) -> Lit:
        return Lit(_cover(c), _unescape(str(c[0]), c[0].start_pos), "string")

    def duration(self, c: list[Any]) -> Lit:
        return Lit(_cover(c), str(c[0]), "duration")

    def true(self, c: list[Any]) -> Lit:
        return Lit(_cover(c), True, "bool")

    def false(self, c: list[Any]) -> Lit:
        return Lit(_cover(c), False, "bool")

    def null(self, c: list[Any]) -> Lit:
        return Lit(_cover(c), None, "null")

    def list_(self, c: list[Any]) -> ListLit:
        return ListLit(_cover(c), tuple(_nodes(c)))

    def call(self, c: list[Any]) -> Call:
        return Call(_cover(c), str(c[0]), tuple(_nodes(c[1:])), _tspan(c[0]))

    def name(self, c: list[Any]) -> Name:
        return Name(_cover(c), tuple(str(t) for t in c))

    def paren(self, c: list[Any]) -> Node:
        node: Node = c[1]
        return node

    def where_arg(self, c: list[Any]) -> Where:
        return Where(_cover(c), c[0], c[2])


_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "DURATION": "a duration",
    "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`", "COMMA": "`,`", "DOT": "`.`",
    "COMP_OP": "a comparison (==, !=, <, <=, >, >=)", "PLUS": "`+`", "MINUS": "`-`",
    "STAR": "`*`", "SLASH": "`/`", "NOT": "`not`", "AND": "`and`", "OR": "`or`",
    "IN": "`in`", "IS": "`is`", "NULL": "`null`", "TRUE": "`true`", "FALSE": "`false`",
    "CONTAINS": "`contains`", "STARTS_WITH": "`starts_with`", "WHERE": "`where`",
    "$END": "the end of the condition",
}


def _expected(names: set[str]) -> str:
    words = sorted({_WORDS.get(n, n.lower()) for n in names})
    if any(n in names for n in ("COMP_OP", "AND", "OR")) and "$END" in names:
        return "an operator (and, or, ==, <, in, ...) or the end of the condition"
    if {"NAME", "NUMBER", "STRING"} <= names:
        return "a value: a name, number, string, list or `(`"
    if len(words) > 6:
        words = words[:6] + ["..."]
    return ", ".join(words)


def _depth(text: str) -> tuple[int, int]:
    """Deepest bracket nesting outside strings, and where it happens."""
    depth = best = where = 0
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
            if depth > best:
                best, where = depth, i
        elif ch in ")]":
            depth -= 1
        i += 1
    return best, where


def parse(text: str) -> Expr:
    """Parse condition text; raises ConditionError with an offset into `text`."""
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"condition is {len(text)} characters long; the limit is "
                             f"{MAX_LENGTH}", code="COND_TOO_LONG", offset=MAX_LENGTH,
                             hint="split it across rules or simplify it")
    nest, where = _depth(text)
    if nest > MAX_DEPTH:
        raise ConditionError(f"condition is nested {nest} levels deep; the limit is {MAX_DEPTH}",
                             code="COND_TOO_DEEP", offset=where)
    if not text.strip():
        raise ConditionError("condition is empty", code="COND_SYNTAX", offset=0)
    try:
        result: Expr = parser().parse(text)  # type: ignore[assignment]
    except UnexpectedInput as exc:
        raise _friendly(text, exc) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, ConditionError):
            raise exc.orig_exc from None
        raise
    if _tree_depth(result) > MAX_DEPTH:
        raise ConditionError(f"condition is nested deeper than {MAX_DEPTH} levels",
                             code="COND_TOO_DEEP", offset=0, length=len(text))
    return result


def _tree_depth(node: Node) -> int:
    stack: list[tuple[Node, int]] = [(node, 1)]
    best = 0
    while stack:
        n, d = stack.pop()
        best = max(best, d)
        stack.extend((c, d + 1) for c in children(n))
    return best


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, ListLit):
        return node.items
    if isinstance(node, Where):
        return (node.subject, node.cond)
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Logical):
        return node.items
    if isinstance(node, IsNull):
        return (node.operand,)
    return ()


_SYMBOL_HINTS = {
    "&": ("`&&` is not an operator", "write `and`"),
    "|": ("`||` is not an operator", "write `or`"),
    "!": ("`!` is not an operator", "write `not`, or `!=` to compare"),
    "=": ("`=` is not a comparison", "write `==` to compare"),
}


def _friendly(text: str, exc: UnexpectedInput) -> ConditionError:
    pos = exc.pos_in_stream if exc.pos_in_stream is not None else len(text)
    if isinstance(exc, UnexpectedCharacters):
        ch = text[pos] if pos < len(text) else ""
        nxt = text[pos + 1] if pos + 1 < len(text) else ""
        if ch in _SYMBOL_HINTS and not (ch == "=" and nxt == "="):
            if ch == "!" and nxt == "=":
                pass
            else:
                msg, hint = _SYMBOL_HINTS[ch]
                return ConditionError(msg, code="COND_SYNTAX", offset=pos, hint=hint)
        if ch == "#":
            return ConditionError("`#` is not part of the condition language", code="COND_SYNTAX",
                                  offset=pos, hint="conditions have no comments; inside a YAML "
                                  "`>` or `|` block a `#` is condition text, so move the comment "
                                  "above the key")
        if ch == "#":
            return ConditionError("`#` is not part of the condition language", code="COND_SYNTAX",
                                  offset=pos, hint="conditions have no comments; inside a YAML "
                                  "`>` or `|` block a `#` is condition text, so move the comment "
                                  "above the key")
        if ch in "\"'":
            return ConditionError("string is not closed", code="COND_SYNTAX", offset=pos,
                                  hint=f"end it with {ch} on the same line")
        m = re.match(r"[0-9]+(?:\.[0-9]+)?[A-Za-z]+", text[_word_start(text, pos):])
        if m:
            return ConditionError(f"`{m.group()}` is neither a number nor a duration",
                                  code="COND_SYNTAX", offset=_word_start(text, pos),
                                  length=len(m.group()),
                                  hint="durations are whole numbers with units w d h m s, "
                                       "e.g. 90m or 1h30m")
        return ConditionError(f"unexpected character `{ch}`", code="COND_SYNTAX", offset=pos,
                              hint=f"expected {_expected(set(exc.allowed or ()))}"
                              if exc.allowed else "")
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            return ConditionError("condition ends too early", code="COND_SYNTAX",
                                  offset=len(text.rstrip()),
                                  hint=f"expected {_expected(set(exc.expected))}")
        start = tok.start_pos if tok.start_pos is not None else pos
        what = f"`{tok}`"
        if tok.type == "COMP_OP" and "COMP_OP" not in exc.expected:
            return ConditionError(f"unexpected {what}: comparisons cannot be chained",
                                  code="COND_SYNTAX", offset=start, length=len(str(tok)),
                                  hint="write `a < b and b < c`")
        return ConditionError(f"unexpected {what}", code="COND_SYNTAX", offset=start,
                              length=len(str(tok)), hint=f"expected {_expected(set(exc.expected))}")
    if isinstance(exc, UnexpectedEOF):
        return ConditionError("condition ends too early", code="COND_SYNTAX", offset=len(text))
    return ConditionError("condition does not parse", code="COND_SYNTAX", offset=pos)


def _word_start(text: str, pos: int) -> int:
    while pos > 0 and (text[pos - 1].isalnum() or text[pos - 1] in "._"):
        pos -= 1
    return pos
