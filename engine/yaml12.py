"""Read YAML with YAML 1.2 core-schema semantics, keeping the position of every node.

PyYAML speaks YAML 1.1, where `yes` is a boolean, `21:30` is the number 1290 and `010` is 8;
operators expect none of that. This module composes the node graph with libyaml (fast), then
resolves scalars with the 1.2 core schema, rejects duplicate keys, and records for every path
in the document the line and column of its value and of its key. Floats become `Decimal`, so
`value: 10.10` stays exact money.

A `Document` can also map a character offset inside a scalar string back to the file's line
and column, for plain, quoted, literal (`|`) and folded (`>`) scalars: that is how a type error
inside a condition points at the offending token, not at the YAML key.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Union

import yaml
from yaml.constructor import BaseConstructor
from yaml.resolver import BaseResolver

from .errors import Diagnostic, Position, Severity

_Parser: Any
try:  # libyaml is in every PyYAML wheel; the pure parser is the fallback
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover
    _Parser = None

PathKey = tuple[Union[str, int], ...]

MAX_DEPTH = 64
MAX_NODES = 200_000

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
SEQ = "tag:yaml.org,2002:seq"
MAP = "tag:yaml.org,2002:map"


class _Resolver12(BaseResolver):
    """The YAML 1.2 core schema: nothing else is implicitly typed."""


# The forms of the core schema's scalars: implicitly typed plain scalars, and what an explicit
# tag (`!!int 5`) must hold.
_FORMS = {
    NULL: re.compile(r"^(?:~|null|Null|NULL|)$"),
    BOOL: re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    INT: re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    FLOAT: re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                      r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
}
_Resolver12.add_implicit_resolver(NULL, _FORMS[NULL], ["~", "n", "N", ""])
_Resolver12.add_implicit_resolver(BOOL, _FORMS[BOOL], list("tTfF"))
_Resolver12.add_implicit_resolver(INT, _FORMS[INT], list("-+0123456789"))
_Resolver12.add_implicit_resolver(FLOAT, _FORMS[FLOAT], list("-+0123456789."))


if _Parser is not None:
    class _Loader(_Parser, BaseConstructor, _Resolver12):
        def __init__(self, stream: str) -> None:
            _Parser.__init__(self, stream)
            BaseConstructor.__init__(self)
            _Resolver12.__init__(self)
else:  # pragma: no cover
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(Reader, Scanner, Parser, Composer, BaseConstructor,  # type: ignore[no-redef]
                  _Resolver12):
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)
            BaseConstructor.__init__(self)
            _Resolver12.__init__(self)


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based
    index: int  # 0-based character index into the text


@dataclass(frozen=True)
class Span:
    style: str  # "" plain, "'" or '"' quoted, "|" literal, ">" folded
    start: int
    end: int


class YamlError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


@dataclass
class Document:
    """A parsed YAML file: plain Python data plus the position of every node."""

    path: str
    text: str
    data: Any = None
    marks: dict[PathKey, Mark] = field(default_factory=dict)
    key_marks: dict[PathKey, Mark] = field(default_factory=dict)
    spans: dict[PathKey, Span] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)  # non-fatal: reading went on
    _line_starts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        starts = [0]
        for m in re.finditer("\n", self.text):
            starts.append(m.end())
        self._line_starts = starts

    # -- positions ---------------------------------------------------------------------------
    def pos(self, path: PathKey, *, key: bool = False) -> Position:
        """Where the value at `path` (or its key, with key=True) starts; the nearest ancestor
        when the path does not exist (e.g. a missing required key)."""
        p = tuple(path)
        if key and p in self.key_marks:
            m = self.key_marks[p]
            return Position(self.path, m.line, m.column)
        while p not in self.marks and p:
            p = p[:-1]
        found = self.marks.get(p)
        if found is None:
            return Position(self.path, 1, 1)
        return Position(self.path, found.line, found.column)

    def index_to_position(self, index: int) -> Position:
        line = bisect.bisect_right(self._line_starts, index) - 1
        return Position(self.path, line + 1, index - self._line_starts[line] + 1)

    def line_text(self, line: int) -> str:
        if line < 1 or line > len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start:] if end < 0 else self.text[start:end]

    def locate(self, path: PathKey, offset: int, probe: str = "") -> Position:
        """Position of character `offset` of the string scalar at `path`.

        Exact for plain, quoted and literal scalars; for folded ones, exact when the folding
        is the common kind, and otherwise the line where `probe` (the token) appears."""
        span = self.spans.get(tuple(path))
        value = _get(self.data, path)
        if span is None or not isinstance(value, str):
            return self.pos(path)
        index_map = _scalar_index_map(self.text, span, value)
        if index_map is not None and 0 <= offset < len(index_map):
            return self.index_to_position(index_map[offset])
        if index_map is not None and offset >= len(index_map) and index_map:
            return self.index_to_position(index_map[-1] + 1)
        raw = self.text[span.start:span.end]
        if probe:
            found = raw.find(probe)
            if found >= 0:
                return self.index_to_position(span.start + found)
        return self.pos(path)


def _get(data: Any, path: PathKey) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def load(text: str, path: str) -> Document:
    """Parse one YAML document. Raises YamlError with a positioned diagnostic."""
    doc = Document(path=path, text=text)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        context = f"{exc.context}, " if exc.context else ""
        raise YamlError(Diagnostic(Severity.ERROR, "YAML_SYNTAX",
                                   f"invalid YAML: {context}{problem}",
                                   Position(path, line, col))) from None
    except yaml.YAMLError as exc:
        raise YamlError(Diagnostic(Severity.ERROR, "YAML_SYNTAX", f"invalid YAML: {exc}",
                                   Position(path, 1, 1))) from None
    if node is None:
        doc.data = None
        return doc
    builder = _Builder(doc)
    doc.data = builder.build(node, (), 0)
    return doc


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.count = 0

    def _mark(self, node: yaml.Node) -> Mark:
        m = node.start_mark
        return Mark(m.line + 1, m.column + 1, m.index)

    def _fail(self, code: str, msg: str, node: yaml.Node, hint: str = "") -> YamlError:
        m = self._mark(node)
        return YamlError(Diagnostic(Severity.ERROR, code, msg,
                                    Position(self.doc.path, m.line, m.column), hint=hint))

    def _note(self, code: str, msg: str, node: yaml.Node, hint: str = "") -> None:
        self.doc.problems.append(self._fail(code, msg, node, hint).diagnostic)

    def build(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._fail("YAML_TOO_LARGE", f"document has more than {MAX_NODES} nodes "
                             "(aliases expanded)", node)
        if depth > MAX_DEPTH:
            raise self._fail("YAML_TOO_DEEP", f"document is nested deeper than {MAX_DEPTH} levels",
                             node)
        self.doc.marks[path] = self._mark(node)
        if isinstance(node, yaml.ScalarNode):
            style = node.style or ""
            self.doc.spans[path] = Span(style, node.start_mark.index, node.end_mark.index)
            return self._scalar(node)
        if isinstance(node, yaml.SequenceNode):
            if node.tag not in (SEQ,):
                raise self._fail("YAML_TAG", f"unsupported YAML tag {node.tag}", node)
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag not in (MAP,):
                raise self._fail("YAML_TAG", f"unsupported YAML tag {node.tag}", node)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self._fail("YAML_KEY", "mapping keys must be plain strings", key_node)
                key = key_node.value
                if key in out:
                    first = self.doc.key_marks[path + (key,)]
                    self._note("YAML_DUPLICATE_KEY",
                                     f"duplicate key `{key}` (first defined at line {first.line})",
                                     key_node, hint="YAML keys must be unique; remove or rename one")
                    continue
                self.doc.key_marks[path + (key,)] = self._mark(key_node)
                out[key] = self.build(value_node, path + (key,), depth + 1)
            return out
        raise self._fail("YAML_SYNTAX", "unsupported YAML node", node)  # pragma: no cover

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag, value = node.tag, node.value
        if tag == STR or tag == "!":
            return value
        form = _FORMS.get(tag)
        if form is not None and not form.match(value):  # an explicit tag on the wrong text
            self._note("YAML_TAG", f"`{value}` is not a valid !!{tag.rsplit(':', 1)[-1]}", node,
                       hint="remove the tag; plain YAML values need none")
            return value
        if tag == NULL:
            return None
        if tag == BOOL:
            return value.lower() == "true"
        if tag == INT:
            if value.startswith("0o"):
                return int(value[2:], 8)
            if value.startswith("0x"):
                return int(value[2:], 16)
            return int(value, 10)
        if tag == FLOAT:
            low = value.lower()
            if low.endswith("inf") or low.endswith("nan"):
                return float(value.replace(".", "", 1))
            return Decimal(value)
        self._note("YAML_TAG", f"unsupported YAML tag {tag}", node,
                   hint="only plain YAML is accepted: strings, numbers, booleans, null, "
                        "lists and mappings")
        return value


# -- mapping offsets inside a scalar back to the source ----------------------------------------

def _scalar_index_map(text: str, span: Span, value: str) -> list[int] | None:
    """For each character of `value`, the index in `text` it came from; None if unsure."""
    try:
        if span.style in ("|", ">"):
            built, idx = _block(text, span)
            if span.style == "|":
                ok = built.rstrip("\n") == value.rstrip("\n")
            else:
                ok = built.rstrip("\n") == value.rstrip("\n")
        else:
            built, idx = _flow(text, span)
            ok = built == value
    except (IndexError, ValueError):
        return None
    return idx if ok else None


def _flow(text: str, span: Span) -> tuple[str, list[int]]:
    start, end, style = span.start, span.end, span.style
    if style in ("'", '"'):
        start, end = start + 1, end - 1
    chars: list[str] = []
    idx: list[int] = []
    i = start
    pending_break = 0  # line breaks seen since the last content
    at_line_start = False
    trailing: list[tuple[str, int]] = []
    while i < end:
        c = text[i]
        if c == "\n":
            pending_break += 1
            trailing = []  # trailing white space before a break is dropped
            at_line_start = True
            i += 1
            continue
        if at_line_start and c in " \t":
            i += 1
            continue
        if c in " \t" and style != '"' and style != "'":
            trailing.append((c, i))
            i += 1
            continue
        if c in " \t":
            trailing.append((c, i))
            i += 1
            continue
        # content character: first flush folding and kept white space
        if pending_break:
            if pending_break == 1:
                chars.append(" ")
                idx.append(i)
            else:
                for _ in range(pending_break - 1):
                    chars.append("\n")
                    idx.append(i)
            pending_break = 0
        at_line_start = False
        for tc, ti in trailing:
            chars.append(tc)
            idx.append(ti)
        trailing = []
        if style == "'" and c == "'" and i + 1 < end and text[i + 1] == "'":
            chars.append("'")
            idx.append(i)
            i += 2
            continue
        if style == '"' and c == "\\":
            nxt = text[i + 1]
            if nxt == "\n":  # escaped line break: joins without a space
                i += 2
                while i < end and text[i] in " \t":
                    i += 1
                continue
            simple = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "/": "/", "0": "\0",
                      "r": "\r", " ": " ", "a": "\a", "b": "\b", "e": "\x1b", "N": "\x85",
                      "_": "\xa0", "L": "\u2028", "P": "\u2029", "v": "\v", "f": "\f"}
            if nxt in simple:
                chars.append(simple[nxt])
                idx.append(i)
                i += 2
                continue
            width = {"x": 2, "u": 4, "U": 8}.get(nxt)
            if width is None:
                raise ValueError("unknown escape")
            chars.append(chr(int(text[i + 2:i + 2 + width], 16)))
            idx.append(i)
            i += 2 + width
            continue
        chars.append(c)
        idx.append(i)
        i += 1
    if style in ("'", '"'):
        # white space right before the closing quote is content
        for tc, ti in trailing:
            chars.append(tc)
            idx.append(ti)
        if pending_break:
            chars.append(" " if pending_break == 1 else "\n" * (pending_break - 1))
            idx.append(end)
    return "".join(chars), idx


def _block(text: str, span: Span) -> tuple[str, list[int]]:
    header_end = text.index("\n", span.start) + 1
    header = text[span.start:header_end].split("#", 1)[0].strip()
    lines: list[tuple[int, str]] = []
    i = header_end
    while i < span.end:
        j = text.find("\n", i)
        if j < 0 or j > span.end:
            j = span.end
        lines.append((i, text[i:j]))
        i = j + 1
    digits = [c for c in header if c.isdigit()]
    if digits:
        base = _indent_of_parent(text, span.start)
        indent = base + int(digits[0])
    else:
        nonblank = [len(s) - len(s.lstrip(" ")) for _, s in lines if s.strip()]
        indent = min(nonblank) if nonblank else 0
    chars: list[str] = []
    idx: list[int] = []
    folded = span.style == ">"
    prev_kind = ""  # "", "text", "blank", "more"
    blanks = 0
    for start, line in lines:
        content = line[indent:] if len(line) >= indent else ""
        if not line.strip():
            blanks += 1
            continue
        more = content[:1] in (" ", "\t")
        if chars:
            if folded and prev_kind == "text" and not more:
                sep = " " if blanks == 0 else "\n" * blanks
            else:
                sep = "\n" * (blanks + 1)
            for ch in sep:
                chars.append(ch)
                idx.append(start + indent)
        blanks = 0
        for k, ch in enumerate(content):
            chars.append(ch)
            idx.append(start + indent + k)
        prev_kind = "more" if more else "text"
    return "".join(chars), idx


def _indent_of_parent(text: str, index: int) -> int:
    line_start = text.rfind("\n", 0, index) + 1
    line = text[line_start:index]
    return len(line) - len(line.lstrip(" "))
