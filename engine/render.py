"""Message templates: one sandboxed Jinja2 environment for validation and for sending.

Operators write `{{ coupon.name }}` in message text and subscription data. Templates are
rendered in Jinja2's `ImmutableSandboxedEnvironment` with `StrictUndefined`: an undefined
name is an error, attribute access to Python internals is refused, nothing is mutated.
Validation parses every template with this same environment, so an unknown filter or a
syntax error is caught in CI, not at 10 a.m. on a Monday.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .config import fen_to_yuan


def _date(value: Any, fmt: str = "%Y-%m-%d") -> str:
    if isinstance(value, (datetime, date)):
        return value.strftime(fmt)
    return str(value)


def _time(value: Any, fmt: str = "%H:%M") -> str:
    if isinstance(value, datetime):
        return value.strftime(fmt)
    return str(value)


def _yuan(value: Any) -> str:
    """Integer fen -> `12.50`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return fen_to_yuan(value)
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return str(value)


def _truncate_chars(value: Any, length: int = 20, end: str = "…") -> str:
    text = str(value)
    return text if len(text) <= length else text[: max(0, length - len(end))] + end


FILTERS = {"date": _date, "time": _time, "yuan": _yuan, "cut": _truncate_chars}


@lru_cache(maxsize=None)
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                        keep_trailing_newline=True)
    env.filters.update(FILTERS)
    return env


@dataclass(frozen=True)
class TemplateProblem:
    message: str
    line: int  # 1-based line inside the template text
    offset: int  # 0-based offset of that line's start in the template text


@dataclass(frozen=True)
class Reference:
    """A `root.attr` the template reads, e.g. ("user", "phone") or ("coupon", None)."""

    root: str
    attr: str | None


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


@lru_cache(maxsize=4096)
def analyse(text: str) -> tuple[tuple[Reference, ...], TemplateProblem | None]:
    """Parse a template; return the variables it reads, or the syntax problem.

    Unknown filters and tests are found on the syntax tree rather than by compiling the
    template to Python (which costs ten times as much)."""
    env = environment()
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as exc:
        line = exc.lineno or 1
        offset = _line_offset(text, line)
        return (), TemplateProblem(exc.message or "template syntax error", line, offset)
    for f in tree.find_all(nodes.Filter):
        if f.name not in env.filters:
            return (), TemplateProblem(f"no filter named '{f.name}'; available: "
                                       + ", ".join(sorted(FILTERS)) + " and Jinja's built-ins",
                                       f.lineno, _line_offset(text, f.lineno))
    for t in tree.find_all(nodes.Test):
        if t.name not in env.tests:
            return (), TemplateProblem(f"no test named '{t.name}'", t.lineno,
                                       _line_offset(text, t.lineno))
    refs: list[Reference] = []
    seen_attr: set[int] = set()
    node: Any
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        base = node.node
        if isinstance(base, nodes.Name):
            attr = None
            if isinstance(node, nodes.Getattr):
                attr = node.attr
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                attr = node.arg.value
            refs.append(Reference(base.name, attr))
            seen_attr.add(id(base))
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and id(name) not in seen_attr:
            refs.append(Reference(name.name, None))
    return tuple(refs), None


@lru_cache(maxsize=4096)
def _compiled(text: str) -> Any:
    return environment().from_string(text)


def render(text: str, context: dict[str, Any]) -> str:
    """Render in the sandbox; raises jinja2 errors (undefined names, sandbox violations)."""
    out: str = _compiled(text).render(**context)
    return out


def _line_offset(text: str, line: int) -> int:
    offset = 0
    for _ in range(line - 1):
        nxt = text.find("\n", offset)
        if nxt < 0:
            break
        offset = nxt + 1
    return offset
