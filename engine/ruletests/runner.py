"""Running rule tests: a fresh database per test, each step a committed tick, exact matching."""
from __future__ import annotations

import json
import re
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import Diagnostic, Severity
from ..project import Project
from ..timeutil import from_micros, to_micros
from .files import NOT_MATCHED, Actual, Expectation, Failure, Row, RuleTest, Step, Suite, TestResult

# -- running ----------------------------------------------------------------------------------

def run_tests(project: Project, tests: Iterable[RuleTest], pattern: str | None = None,
              clock: Any = time.perf_counter) -> Suite:
    """Run each test (those whose name or path matches `pattern`) in its own database."""
    regex = re.compile(pattern) if pattern else None
    chosen = [t for t in tests if regex is None or regex.search(t.name) or regex.search(t.path)]
    start = clock()
    with tempfile.TemporaryDirectory(prefix="zailai-test-") as tmp:
        results = tuple(run_test(project, t, Path(tmp) / f"{i}", clock)
                        for i, t in enumerate(chosen))
    return Suite(results, clock() - start)


def run_test(project: Project, test: RuleTest, workdir: Path,
             clock: Any = time.perf_counter) -> TestResult:
    from ..commit import tick
    from ..store import open_store
    from ..store import ledger
    from ..store.scratch import issue_coupons

    start = clock()
    workdir.mkdir(parents=True)
    db = workdir / "test.db"
    rules = [project.rule(r) for r in test.rules] if test.rules else \
        [r for r in project.rules if r.enabled]
    ids = [r.id for r in rules if r is not None]
    errors = list(_ingest(project, db, workdir, "users", test.users))
    errors += _ingest(project, db, workdir, "events", test.events)
    if errors:
        return TestResult(test, errors=tuple(errors), seconds=clock() - start)
    failures: list[Failure] = []
    stocks = {name: (c.value_fen, c.valid_for // timedelta(microseconds=1))
              for name, c in project.coupons.items()}
    with open_store(db, project.datamodel) as store:
        with store.transaction():
            ledger.ensure_ledger(store.conn)
            first = _first_tick(test)
            for rid in ids:
                rule = project.rule(rid)
                assert rule is not None
                ledger.set_tick(store.conn, rid, first, rule.content_hash)
        for n, step in enumerate(test.steps, 1):
            if step.events:
                errs = _ingest(project, db, workdir, "events", step.events)
                if errs:
                    return TestResult(test, tuple(failures), tuple(errs), clock() - start)
            result = tick(project, store, step.at, ids, _slots(project, store, step.at, ids))
            if result.outbox_items and stocks:
                with store.transaction():  # as in a backtest: coupons count as issued
                    issue_coupons(store.conn, to_micros(step.at), stocks)
            failures += _compare(project, n, step, result.plan)
    return TestResult(test, tuple(failures), seconds=clock() - start)


def _first_tick(test: RuleTest) -> int:
    """Before the first step every tested rule counts as having last ticked one day before it:
    the events and dates of that day are due at the first step (older events are history,
    visible to conditions but triggering nothing), and a daily rule has a slot to fire on."""
    return to_micros(test.steps[0].at) - 86_400_000_000 - 1


def _slots(project: Project, store: Any, at: datetime, ids: Sequence[str]) -> dict[str, int]:
    """Scheduled rules tick at their latest slot since the previous tick, or at `at` itself
    when no slot fell in between (a rule under test is evaluated as if due)."""
    from ..store import queries as q
    from ..triggers import due_slot, is_scheduled

    tz = project.config.tz
    slots: dict[str, int] = {}
    for rid in ids:
        rule = project.rule(rid)
        assert rule is not None
        if not is_scheduled(rule):
            continue
        last = q.last_tick(store.conn, rid)
        due = due_slot(rule.trigger, at, from_micros(last, tz) if last is not None else None,
                       project.config.schedule_grace, tz)
        slots[rid] = to_micros(due[0]) if due is not None else to_micros(at)
    return slots


def _ingest(project: Project, db: Path, workdir: Path, kind: str,
            rows: Sequence[Row]) -> list[Diagnostic]:
    """Ingest the test's rows with `engine ingest`'s checks; a rejected row is an error at its
    place in the test file."""
    from ..ingest import ingest

    if not rows:
        return []
    path = workdir / f"{kind}-{id(rows)}.jsonl"
    path.write_text("".join(json.dumps(r.data, ensure_ascii=False, default=str) + "\n"
                            for r in rows), "utf-8")
    result = ingest(project, kind, [str(path)], db=str(db), workers=0)
    out = []
    for rej in result.shown_rejects:
        row = rows[rej.line - 1]
        field_ = f" `{rej.field}`" if rej.field else ""
        out.append(Diagnostic(Severity.ERROR, "TEST_ROW_REJECTED",
                              f"{kind[:-1]}{field_} rejected: {rej.reason} ({rej.code})",
                              row.pos))
    hidden = result.total("rejected") - len(result.shown_rejects)
    if hidden > 0:
        out.append(Diagnostic(Severity.ERROR, "TEST_ROW_REJECTED",
                              f"... and {hidden} more rejected {kind}", rows[0].pos))
    return out


def _actuals(project: Project, plan: Any) -> dict[tuple[str, str], list[Actual]]:
    from ..policy import actions_for

    tz = project.config.tz
    out: dict[tuple[str, str], list[Actual]] = {}
    for rp in plan.rules:
        rule = project.rule(rp.rule_id)
        assert rule is not None
        for d in rp.decisions:
            kinds = tuple(a.kind for a in actions_for(rule, d.variant))
            out.setdefault((rp.rule_id, d.user_id), []).append(Actual(
                d.outcome, d.reason, kinds, tuple(c for c in d.channels if c), d.variant,
                from_micros(d.deferred_until, tz) if d.deferred_until is not None else None))
    return out


def _holds(e: Expectation, a: Actual) -> bool:
    if not e.fire:
        if a.fired:
            return False
        return e.reason is None or e.reason == (a.reason if a.outcome == "suppressed"
                                                else NOT_MATCHED)
    if not a.fired:
        return False
    if (a.deferred_until is None) != (e.deferred_until is None):
        return False
    if e.deferred_until is not None and a.deferred_until is not None and \
            to_micros(e.deferred_until) != to_micros(a.deferred_until):
        return False
    return ((e.actions is None or e.actions == a.actions)
            and (e.channels is None or e.channels == a.channels)
            and (e.variant is None or e.variant == a.variant))


def _compare(project: Project, n: int, step: Step, plan: Any) -> list[Failure]:
    actual = _actuals(project, plan)
    failures = []
    for e in step.expect:
        got = actual.get((e.rule, e.user)) or [Actual("not matched")]
        ok = any(_holds(e, a) for a in got) if e.fire else all(_holds(e, a) for a in got)
        if not ok:
            shown = next((a for a in got if a.fired != e.fire), got[0])
            failures.append(Failure(n, step.at, e.rule, e.user, e.describe(),
                                    shown.describe(), e.pos))
    expected = {(e.rule, e.user) for e in step.expect}  # a wrong one failed above already
    for (rule, user), got in sorted(actual.items()):
        fired = next((a for a in got if a.fired), None)
        if (rule, user) not in expected and fired is not None:
            failures.append(Failure(n, step.at, rule, user, None, fired.describe(), step.pos))
    return failures


