"""Rule test files: the model of a test, reading it with positions, and every check that
needs no database (`engine validate` runs these too)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from .. import schema
from ..errors import Diagnostic, Position, Severity
from ..project import Project, read_document, rule_test_files
from ..timeutil import BadTimestamp, parse_timestamp
from ..yaml12 import Document

NOT_MATCHED = "not_in_audience"


# -- the test model ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Expectation:
    rule: str
    user: str
    fire: bool
    pos: Position
    reason: str | None = None
    actions: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    variant: str | None = None
    deferred_until: datetime | None = None

    def describe(self) -> str:
        if not self.fire:
            return f"no fire ({self.reason})" if self.reason else "no fire"
        out = "deferred" if self.deferred_until is not None else "fire"
        if self.deferred_until is not None:
            out += f" until {self.deferred_until.isoformat()}"
        return out + _details(self.actions, self.channels, self.variant)


@dataclass(frozen=True)
class Row:
    data: dict[str, Any]
    pos: Position


@dataclass(frozen=True)
class Step:
    at: datetime
    pos: Position
    events: tuple[Row, ...] = ()
    expect: tuple[Expectation, ...] = ()


@dataclass(frozen=True)
class RuleTest:
    path: str
    name: str
    rules: tuple[str, ...]
    users: tuple[Row, ...]
    events: tuple[Row, ...]
    steps: tuple[Step, ...]

    @property
    def expectations(self) -> int:
        return sum(len(s.expect) for s in self.steps)


@dataclass(frozen=True)
class Actual:
    """What the planner decided for one (rule, user) occurrence at one step."""

    outcome: str  # fire | deferred | suppressed | not matched
    reason: str | None = None
    actions: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    variant: str | None = None
    deferred_until: datetime | None = None

    @property
    def fired(self) -> bool:
        return self.outcome in ("fire", "deferred")

    def describe(self) -> str:
        if self.outcome == "suppressed":
            return f"suppressed ({self.reason})"
        if self.outcome == "not matched":
            return f"not matched ({NOT_MATCHED})"
        out = self.outcome
        if self.deferred_until is not None:
            out += f" until {self.deferred_until.isoformat()}"
        return out + _details(self.actions, self.channels, self.variant)


def _details(actions: Sequence[str] | None, channels: Sequence[str] | None,
             variant: str | None) -> str:
    parts = []
    if actions is not None:
        parts.append(f"actions [{', '.join(actions)}]")
    if channels is not None:
        parts.append(f"channels [{', '.join(channels)}]")
    if variant is not None:
        parts.append(f"variant {variant}")
    return (", " + ", ".join(parts)) if parts else ""


@dataclass(frozen=True)
class Failure:
    step: int  # 1-based
    at: datetime
    rule: str
    user: str
    expected: str | None  # None: an unexpected fire
    actual: str
    pos: Position

    def lines(self) -> list[str]:
        where = f"{self.pos}: " if self.expected is not None else ""
        head = f"{where}{self.rule} {self.user}"
        if self.expected is None:
            return [f"unexpected fire: {self.rule} {self.user}",
                    f"  + got:      {self.actual}"]
        return [head, f"  - expected: {self.expected}", f"  + got:      {self.actual}"]


@dataclass(frozen=True)
class TestResult:
    test: RuleTest
    failures: tuple[Failure, ...] = ()
    errors: tuple[Diagnostic, ...] = ()  # the test could not run (bad rows)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "error" if self.errors else "fail" if self.failures else "pass"

    def as_json(self) -> dict[str, Any]:
        return {"path": self.test.path, "name": self.test.name, "status": self.status,
                "steps": len(self.test.steps), "expectations": self.test.expectations,
                "seconds": round(self.seconds, 4),
                "failures": [{"step": f.step, "at": f.at.isoformat(), "rule": f.rule,
                              "user": f.user, "expected": f.expected, "got": f.actual,
                              "line": f.pos.line if f.expected is not None else None}
                             for f in self.failures],
                "errors": [{"line": d.pos.line, "column": d.pos.column, "code": d.code,
                            "message": d.message} for d in self.errors]}


@dataclass(frozen=True)
class Suite:
    results: tuple[TestResult, ...]
    seconds: float

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def exit_code(self) -> int:
        return 0 if self.results and all(r.status == "pass" for r in self.results) else 1

    def as_json(self) -> dict[str, Any]:
        return {"tests": len(self.results), "passed": self.count("pass"),
                "failed": self.count("fail"), "errors": self.count("error"),
                "seconds": round(self.seconds, 3),
                "results": [r.as_json() for r in self.results]}


# -- reading and checking test files ----------------------------------------------------------

def _reasons() -> set[str]:
    from ..plan import REASONS
    return set(REASONS) | {NOT_MATCHED}


def check_test_document(doc: Document, project: Project) -> list[Diagnostic]:
    """Every problem in one rule test file that can be found without running it."""
    from ..lang.checker import suggest

    diags = list(schema.check(doc, "ruletest", doc.data if doc.data is not None else {}))
    data = doc.data
    if not isinstance(data, dict):
        return diags
    rule_ids = {r.id for r in project.rules}
    has_steps, has_at = "steps" in data, "at" in data or "expect" in data
    if has_steps == has_at or ("at" in data) != ("expect" in data) and not has_steps:
        diags.append(Diagnostic(
            Severity.ERROR, "TEST_SHAPE",
            "a rule test has `at` with `expect`, or `steps:`" + (", not both" if has_steps
                                                                 and has_at else ""),
            doc.pos(("steps",), key=True) if has_steps and has_at else doc.pos(()),
            hint="one tick: `at:` + `expect:`; several: `steps: [{at: ..., expect: [...]}]`"))
    for at, rid in ((("rules", i), r) for i, r in enumerate(data.get("rules") or [])):
        if isinstance(rid, str) and rid not in rule_ids:
            diags.append(_unknown_rule(doc, at, rid, rule_ids))
    for at, value in _timestamps(data):
        if isinstance(value, str):
            try:
                parse_timestamp(value, project.config.tz)
            except BadTimestamp as exc:
                diags.append(Diagnostic(Severity.ERROR, "BAD_TIMESTAMP", exc.message,
                                        doc.pos(at), hint=exc.hint))
    reasons = _reasons()
    for at, e in _expectations(data):
        if not isinstance(e, dict):
            continue
        rid = e.get("rule")
        rule = project.rule(rid) if isinstance(rid, str) else None
        if isinstance(rid, str) and rule is None:
            diags.append(_unknown_rule(doc, at + ("rule",), rid, rule_ids))
        reason = e.get("reason")
        if isinstance(reason, str) and reason not in reasons:
            diags.append(Diagnostic(Severity.ERROR, "UNKNOWN_REASON",
                                    f"`{reason}` is not a reason the engine gives",
                                    doc.pos(at + ("reason",)), hint=suggest(reason, reasons)))
        variant = e.get("variant")
        if isinstance(variant, str) and rule is not None:
            names = [v.name for v in (rule.experiment.variants if rule.experiment else ())]
            if variant not in names:
                diags.append(Diagnostic(
                    Severity.ERROR, "UNKNOWN_VARIANT",
                    f"rule `{rule.id}` has no variant `{variant}`"
                    + ("" if names else " (it has no experiment)"),
                    doc.pos(at + ("variant",)), hint=suggest(variant, names)))
    return diags


def _unknown_rule(doc: Document, at: tuple[Any, ...], rid: str, ids: set[str]) -> Diagnostic:
    from ..lang.checker import suggest
    return Diagnostic(Severity.ERROR, "UNKNOWN_RULE", f"rule test names unknown rule `{rid}`",
                      doc.pos(at), hint=suggest(rid, ids))


def _expectations(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], Any]]:
    out: list[tuple[tuple[Any, ...], Any]] = [
        (("expect", i), e) for i, e in enumerate(_list(data.get("expect")))]
    for j, step in enumerate(_list(data.get("steps"))):
        if isinstance(step, dict):
            out += [(("steps", j, "expect", i), e) for i, e in enumerate(_list(step.get("expect")))]
    return out


def _timestamps(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], Any]]:
    out: list[tuple[tuple[Any, ...], Any]] = [(("at",), data.get("at"))]
    for j, step in enumerate(_list(data.get("steps"))):
        if isinstance(step, dict):
            out.append((("steps", j, "at"), step.get("at")))
    out += [(at + ("deferred_until",), e.get("deferred_until"))
            for at, e in _expectations(data) if isinstance(e, dict)]
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def load_tests(project: Project, paths: Sequence[str] = ()
               ) -> tuple[list[RuleTest], list[Diagnostic], dict[str, Document]]:
    """The rule tests in `paths` (files or directories; default: the project's tests/)."""
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files += sorted(f for f in path.iterdir() if f.suffix in (".yaml", ".yml"))
        elif path.is_file():
            files.append(path)
        else:
            from ..errors import CannotRun
            raise CannotRun(f"no such file or directory: {p}")
    if not paths:
        files = rule_test_files(project.root)
    diags: list[Diagnostic] = []
    docs: dict[str, Document] = {}
    tests = []
    for path in files:
        doc = read_document(path, diags, docs)
        if doc is None:
            continue
        docs[doc.path] = doc
        problems = [d for d in check_test_document(doc, project)
                    if d.severity == Severity.ERROR]
        diags += problems
        if not problems:
            tests.append(_build(doc, project))
    return tests, diags, docs


def _build(doc: Document, project: Project) -> RuleTest:
    data: dict[str, Any] = doc.data
    tz = project.config.tz

    def rows(items: list[Any], base: tuple[Any, ...]) -> tuple[Row, ...]:
        return tuple(Row(dict(x), doc.pos(base + (i,))) for i, x in enumerate(items))

    def expectations(items: list[Any], base: tuple[Any, ...]) -> tuple[Expectation, ...]:
        out = []
        for i, e in enumerate(items):
            until = e.get("deferred_until")
            out.append(Expectation(
                rule=e["rule"], user=str(e["user"]),
                fire=bool(e.get("fire", "reason" not in e)), pos=doc.pos(base + (i,)),
                reason=e.get("reason"),
                actions=tuple(e["actions"]) if "actions" in e else None,
                channels=tuple(e["channels"]) if "channels" in e else None,
                variant=e.get("variant"),
                deferred_until=parse_timestamp(until, tz) if until else None))
        return tuple(out)

    if "steps" in data:
        steps = tuple(Step(parse_timestamp(s["at"], tz), doc.pos(("steps", j)),
                           rows(s.get("events") or [], ("steps", j, "events")),
                           expectations(s.get("expect") or [], ("steps", j, "expect")))
                      for j, s in enumerate(data["steps"]))
    else:
        steps = (Step(parse_timestamp(data["at"], tz), doc.pos(("at",)), (),
                      expectations(data.get("expect") or [], ("expect",))),)
    named = list(data.get("rules") or [])
    for s in steps:
        named += [e.rule for e in s.expect if e.rule not in named]
    return RuleTest(doc.path, str(data.get("name") or Path(doc.path).stem), tuple(named),
                    rows(data.get("users") or [], ("users",)),
                    rows(data.get("events") or [], ("events",)), steps)


