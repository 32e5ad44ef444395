"""`engine test`: rule tests run through the real planner, state carried across steps.

Each test writes a small project (the example config with its own rules) and rule test files,
then runs `engine test` through the real CLI boundary and checks exit codes and output.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from engine.ruletests import files, output, runner
from engine.project import load_project
from store_helpers import make_rule_project, run_cli

LAPSED = """id: lapsed
category: transactional
trigger: {schedule: "0 10 * * *"}
fire: on_enter
audience: days_since(last(order_paid)) >= 7
actions:
  - tag: {add: lapsed}
"""

NUDGE = """id: nudge
category: marketing
trigger: {schedule: "0 * * * *"}
fire: every_time
audience: user.tier == "gold"
actions:
  - message: {channel: console, text: "新品上架,快来看看"}
limits: {max: 5, per: 1d}
"""

MODELINE = "# yaml-language-server: $schema=../schemas/ruletest.schema.json\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_rule_project(tmp_path, {"lapsed": LAPSED, "nudge": NUDGE})
    (root / "tests").mkdir()
    return root


def write_test(root: Path, name: str, text: str) -> Path:
    path = root / "tests" / f"{name}.yaml"
    path.write_text(MODELINE + textwrap.dedent(text), encoding="utf-8")
    return path


def engine_test(root: Path, *args: str) -> tuple[int, str]:
    return run_cli(["test", "--project", str(root), *args])


ON_ENTER = """\
name: lapsed fires once, re-arms after an order, fires again
rules: [lapsed]
users:
  - {user_id: u1, tier: gold}
  - {user_id: u2, tier: silver}
events:
  - {user_id: u1, type: order_paid, ts: "2026-11-01T12:00:00+08:00", amount: 80}
  - {user_id: u2, type: order_paid, ts: "2026-11-07T12:00:00+08:00", amount: 20}
steps:
  - at: "2026-11-08T10:00:00+08:00"     # u1: 6 days 22 hours: not yet
    expect:
      - {rule: lapsed, user: u1, fire: false, reason: not_in_audience}
  - at: "2026-11-09T10:00:00+08:00"     # u1: 7 days 22 hours: enters
    expect:
      - {rule: lapsed, user: u1, fire: true, actions: [tag]}
  - at: "2026-11-10T10:00:00+08:00"     # still inside: no second fire
    expect:
      - {rule: lapsed, user: u1, fire: false, reason: already_entered}
  - at: "2026-11-11T10:00:00+08:00"     # u1 ordered: left the audience
    events:
      - {user_id: u1, type: order_paid, ts: "2026-11-10T20:00:00+08:00", amount: 30}
    expect: []
  - at: "2026-11-18T10:00:00+08:00"     # 7 days after that order: enters again; u2 too
    expect:
      - {rule: lapsed, user: u1, fire: true}
      - {rule: lapsed, user: u2, fire: true}
