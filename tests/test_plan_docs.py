"""docs/plan.md is tested like code: its examples and tables must match what the engine does.

- the ```json plan-output example has exactly the keys `Plan.as_json(users=True)` produces (and,
  without `users`, `as_json()` has the same keys less `users`); its counts add up;
- the ```json explain-output example has exactly the keys `Explanation.as_json()` produces;
- every reason in engine.plan.REASONS has a row in a reason table, and every row names a real
  reason (or explain's `not_in_audience`);
- every flag of `engine plan` and `engine explain` is documented;
- the experiment algorithm as the page states it (SHA-256 of "rule_id:user_id", two uniforms,
  holdout first, cumulative weights in written order) gives what engine.experiments gives, and
  the worked example's numbers are right;
- the value representation table lists the types engine/lang/values.py lists, with the same values.
"""
from __future__ import annotations

# reasons `engine explain` gives for a user the plan does not count at all
EXPLAIN_ONLY = ("not_in_audience", "no_occurrence_due")

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.experiments import assign
from engine.explain import Explanation, Step
from engine.lang import values
from engine.plan import REASONS, Decision, Plan, RulePlan
from engine.rules.model import Experiment, Rule, Trigger, Variant

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "plan.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 19, 10, 0, tzinfo=TZ)


def text() -> str:
    return DOC.read_text(encoding="utf-8")


def block(info: str) -> Any:
    found = [body for i, body in ((m.group(1).strip(), m.group(2)) for m in FENCE.finditer(text()))
             if i == info]
    assert len(found) == 1, f"docs/plan.md needs exactly one ```{info} block, has {len(found)}"
    return json.loads(found[0])


def section(title: str, code: bool = False) -> str:
    """The body of the `## title` section, up to the next level-2 heading (code blocks left out
    unless `code`)."""
    body = text() if code else FENCE.sub("", text())
    m = re.search(rf"^## {re.escape(title)}[ \t]*\n(.*?)(?=^## |\Z)", body, re.M | re.S)
    assert m, f"docs/plan.md has no `## {title}` section"
    return m.group(1)


