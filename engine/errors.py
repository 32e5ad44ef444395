"""One error tree for the whole engine, and the diagnostics that validation reports.

Every problem an operator can cause is reported with a stable code and, where there is one,
the file, line and column it comes from. Normal outcomes (capped, no consent, quiet hours)
are values with reasons, never exceptions.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, order=True)
class Position:
    """A place in a source file: 1-based line and column (column counts characters)."""

    path: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.path
        return f"{self.path}:{self.line}:{self.column}"


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a project; `code` is stable and documented in docs/validate.md."""

    severity: Severity
    code: str
    message: str
    pos: Position
    hint: str = ""
    length: int = 1  # characters the caret should underline
    accepted: str = ""  # reason given by an `allow:` entry, for accepted warnings

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.pos.path, self.pos.line, self.pos.column, self.code)

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "path": self.pos.path,
            "line": self.pos.line,
            "column": self.pos.column,
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
        }
        if self.hint:
            out["hint"] = self.hint
        if self.accepted:
            out["accepted"] = self.accepted
        return out


class EngineError(Exception):
    """Root of every error the engine raises on purpose.

    `exit_code` follows the CLI contract: 1 when the input had problems, 2 when the
    engine could not run at all.
    """

    code = "ENGINE"
    exit_code = 2

    def __init__(self, message: str, *, pos: Position | None = None, hint: str = "",
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.hint = hint
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        where = f"{self.pos}: " if self.pos else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{self.message}{hint}"


class CannotRun(EngineError):
    """The engine could not run: missing project, unreadable file, broken environment."""

    code = "CANNOT_RUN"
    exit_code = 2


class InputProblems(EngineError):
    """The input had problems; carries every diagnostic found, not just the first."""

    code = "INPUT"
    exit_code = 1

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        first = self.diagnostics[0] if self.diagnostics else None
        msg = f"{len(self.diagnostics)} problem(s)" + (f"; first: {first.message}" if first else "")
        super().__init__(msg, pos=first.pos if first else None)


class ConditionError(EngineError):
    """A condition failed to parse or type-check; position is inside the condition text."""

    code = "COND_SYNTAX"
    exit_code = 1

    def __init__(self, message: str, *, code: str, offset: int, length: int = 1,
                 hint: str = "") -> None:
        super().__init__(message, hint=hint, code=code)
        self.offset = offset  # 0-based character offset into the condition text
        self.length = max(1, length)
