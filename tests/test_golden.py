"""Golden bad files: each tests/golden/*.bad.yaml holds exactly one mistake and says, in its
header, the one diagnostic `engine validate` must report for it (code, severity, line, column).

Header lines (YAML comments, so they count in the line numbers of the expectation):

    # golden: what the file gets wrong
    # target: engine.yaml                       where the file goes (default rules/<name>.yaml)
    # with: support/x.yaml -> coupons.yaml      a companion file, clean by itself (repeatable)
    # hint: did you mean `user.city`?           text the message or hint must contain
    # expect: rules/<name>.yaml:7:12: error[COND_UNKNOWN_NAME]     (` accepted` for allowed warnings)

The file is dropped into a fresh copy of the example project, which validates clean by itself,
so the expectation is the complete list of diagnostics: warnings included.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest

from engine.codes import CODES
from engine.errors import Severity
from engine.lang.typed import TAgg, TCompare, TLit, TRfm, TUserAttr, walk
from engine.project import load
from engine.rules.model import MessageAction, Rule
from engine.validate import format_text, validate

from conftest import REPO, show

GOLDEN = Path(__file__).parent / "golden"
FILES = sorted(GOLDEN.glob("*.bad.yaml"))
EXPECT = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning)"
                    r"\[(?P<code>[A-Z_]+)\]( accepted)?$")


@dataclass
class Golden:
    name: str
    raw: bytes
    expect: str = ""
    target: str = ""
    hint: str = ""
    with_: list[tuple[str, str]] = field(default_factory=list)

    @property
    def code(self) -> str:
        m = EXPECT.match(self.expect)
        assert m, f"{self.name}: malformed expectation {self.expect!r}"
        return m["code"]


def read_golden(path: Path) -> Golden:
    raw = path.read_bytes()
    g = Golden(path.name[: -len(".bad.yaml")], raw)
    g.target = f"rules/{g.name}.yaml"
    for line in raw.split(b"\n"):
        if not line.startswith(b"# "):
            break
        key, _, value = line[2:].decode("utf-8").partition(": ")
        if key == "expect":
            assert not g.expect, f"{path.name}: one failure, one expectation"
            g.expect = value
        elif key == "target":
            g.target = value
        elif key == "hint":
            g.hint = value
        elif key == "with":
            src, _, dst = value.partition(" -> ")
            g.with_.append((src, dst))
    return g


CASES = [read_golden(p) for p in FILES]


def install(g: Golden, root: Path) -> None:
    for src, dst in g.with_:
        shutil.copyfile(GOLDEN / src, root / dst)
    (root / g.target).parent.mkdir(parents=True, exist_ok=True)
    (root / g.target).write_bytes(g.raw)


@pytest.mark.parametrize("g", CASES, ids=[g.name for g in CASES])
def test_golden(g: Golden, project: Path) -> None:
    install(g, project)
    result = validate()
    got = [show(d) for d in result.diagnostics]
    assert got == [g.expect]
    d = result.diagnostics[0]
    assert d.severity is CODES[d.code][0]
    if g.hint:
        assert g.hint in f"{d.message} {d.hint}"
    assert result.failed() is (d.severity is Severity.ERROR)
    # the text format leads with the same location, and quotes the line it points into
    text = format_text(result).splitlines()
    assert text[0].startswith(f"{d.pos}: {d.severity.value}[{d.code}]: {d.message}")
    if d.code not in ("FILE_ENCODING",):
        src_line = (project / d.pos.path).read_text("utf-8").splitlines()[d.pos.line - 1]
        if src_line.strip():
            assert text[1].endswith(src_line)


def test_golden_files_are_well_formed() -> None:
    assert len(CASES) >= 45
    for g in CASES:
        m = EXPECT.match(g.expect)
        assert m, f"{g.name}: needs one `# expect: path:line:col: severity[CODE]` line"
        assert m["code"] in CODES, f"{g.name}: unknown code {m['code']}"
        for src, dst in g.with_:
            assert (GOLDEN / src).is_file() and dst


REQUIRED_CODES = {
    # YAML and schema
    "YAML_SYNTAX", "YAML_DUPLICATE_KEY", "YAML_TAG", "SCHEMA_TYPE", "SCHEMA_UNKNOWN_KEY",
    "SCHEMA_REQUIRED", "SCHEMA_ENUM", "SCHEMA_PATTERN", "BAD_CRON", "BAD_DURATION",
    # every COND_* code
    *(c for c in CODES if c.startswith("COND_")),
    # references and messages
    "UNKNOWN_EVENT", "UNKNOWN_TEMPLATE", "UNKNOWN_COUPON", "UNKNOWN_CHANNEL", "DUPLICATE_RULE_ID",
    "TEMPLATE_KEYS", "KEYWORD_LIMIT", "LONG_TERM_MARKETING", "TEXT_REQUIRED", "TEMPLATE_SYNTAX",
    "TEMPLATE_UNDEFINED",
    # compliance and allow entries
    "FORCED_SHARE", "SOCIAL_CASH_REWARD", "MOMENTS_REWARD", "SHARE_REWARD_NO_PARTICIPATION",
    "FALSE_CLAIM", "ABSOLUTE_TERM", "PII_IN_MESSAGE", "SMS_NO_OPT_OUT", "NO_LIMITS",
    "ALLOW_ERROR", "ALLOW_UNKNOWN", "ALLOW_UNUSED",
}
UNREACHABLE = {"UNKNOWN_RULE"}
# reported by `engine test` when it loads a test's rows, not by `engine validate`
# (tests/test_ruletest.py::test_rows_the_data_model_rejects_point_at_their_line)
RUN_ONLY = {"TEST_ROW_REJECTED"}


def test_golden_files_cover_the_codes() -> None:
    covered = {g.code for g in CASES}
    assert REQUIRED_CODES <= covered, sorted(REQUIRED_CODES - covered)
    assert set(CODES) - RUN_ONLY <= covered, sorted(set(CODES) - RUN_ONLY - covered)  # every code


def test_condition_columns_for_every_scalar_style() -> None:
    """The same unknown name, once per YAML scalar style, points at the token itself."""
    styles = {"plain": "cond-unknown-name-plain", "single": "cond-unknown-name-single-quoted",
              "double": "cond-unknown-name-double-quoted",
              "literal": "cond-unknown-name-literal-block",
              "folded": "cond-unknown-name-folded-block",
              "multiline plain": "cond-unknown-name-multiline-plain"}
    by_name = {g.name: g for g in CASES}
    for style, name in styles.items():
        g = by_name[name]
        m = EXPECT.match(g.expect)
        assert m
        line = g.raw.decode("utf-8").splitlines()[int(m["line"]) - 1]
        assert line[int(m["col"]) - 1:].startswith("user.cty"), style


@pytest.mark.parametrize("src, dst", sorted({w for g in CASES for w in g.with_}),
                         ids=lambda v: str(v))
def test_support_files_are_clean_by_themselves(src: str, dst: str, project: Path) -> None:
    shutil.copyfile(GOLDEN / src, project / dst)
    assert [show(d) for d in validate().diagnostics] == []


# -- what YAML 1.2 and crontab say is fine must stay clean --------------------------------------

RULE = """\
id: clean-variant
category: transactional
trigger: {trigger}
actions:
  - tag: {{add: clean}}
{extra}"""

CLEAN_RULES = {
    "cron-sunday-as-7": RULE.format(trigger='{schedule: "0 10 * * 7"}', extra=""),
    "cron-sunday-as-0": RULE.format(trigger='{schedule: "0 10 * * 0"}', extra=""),
    "cron-names-steps-ranges": RULE.format(trigger='{schedule: "*/15 9-18 * jan-jun mon-fri"}',
                                           extra=""),
    "cron-macro": RULE.format(trigger='{schedule: "@daily"}', extra=""),
    "cron-plain-scalar": RULE.format(trigger="\n  schedule: 30 8 1,15 * *", extra=""),
    "octal-looking-priority": RULE.format(trigger="{event: checkin}", extra="priority: 010\n"),
    "enabled-false": RULE.format(trigger="{event: checkin}", extra="enabled: false\n"),
    "every-hour-and-a-half": RULE.format(trigger="{every: 1h30m}", extra=""),
    "folded-audience": RULE.format(
        trigger="{event: share}",
        extra='audience: >\n  event.target in ["friend", "group"]\n  and not has_tag("x")\n'),
    "absolute-term-in-a-comment": RULE.format(trigger="{event: checkin}",
                                              extra="# 全网最低价 in a comment is not copy\n"),
    "opt-out-sms": RULE.format(trigger="{event: checkin}", extra="").replace(
        "category: transactional", "category: marketing\nlimits: {max: 1, per: 7d}").replace(
        "  - tag: {add: clean}", "  - message: {channel: sms, text: 签到有礼，回T退订}"),
}


@pytest.mark.parametrize("text", CLEAN_RULES.values(), ids=CLEAN_RULES.keys())
def test_clean_variants(text: str, project: Path) -> None:
    (project / "rules" / "clean.yaml").write_text(text, encoding="utf-8")
    assert [show(d) for d in validate().diagnostics] == []


def test_unquoted_clock_times_in_engine_yaml_are_strings(project: Path) -> None:
    """`21:30` and `08:30` unquoted: YAML 1.2 keeps them strings, so quiet hours just work."""
    path = project / "engine.yaml"
    text = path.read_text("utf-8")
    assert '{start: "21:30", end: "08:30"}' in text
    path.write_text(text.replace('{start: "21:30", end: "08:30"}', "{start: 21:30, end: 08:30}"),
                    encoding="utf-8")
    result = validate()
    assert [show(d) for d in result.diagnostics] == []


def test_every_problem_in_every_file_in_one_run(project: Path) -> None:
    """Two broken rule files and a broken engine.yaml: all of it in one run."""
    chosen = [g for g in CASES if g.name in ("cond-unknown-value", "unknown-coupon",
                                              "timezone-unknown", "no-limits")]
    assert len(chosen) == 4
    for i, g in enumerate(chosen):  # one id each (the ids all start at column 5)
        install(replace(g, raw=g.raw.replace(b"id: golden-rule", f"id: golden-rule-{i}".encode())),
                project)
    assert sorted(show(d) for d in validate().diagnostics) == sorted(g.expect for g in chosen)



# -- the example playbook ------------------------------------------------------------------------

def test_repo_root_validates_with_zero_diagnostics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = validate()
    assert [show(d) for d in result.diagnostics] == []
    assert result.rules >= 12


def test_init_validates_with_zero_diagnostics(project: Path) -> None:
    result = validate()
    assert [show(d) for d in result.diagnostics] == []
    assert result.files == len(list(project.rglob("*.yaml")))


SCHEMA_OF = {"engine.yaml": "engine.schema.json", "datamodel.yaml": "datamodel.schema.json",
             "templates.yaml": "templates.schema.json", "coupons.yaml": "coupons.schema.json"}
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(?P<path>\S+)$")


def test_init_writes_a_modeline_to_an_existing_schema_in_every_yaml_file(project: Path) -> None:
    files = sorted(project.rglob("*.yaml"))
    assert {f.name for f in files} >= set(SCHEMA_OF)
    for f in files:
        first = f.read_text("utf-8").splitlines()[0]
        m = MODELINE.match(first)
        assert m, f"{f.relative_to(project)} does not start with its $schema modeline"
        schema_file = (f.parent / m["path"]).resolve()
        assert schema_file.is_file(), f"{f.relative_to(project)}: {m['path']} does not exist"
        assert schema_file.is_relative_to(project.resolve())  # the project's own copy
        rel = f.relative_to(project)
        want = SCHEMA_OF.get(str(rel)) or {"rules": "rule.schema.json",
                                           "tests": "ruletest.schema.json"}[rel.parts[0]]
        assert schema_file.name == want
        json.loads(schema_file.read_text("utf-8"))


def _nodes(rule: Rule) -> list[Any]:
    out: list[Any] = []
    for cond in (rule.audience, rule.unless, rule.trigger.where):
        if cond is not None:
            out.extend(walk(cond.expr))
    return out


def _aggs(rule: Rule, func: str, event: str) -> list[TAgg]:
    return [n for n in _nodes(rule) if isinstance(n, TAgg) and n.func == func and n.event == event]


def _strings(rule: Rule) -> set[str]:
    return {n.value for n in _nodes(rule) if isinstance(n, TLit) and isinstance(n.value, str)}


def _kinds(rule: Rule) -> set[str]:
    return {a.kind for a in rule.all_actions()}


def _attrs(rule: Rule) -> set[str]:
    return {n.name for n in _nodes(rule) if isinstance(n, TUserAttr)}


def _messages(rule: Rule) -> list[MessageAction]:
    return [a for a in rule.all_actions() if isinstance(a, MessageAction)]


def _date(rule: Rule, attr: str) -> bool:
    return rule.trigger.kind == "date" and rule.trigger.date_attr == attr


PLAYBOOK: dict[str, Callable[[Rule], bool]] = {
    "1 沉睡召回: no order for N days, by RFM segment or tier -> coupon + message":
        lambda r: bool(_aggs(r, "last", "order_paid")) and {"coupon", "message"} <= _kinds(r)
        and (any(isinstance(n, TRfm) for n in _nodes(r)) or "tier" in _attrs(r)),
    "2 加购未支付: cart_add, no order_paid within 2h -> one reminder":
        lambda r: r.trigger.event == "cart_add" and r.trigger.wait == timedelta(hours=2)
        and any(a.window == timedelta(hours=2) for a in _aggs(r, "count", "order_paid"))
        and bool(_messages(r)) and r.limits is not None,
    "3 优惠券即将过期: an issued coupon unused 3 days before expiry -> reminder":
        lambda r: r.trigger.kind == "coupon_expiring" and r.trigger.before == timedelta(days=3)
        and bool(_messages(r)),
    "4 积分到期: points expiring within 7 days -> reminder":
        lambda r: _date(r, "points_expire_at") and r.trigger.before == timedelta(days=7)
        and bool(_messages(r)),
    "5 新人: signed up, no first order within 3 days -> coupon":
        lambda r: _date(r, "signup_at") and r.trigger.after == timedelta(days=3)
        and bool(_aggs(r, "count", "order_paid")) and "coupon" in _kinds(r),
    "6a 生日礼 for members of a tier":
        lambda r: _date(r, "birthday") and r.trigger.annual and "tier" in _attrs(r)
        and "coupon" in _kinds(r),
    "6b 会员等级 rewards":
        lambda r: "tier" in _attrs(r) and bool({"points", "coupon"} & _kinds(r))
        and not _date(r, "birthday"),
    "7 连续签到 7 天 -> points / coupon":
        lambda r: any(isinstance(n, TCompare) and isinstance(n.left, TAgg)
                      and n.left.func == "streak" and n.left.event == "checkin"
                      and n.right == TLit("number", (0, 0), 7) for n in _nodes(r))
        and bool({"points", "coupon"} & _kinds(r)),
    "8 降价通知 (an event addressed to a user)":
        lambda r: r.trigger.event == "price_drop" and bool(_messages(r)),
    "9a 高价值用户专属券 (RFM important_value)":
        lambda r: "important_value" in _strings(r) and "coupon" in _kinds(r),
    "9b 流失用户 SMS + subscription message (channel fallback)":
        lambda r: "churned" in _strings(r) and any(
            m.channel == "wechat_subscribe" and "sms" in m.fallback and m.text for m in _messages(r)),
    "10 transactional notices (支付成功, 发货)":
        lambda r: r.category == "transactional" and r.trigger.kind == "event"
        and bool(_messages(r)),
    "11 A/B test of two coupon copies with a holdout":
        lambda r: r.experiment is not None and r.experiment.holdout > 0
        and len(r.experiment.variants) >= 2 and r.goal is not None and "coupon" in _kinds(r),
    "12 LBS: entering a store's geofence -> nearby-store offer":
        lambda r: r.trigger.event == "enter_geofence" and "coupon" in _kinds(r),
}


def test_init_writes_a_rule_for_each_of_the_twelve_playbook_items(project: Path) -> None:
    loaded = load(str(project))
    rules = [lr.rule for lr in loaded.rules]
    assert len({k.split()[0].rstrip("ab") for k in PLAYBOOK}) == 12
    for item, matches in PLAYBOOK.items():
        found = [r.id for r in rules if matches(r)]
        assert found, f"no rule in the example playbook for item {item}"
    transactional = [r for r in rules if r.category == "transactional"]
    assert {r.trigger.event for r in transactional} >= {"order_paid", "order_shipped"}


def test_playbook_predicates_can_fail(project: Path) -> None:
    """Each predicate above rejects the rules written for the other items (it is specific)."""
    rules = [lr.rule for lr in load(str(project)).rules]
    for item, matches in PLAYBOOK.items():
        assert sum(1 for r in rules if matches(r)) < len(rules) / 2, item