"""


def test_state_carries_across_steps_and_the_suite_passes(project: Path) -> None:
    write_test(project, "lapsed", ON_ENTER)
    code, out = engine_test(project)
    assert code == 0, out
    assert "PASS  " in out and "lapsed fires once" in out
    assert "1 test: 1 passed, 0 failed" in out


def test_a_wrong_expectation_fails_with_a_diff_and_the_source_line(project: Path) -> None:
    write_test(project, "lapsed", ON_ENTER.replace(
        "reason: already_entered", "reason: holdout").replace(
        "      - {rule: lapsed, user: u2, fire: true}\n", ""))
    code, out = engine_test(project)
    assert code == 1, out
    assert "FAIL  " in out
    assert "step 3 at 2026-11-10T10:00:00+08:00" in out
    assert "- expected: no fire (holdout)" in out
    assert "+ got:      suppressed (already_entered)" in out
    assert "reason: holdout}" in out  # the expectation's source line is quoted
    # u2 fired at step 5 without being expected: exact matching catches it
    assert "step 5 at 2026-11-18T10:00:00+08:00" in out
    assert "unexpected fire: lapsed u2" in out
    assert "1 test: 0 passed, 1 failed" in out


def test_an_empty_expectation_means_nothing_fires(project: Path) -> None:
    write_test(project, "quiet", """\
        rules: [lapsed]
        users: [{user_id: u1, tier: gold}]
        events:
          - {user_id: u1, type: order_paid, ts: "2026-11-01T12:00:00+08:00", amount: 80}
        at: "2026-11-09T10:00:00+08:00"
        expect: []
        """)
    code, out = engine_test(project)
    assert code == 1
    assert "unexpected fire: lapsed u1" in out and "+ got:      fire, actions [tag]" in out


def test_caps_and_quiet_hours_across_ticks(project: Path) -> None:
    # engine.yaml: at most 2 marketing messages a week; quiet hours 21:30-08:30
    write_test(project, "caps", """\
        name: the weekly marketing cap binds on the third hour; night sends wait
        rules: [nudge]
        users: [{user_id: u1, tier: gold}, {user_id: u2, tier: silver}]
        steps:
          - at: "2026-11-09T21:00:00+08:00"
            expect: [{rule: nudge, user: u1, fire: true, channels: [console]}]
          - at: "2026-11-09T22:00:00+08:00"
            expect: [{rule: nudge, user: u1, deferred_until: "2026-11-10T08:30:00+08:00"}]
          - at: "2026-11-09T23:00:00+08:00"
            expect: [{rule: nudge, user: u1, fire: false, reason: capped_global}]
        """)
    code, out = engine_test(project)
    assert code == 0, out


def test_a_deferred_fire_must_be_expected_with_its_time(project: Path) -> None:
    write_test(project, "night", """\
        rules: [nudge]
        users: [{user_id: u1, tier: gold}]
        at: "2026-11-09T22:00:00+08:00"
        expect: [{rule: nudge, user: u1, fire: true}]
        """)
    code, out = engine_test(project)
    assert code == 1
    assert "+ got:      deferred until 2026-11-10T08:30:00+08:00" in out


def test_junit_json_and_run_filter(project: Path, tmp_path: Path) -> None:
    write_test(project, "lapsed", ON_ENTER)
    write_test(project, "night", """\
        name: night send
        rules: [nudge]
        users: [{user_id: u1, tier: gold}]
        at: "2026-11-09T22:00:00+08:00"
        expect: [{rule: nudge, user: u1, fire: true}]
        """)
    junit = tmp_path / "out" / "junit.xml"
    junit.parent.mkdir()
    code, out = engine_test(project, "--junit", str(junit))
    assert code == 1
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"lapsed fires once, re-arms after an order, fires again",
                          "night send"}
    failure = cases["night send"].find("failure")
    assert failure is not None and "deferred until" in (failure.text or "")
    assert cases["lapsed fires once, re-arms after an order, fires again"].find("failure") is None

    code, out = engine_test(project, "--run", "^lapsed", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert (data["tests"], data["passed"], data["failed"]) == (1, 1, 0)
    assert data["results"][0]["steps"] == 5 and data["results"][0]["expectations"] == 5

    code, out = engine_test(project, "--run", "no-such-test")
    assert code == 1 and "no rule tests found matching --run" in out
    code, out = engine_test(project, "--run", "(")
    assert code == 2 and "not a regular expression" in out


def test_bad_test_files_are_reported_and_the_good_ones_still_run(project: Path) -> None:
    write_test(project, "lapsed", ON_ENTER)
    write_test(project, "broken", """\
        rules: [lapsd]
        users: [{user_id: u1}]
        at: "2026-11-31T10:00:00+08:00"
        expect:
          - {rule: lapsed, user: u1, reason: no_consnt, variant: big}
        steps: []
        """)
    code, out = engine_test(project)
    assert code == 1
    assert "broken.yaml:2:9: error[UNKNOWN_RULE]" in out and "did you mean `lapsed`?" in out
    assert "broken.yaml:4:5: error[BAD_TIMESTAMP]" in out
    assert "error[UNKNOWN_REASON]: `no_consnt`" in out and "did you mean `no_consent`?" in out
    assert "error[UNKNOWN_VARIANT]: rule `lapsed` has no variant `big`" in out
    assert "error[TEST_SHAPE]" in out
    assert "1 test: 1 passed, 0 failed" in out  # the good file still ran
    # validate reports the same problems
    code, out = run_cli(["validate", "--project", str(project)])
    assert code == 1 and "UNKNOWN_REASON" in out and "TEST_SHAPE" in out


def test_rows_the_data_model_rejects_point_at_their_line(project: Path) -> None:
    write_test(project, "rows", """\
        rules: [lapsed]
        users: [{user_id: u1, tier: gold}]
        events:
          - {user_id: u1, type: order_paid, ts: "2026-11-01T12:00:00+08:00", amount: 80}
          - {user_id: u1, type: order_paid, ts: "2026-11-01T12:00:00+08:00", amount: 1.234}
        at: "2026-11-09T10:00:00+08:00"
        expect: [{rule: lapsed, user: u1}]
        """)
    code, out = engine_test(project)
    assert code == 1
    assert "ERROR  " in out and "rows.yaml:6:5: error[TEST_ROW_REJECTED]" in out
    assert "amount" in out and "1 could not run" in out


def test_no_tests_is_a_failure_not_a_silent_pass(project: Path) -> None:
    code, out = engine_test(project)
    assert code == 1 and "no rule tests found" in out


def test_event_rules_see_the_events_before_the_first_step(tmp_path: Path) -> None:
    rule = """id: cart