def keys(value: Any) -> Any:
    """The key structure of a JSON value: dicts by their keys, lists by their first item's."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys(value[0])] if value and isinstance(value[0], dict) else []
    return type(value).__name__


def decision(user: str, outcome: str, reason: str | None = None) -> Decision:
    return Decision(user_id=user, outcome=outcome, reason=reason, occurrence=AT.isoformat(),
                    eval_at=0)


def real_plan() -> Plan:
    """A plan with every outcome, built from the real dataclasses."""
    rp = RulePlan("winback-7d", (decision("u1", "fire"), decision("u2", "deferred"),
                                 decision("u3", "suppressed", "holdout"),
                                 decision("u4", "suppressed", "already_entered")))
    return Plan(AT, (rp,))


# -- engine plan --format json ----------------------------------------------------------------

def test_plan_json_example_has_exactly_the_real_keys() -> None:
    doc = block("json plan-output")
    real = real_plan().as_json(users=True)
    assert set(doc) == set(real)
    assert doc["rules"], "the example should show at least one rule"
    for rule in doc["rules"]:
        assert set(rule) == set(real["rules"][0]), rule.get("id")
        assert set(rule["users"]) == set(real["rules"][0]["users"]), rule["id"]
        for name in ("matched", "fire", "deferred"):
            assert isinstance(rule[name], int) and not isinstance(rule[name], bool), name
        assert all(isinstance(u, str) for lst in rule["users"].values() for u in lst)
        assert all(r in REASONS for r in rule["suppressed"]), rule["suppressed"]
        assert list(rule["suppressed"]) == sorted(rule["suppressed"]), "reasons are sorted"
        assert rule["matched"] == rule["fire"] + rule["deferred"] + sum(
            rule["suppressed"].values()), f"{rule['id']}: the counts do not add up"
    assert datetime.fromisoformat(doc["at"]).utcoffset() is not None


def test_plan_json_without_users_drops_only_users() -> None:
    with_users = real_plan().as_json(users=True)["rules"][0]
    without = real_plan().as_json()["rules"][0]
    assert set(with_users) - set(without) == {"users"}
    assert "only with `--users`" in text()


def test_real_plan_counts_match_the_doc_arithmetic() -> None:
    """`matched` = `fire` + `deferred` + the sum of `suppressed`, as the page promises."""
    rule = real_plan().as_json(users=True)["rules"][0]
    assert rule["matched"] == rule["fire"] + rule["deferred"] + sum(rule["suppressed"].values())
    assert rule["suppressed"] == {"already_entered": 1, "holdout": 1}


# -- engine explain --format json -------------------------------------------------------------

def test_explain_json_example_has_exactly_the_real_keys() -> None:
    doc = block("json explain-output")
    rule = Rule(id="r", trigger=Trigger(kind="schedule"), actions=())
    exp = Explanation(rule, "u1", AT, trigger=["schedule"],
                      sections=[("audience", [Step(0, "count(order_paid)", "1", False)])],
                      decision="fire")
    real = exp.as_json()
    assert set(doc) == set(real)
    assert set(doc["conditions"]) <= {"trigger where", "audience", "unless"}
    step_keys = set(real["conditions"]["audience"][0])
    for steps in doc["conditions"].values():
        for step in steps:
            assert set(step) == step_keys, step
    assert doc["reason"] is None or doc["reason"] in REASONS or doc["reason"] in EXPLAIN_ONLY


# -- reasons ----------------------------------------------------------------------------------

def documented_reasons() -> list[str]:
    """Reasons named in the first cell of a table row in `## Decisions and reasons`."""
    return re.findall(r"^\| `([a-z_]+)` \|", section("Decisions and reasons"), re.M)


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_every_reason_is_documented(reason: str) -> None:
    assert reason in documented_reasons(), (
        f"docs/plan.md: `## Decisions and reasons` has no table row for `{reason}`")


def test_every_documented_reason_is_real() -> None:
    rows = documented_reasons()
    assert len(rows) == len(set(rows)), f"a reason has two rows: {rows}"
    unknown = [r for r in rows if r not in REASONS and r not in EXPLAIN_ONLY]
    assert not unknown, f"docs/plan.md documents reasons engine.plan does not have: {unknown}"
    assert set(EXPLAIN_ONLY) <= set(rows)


# -- flags ------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["plan", "explain"])
def test_every_flag_is_documented(command: str) -> None:
    from cli import cli

    cmd = cli.commands[command]
    body = section(f"engine {command}", code=True)
    usage = next(line for line in body.splitlines() if line.startswith(f"engine {command} "))
    for param in cmd.params:
        if param.param_type_name == "option":
            for flag in param.opts:
                if flag.startswith("--"):
                    assert flag in usage, f"engine {command}: the usage line lacks {flag}"
                    assert f"`{flag}" in body, f"engine {command}: {flag} is not explained"
        else:
            # the usage line writes a variadic argument in the singular: `rules` -> RULE...
            name = re.sub(r"S$", "", (param.name or "").upper())
            assert re.search(rf"\b{name}\b", usage), f"engine {command}: argument {name}"


# -- experiments ------------------------------------------------------------------------------

def documented_assign(rule_id: str, user_id: str, exp: Experiment) -> tuple[bool, str | None]:
    """The algorithm exactly as docs/plan.md states it."""
    digest = hashlib.sha256(f"{rule_id}:{user_id}".encode("utf-8")).digest()
    u1 = int.from_bytes(digest[:8], "big") / 2**64
    u2 = int.from_bytes(digest[8:16], "big") / 2**64
    if u1 < exp.holdout:
        return True, None
    if not exp.variants:
        return False, None
    point = u2 * sum(v.weight for v in exp.variants)
    running = 0
    for v in exp.variants:
        running += v.weight
        if running > point:
            return False, v.name
    return False, exp.variants[-1].name


EXPERIMENTS = [
    Experiment(0.10, (Variant("gentle", 50), Variant("urgent", 50))),
    Experiment(0.0, (Variant("a", 1), Variant("b", 2), Variant("c", 7))),
    Experiment(0.25, ()),
    Experiment(0.5, (Variant("only", 3),)),
]


@pytest.mark.parametrize("exp", EXPERIMENTS, ids=["50-50", "1-2-7", "holdout-only", "one"])
def test_documented_experiment_algorithm_is_the_real_one(exp: Experiment) -> None:
    for i in range(3000):
        user = f"u{i:06d}"
        real = assign("ab-sleeping-coupon-copy", user, exp)
        assert documented_assign("ab-sleeping-coupon-copy", user, exp) == (
            real.holdout, real.variant), user


def test_experiment_worked_example() -> None:
    body = section("Experiments: holdout and variants")
    exp = EXPERIMENTS[0]
    rule = "ab-sleeping-coupon-copy"
    for user in ("u000003", "u000268"):
        digest = hashlib.sha256(f"{rule}:{user}".encode()).hexdigest()
        u1 = int(digest[:16], 16) / 2**64
        row = next(line for line in body.splitlines() if line.startswith(f"| `{user}` |"))
        assert f"{u1:.4f}" in row, (user, u1)
        a = assign(rule, user, exp)
        if a.holdout:
            assert "holdout" in row
        else:
            assert f"{digest[:16]} {digest[16:32]}" in row
            assert f"{int(digest[16:32], 16) / 2**64:.4f}" in row
            assert f"`{a.variant}`" in row


# -- value representation ---------------------------------------------------------------------

def table_rows(src: str) -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in src.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("type", "") and not cells[0].startswith("-"):
            rows[cells[0]] = cells[1]
    return rows


def test_value_table_matches_values_py() -> None:
    assert values.__doc__ is not None
    real = table_rows(values.__doc__)
    documented = table_rows(section("Value representation"))
    assert set(documented) == set(real), (sorted(documented), sorted(real))
    for type_, value in real.items():
        head = value.split("(")[0].strip()
        assert documented[type_].startswith(head), (type_, documented[type_], value)
