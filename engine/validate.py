"""`engine validate`: load a project, run every static check, format the findings.

Formats: `text` (path:line:col: severity[CODE]: message, the source line and a caret),
`json` (one object), `github` (workflow-command annotations). Exit status is decided by the
caller from `Result.failed(strict)`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

from .checks import check_loaded
from .errors import Diagnostic, Severity
from .project import load
from .yaml12 import Document


@dataclass
class Result:
    diagnostics: list[Diagnostic]
    docs: dict[str, Document] = field(default_factory=dict)
    files: int = 0
    rules: int = 0

    def count(self, severity: Severity, accepted: bool = False) -> int:
        return sum(1 for d in self.diagnostics
                   if d.severity is severity and bool(d.accepted) == accepted)

    def failed(self, strict: bool = False) -> bool:
        if self.count(Severity.ERROR):
            return True
        return strict and self.count(Severity.WARNING) > 0


def validate(project: str | None = None, paths: Sequence[str] = ()) -> Result:
    loaded = load(project, paths)
    check_loaded(loaded)
    return Result(loaded.diagnostics, loaded.docs, loaded.files, len(loaded.rules))


def effective(d: Diagnostic, strict: bool) -> str:
    if strict and d.severity is Severity.WARNING and not d.accepted:
        return "error"
    return d.severity.value


def format_text(result: Result, strict: bool = False, color: bool = False) -> str:
    def paint(text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    lines: list[str] = []
    for d in result.diagnostics:
        sev = effective(d, strict)
        label = paint(sev, "1;31" if sev == "error" else "1;33")
        accepted = f" (accepted: {d.accepted})" if d.accepted else ""
        lines.append(f"{paint(str(d.pos), '1')}: {label}[{d.code}]: {d.message}{accepted}")
        doc = result.docs.get(d.pos.path)
        if doc is not None and d.pos.line > 0:
            src = doc.line_text(d.pos.line)
            if src.strip():
                gutter = f"{d.pos.line:>5} | "
                lines.append(gutter + src)
                width = max(1, min(d.length, len(src) - d.pos.column + 1))
                caret = " " * (len(gutter) - 2) + "| " + _pad(src, d.pos.column - 1) \
                    + paint("^" + "~" * (width - 1), "1;32")
                lines.append(caret)
        if d.hint:
            lines.append(f"      = hint: {d.hint}")
    errors = sum(1 for d in result.diagnostics if effective(d, strict) == "error")
    warnings = sum(1 for d in result.diagnostics if effective(d, strict) == "warning"
                   and not d.accepted)
    n_accepted = sum(1 for d in result.diagnostics if d.accepted)
    summary = (f"{result.files} file(s), {result.rules} rule(s): {errors} error(s), "
               f"{warnings} warning(s)" + (f", {n_accepted} accepted" if n_accepted else ""))
    lines.append(summary if result.diagnostics else f"{summary}: all clean")
    return "\n".join(lines)


def _pad(src: str, n: int) -> str:
    """White space as wide as the first n characters of src (CJK counts double)."""
    out = []
    for ch in src[:n]:
        if ch == "\t":
            out.append("\t")
        elif "\u1100" <= ch and (ch <= "\u115f" or "\u2e80" <= ch <= "\ua4cf"
                                 or "\uac00" <= ch <= "\ud7a3" or "\uf900" <= ch <= "\ufaff"
                                 or "\ufe30" <= ch <= "\ufe4f" or "\uff00" <= ch <= "\uff60"
                                 or "\uffe0" <= ch <= "\uffe6"):
            out.append("  ")
        else:
            out.append(" ")
    return "".join(out)


def format_json(result: Result, strict: bool = False) -> str:
    diags = []
    for d in result.diagnostics:
        item = d.as_json()
        item["severity"] = effective(d, strict)
        diags.append(item)
    out = {
        "files": result.files,
        "rules": result.rules,
        "errors": sum(1 for d in diags if d["severity"] == "error"),
        "warnings": sum(1 for d in diags if d["severity"] == "warning" and "accepted" not in d),
        "accepted": sum(1 for d in diags if "accepted" in d),
        "diagnostics": diags,
    }
    return json.dumps(out, ensure_ascii=False, indent=2)


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def format_github(result: Result, strict: bool = False) -> str:
    lines = []
    for d in result.diagnostics:
        sev = effective(d, strict)
        kind = {"error": "error", "warning": "warning"}.get(sev, "notice")
        if d.accepted:
            kind = "notice"
        msg = d.message + (f" (hint: {d.hint})" if d.hint else "") \
            + (f" (accepted: {d.accepted})" if d.accepted else "")
        lines.append(f"::{kind} file={_gh_escape(d.pos.path, True)},line={d.pos.line},"
                     f"col={d.pos.column},title={_gh_escape(d.code, True)}::{_gh_escape(msg)}")
    return "\n".join(lines)