category: transactional
trigger: {event: cart_add, wait: 2h}
audience: count(order_paid, 2h) == 0
actions:
  - tag: {add: cart}
"""
    root = make_rule_project(tmp_path, {"cart": rule})
    (root / "tests").mkdir()
    write_test(root, "cart", """\
        users: [{user_id: u1}, {user_id: u2}]
        events:
          - {user_id: u1, type: cart_add, ts: "2026-11-09T10:00:00+08:00"}
          - {user_id: u2, type: cart_add, ts: "2026-11-09T10:00:00+08:00"}
          - {user_id: u2, type: order_paid, ts: "2026-11-09T11:00:00+08:00", amount: 9.9}
        steps:
          - at: "2026-11-09T11:59:00+08:00"
            expect: []
          - at: "2026-11-09T12:30:00+08:00"
            expect:
              - {rule: cart, user: u1}
              - {rule: cart, user: u2, fire: false, reason: not_in_audience}
        """)
    code, out = engine_test(root)
    assert code == 0, out


def test_the_shipped_example_playbook_has_passing_tests_for_every_rule() -> None:
    from conftest import REPO

    project = load_project(REPO)
    tests, problems, _ = files.load_tests(project)
    assert problems == []
    covered = {rid for t in tests for rid in t.rules}
    assert covered >= {r.id for r in project.rules}, "every example rule has a test"
    suite = runner.run_tests(project, tests)
    failed = [r for r in suite.results if r.status != "pass"]
    assert not failed, output.format_text(suite)


def test_the_wheel_ships_every_example_rule_test() -> None:
    """`engine init` copies the example's tests/*.yaml; a wheel has them only when
    pyproject.toml force-includes each one (the pytest files must stay out)."""
    import tomllib

    from conftest import REPO

    config = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    included = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    shipped = {src for src, dest in included.items()
               if src.startswith("tests/") and dest == f"engine/_data/{src}"}
    assert shipped == {f"tests/{p.name}" for p in (REPO / "tests").glob("*.yaml")}


def test_only_the_last_day_s_events_trigger_at_the_first_step(tmp_path: Path) -> None:
    """Older events are history the audience can see, not triggers: the rule counts as having
    ticked one day before the first step."""
    rule = """id: paid
category: transactional
trigger: {event: order_paid}
audience: count(order_paid) >= 1
actions:
  - tag: {add: paid}
"""
    root = make_rule_project(tmp_path, {"paid": rule})
    (root / "tests").mkdir()
    write_test(root, "paid", """\
        users: [{user_id: old}, {user_id: recent}]
        events:
          - {user_id: old, type: order_paid, ts: "2026-10-20T12:00:00+08:00", amount: 10}
          - {user_id: recent, type: order_paid, ts: "2026-11-08T12:00:00+08:00", amount: 10}
        at: "2026-11-09T10:00:00+08:00"
        expect:
          - {rule: paid, user: recent}
          - {rule: paid, user: old, fire: false, reason: not_in_audience}
        """)
    code, out = engine_test(root)
    assert code == 0, out
