"""`engine validate` and `engine init` as an operator and a CI job run them: the real console
script in a subprocess, in a project directory. Exit 0 clean (warnings allowed), 1 errors,
2 could not run; text, json and github formats; never a traceback."""
from __future__ import annotations

import json
import re
import shutil
import unicodedata
from pathlib import Path

import pytest

from conftest import REPO, Runner

GOLDEN = Path(__file__).parent / "golden"
TEXT_HEAD = re.compile(r"^(?P<path>\S+?):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning)"
                       r"\[(?P<code>[A-Z_]+)\]: (?P<msg>.+)$")
GITHUB = re.compile(r"^::(?P<kind>error|warning|notice) file=(?P<file>[^,]+),line=(?P<line>\d+),"
                    r"col=(?P<col>\d+),title=(?P<code>[A-Z_]+)::(?P<msg>.+)$")


def drop(project: Path, golden: str, as_name: str | None = None, rule_id: str | None = None) -> Path:
    """Put a golden bad file into the project's rules/ (optionally under another id)."""
    text = (GOLDEN / f"{golden}.bad.yaml").read_text("utf-8")
    if rule_id:
        text = text.replace("id: golden-rule", f"id: {rule_id}")
    dest = project / "rules" / f"{as_name or golden}.yaml"
    dest.write_text(text, encoding="utf-8")
    return dest


def expectation(golden: str) -> tuple[int, int, str]:
    text = (GOLDEN / f"{golden}.bad.yaml").read_text("utf-8")
    m = re.search(r"^# expect: [^:]+:(\d+):(\d+): \w+\[([A-Z_]+)\]", text, re.M)
    assert m
    return int(m[1]), int(m[2]), m[3]


def no_traceback(proc: object) -> None:
    for stream in (proc.stdout, proc.stderr):  # type: ignore[attr-defined]
        assert "Traceback" not in stream
        assert "internal error" not in stream


# -- exit codes --------------------------------------------------------------------------------

def test_clean_project_exits_0(project: Path, run_engine: Runner) -> None:
    proc = run_engine("validate", cwd=project)
    no_traceback(proc)
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout.strip().endswith("0 error(s), 0 warning(s): all clean")


def test_repo_root_validates_clean(run_engine: Runner) -> None:
    proc = run_engine("validate", cwd=REPO)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stdout
    assert "all clean" in proc.stdout


def test_errors_exit_1(project: Path, run_engine: Runner) -> None:
    drop(project, "cond-unknown-value")
    proc = run_engine("validate", cwd=project)
    no_traceback(proc)
    assert proc.returncode == 1
    assert "error[COND_UNKNOWN_VALUE]" in proc.stdout
    assert "1 error(s), 0 warning(s)" in proc.stdout


def test_warnings_alone_exit_0_and_strict_makes_them_fail(project: Path,
                                                          run_engine: Runner) -> None:
    drop(project, "no-limits")
    plain = run_engine("validate", cwd=project)
    strict = run_engine("validate", "--strict", cwd=project)
    for proc in (plain, strict):
        no_traceback(proc)
    assert plain.returncode == 0
    assert "warning[NO_LIMITS]" in plain.stdout
    assert strict.returncode == 1
    assert "error[NO_LIMITS]" in strict.stdout
    sj = json.loads(run_engine("validate", "--strict", "--format", "json", cwd=project).stdout)
    assert [d["severity"] for d in sj["diagnostics"]] == ["error"]
    assert sj["errors"] == 1


def test_accepted_warnings_do_not_fail_even_strict(project: Path, run_engine: Runner) -> None:
    drop(project, "absolute-term-accepted")
    proc = run_engine("validate", "--strict", cwd=project)
    no_traceback(proc)
    assert proc.returncode == 0
    assert "warning[ABSOLUTE_TERM]" in proc.stdout
    assert "(accepted: 第一面包坊 is the store's registered name)" in proc.stdout
    out = json.loads(run_engine("validate", "--format", "json", cwd=project).stdout)
    assert out["accepted"] == 1 and out["warnings"] == 0
    assert out["diagnostics"][0]["accepted"].startswith("第一面包坊")
    gh = run_engine("validate", "--format", "github", cwd=project).stdout
    assert gh.startswith("::notice file=rules/absolute-term-accepted.yaml,")


def test_no_engine_yaml_exits_2(tmp_path: Path, run_engine: Runner) -> None:
    proc = run_engine("validate", cwd=tmp_path)
    no_traceback(proc)
    assert proc.returncode == 2
    assert "no engine.yaml" in proc.stderr
    assert "engine init" in proc.stderr  # says how to get one


@pytest.mark.parametrize("args", [("validate", "rules/nope.yaml"),
                                  ("validate", "--project", "no/such/dir"),
                                  ("validate", "--format", "xml")],
                         ids=["missing-path", "missing-project", "bad-format"])
def test_could_not_run_exits_2(project: Path, run_engine: Runner, args: tuple[str, ...]) -> None:
    proc = run_engine(*args, cwd=project)
    no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stderr.strip()


def test_unreadable_input_never_shows_a_traceback(project: Path, run_engine: Runner) -> None:
    """Garbage of every kind at once: each is a diagnostic, none is a crash."""
    (project / "rules" / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (project / "rules" / "tabs.yaml").write_text("id: x\n\tcategory: marketing\n", "utf-8")
    (project / "rules" / "nul.yaml").write_text("id: \x00\n", "utf-8")
    (project / "rules" / "list-of-junk.yaml").write_text("- 1\n- [a]\n- {id: 3}\n", "utf-8")
    (project / "rules" / "dir.yaml").mkdir()
    (project / "datamodel.yaml").write_text("user: [1, 2]\nevents: 7\n", "utf-8")
    for fmt in ("text", "json", "github"):
        proc = run_engine("validate", "--format", fmt, cwd=project)
        no_traceback(proc)
        assert proc.returncode == 1
        assert proc.stderr == ""


# -- paths --------------------------------------------------------------------------------------

def test_paths_limit_the_rule_files_checked(project: Path, run_engine: Runner) -> None:
    drop(project, "cond-unknown-value")
    one = run_engine("validate", "rules/winback-7d.yaml", cwd=project)
    no_traceback(one)
    assert one.returncode == 0
    assert ", 1 rule(s):" in one.stdout
    bad = run_engine("validate", "rules/cond-unknown-value.yaml", cwd=project)
    assert bad.returncode == 1


def test_project_directory_as_argument_or_option(project: Path, tmp_path: Path,
                                                 run_engine: Runner) -> None:
    drop(project, "cond-unknown-value")
    for args in (("validate", str(project)), ("validate", "--project", str(project))):
        proc = run_engine(*args, cwd=tmp_path)
        no_traceback(proc)
        assert proc.returncode == 1
        assert "COND_UNKNOWN_VALUE" in proc.stdout


# -- formats ------------------------------------------------------------------------------------

def test_text_shows_source_line_and_caret_under_the_column(project: Path,
                                                           run_engine: Runner) -> None:
    drop(project, "cond-type-duration-number")
    line, col, code = expectation("cond-type-duration-number")
    lines = run_engine("validate", cwd=project).stdout.splitlines()
    m = TEXT_HEAD.match(lines[0])
    assert m and (int(m["line"]), int(m["col"]), m["code"]) == (line, col, code)
    src = (project / "rules" / "cond-type-duration-number.yaml").read_text("utf-8").splitlines()
    gutter, _, quoted = lines[1].partition(" | ")
    assert gutter.strip() == str(line) and quoted == src[line - 1]
    caret = lines[2]
    assert caret.index("^") == len(gutter) + 3 + col - 1
    assert quoted[col - 1:].startswith(">= 7d")
    assert caret.rstrip().endswith("^~")  # `>=` underlined: two characters


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def test_caret_lines_up_under_chinese_text(project: Path, run_engine: Runner) -> None:
    """A terminal draws CJK characters two columns wide; the caret must still sit under the token."""
    drop(project, "cond-unknown-name-after-chinese")
    line, col, _ = expectation("cond-unknown-name-after-chinese")
    lines = run_engine("validate", cwd=project).stdout.splitlines()
    gutter, _, quoted = lines[1].partition(" | ")
    caret = lines[2][len(gutter) + 3:]
    assert quoted[col - 1:].startswith("user.teir")
    assert display_width(caret[: caret.index("^")]) == display_width(quoted[: col - 1])
    assert caret.strip() == "^" + "~" * (len("user.teir") - 1)


def test_text_quotes_the_line_of_a_yaml_syntax_error(project: Path, run_engine: Runner) -> None:
    drop(project, "yaml-syntax")
    line, col, _ = expectation("yaml-syntax")
    lines = run_engine("validate", cwd=project).stdout.splitlines()
    assert lines[0].startswith(f"rules/yaml-syntax.yaml:{line}:{col}: error[YAML_SYNTAX]")
    assert lines[1].endswith(" | actions:")
    assert lines[2].endswith("| ^")


def test_json_format(project: Path, run_engine: Runner) -> None:
    drop(project, "cond-unknown-value", rule_id="one")
    drop(project, "no-limits", rule_id="two")
    proc = run_engine("validate", "--format", "json", cwd=project)
    no_traceback(proc)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["errors"] == 1 and out["warnings"] == 1 and out["accepted"] == 0
    assert out["rules"] == 18 and out["files"] >= 21
    for d in out["diagnostics"]:
        assert {"path", "line", "column", "severity", "code", "message"} <= set(d)
        assert isinstance(d["line"], int) and isinstance(d["column"], int)
        assert d["severity"] in ("error", "warning")
    got = [(d["path"], d["line"], d["column"], d["code"]) for d in out["diagnostics"]]
    l1, c1, k1 = expectation("cond-unknown-value")
    l2, c2, k2 = expectation("no-limits")
    assert got == [("rules/cond-unknown-value.yaml", l1, c1, k1), ("rules/no-limits.yaml", l2, c2, k2)]
    assert out["diagnostics"][0]["hint"] == "did you mean `gold`?"


def test_json_format_when_clean(project: Path, run_engine: Runner) -> None:
    out = json.loads(run_engine("validate", "--format", "json", cwd=project).stdout)
    assert out["diagnostics"] == [] and out["errors"] == 0 and out["rules"] == 16


def test_github_format(project: Path, run_engine: Runner) -> None:
    drop(project, "cond-unknown-value", rule_id="one")
    drop(project, "no-limits", rule_id="two")
    drop(project, "unknown-coupon", rule_id="three")
    proc = run_engine("validate", "--format", "github", cwd=project)
    no_traceback(proc)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    parsed = [GITHUB.match(line) for line in lines]
    assert all(parsed), lines
    by_code = {m["code"]: m for m in parsed if m}
    line, col, _ = expectation("cond-unknown-value")
    m = by_code["COND_UNKNOWN_VALUE"]
    assert (m["kind"], m["file"], int(m["line"]), int(m["col"])) == (
        "error", "rules/cond-unknown-value.yaml", line, col)
    assert "did you mean `gold`?" in m["msg"]
    assert by_code["NO_LIMITS"]["kind"] == "warning"
    assert by_code["UNKNOWN_COUPON"]["kind"] == "error"


def test_github_format_escapes_newlines_and_properties(project: Path, run_engine: Runner) -> None:
    """Workflow commands are one line each: CR/LF/% escaped in messages, `,` and `:` in properties."""
    (project / "rules" / "odd,name.yaml").write_text(
        'id: odd\ncategory: transactional\ntrigger: {event: checkin}\n'
        'actions:\n  - tag: {add: x}\n"two\\nlines 100%": 1\n', "utf-8")
    proc = run_engine("validate", "--format", "github", cwd=project)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, lines
    m = GITHUB.match(lines[0])
    assert m and m["file"] == "rules/odd%2Cname.yaml" and m["code"] == "SCHEMA_UNKNOWN_KEY"
    assert "two%0Alines 100%25" in m["msg"]


def test_github_format_is_empty_when_clean(project: Path, run_engine: Runner) -> None:
    proc = run_engine("validate", "--format", "github", cwd=project)
    assert proc.returncode == 0 and proc.stdout == ""


# -- engine init --------------------------------------------------------------------------------

def test_init_then_validate(tmp_path: Path, run_engine: Runner) -> None:
    proc = run_engine("init", "shop", cwd=tmp_path)
    no_traceback(proc)
    assert proc.returncode == 0
    assert "engine validate" in proc.stdout  # says what to do next
    check = run_engine("validate", cwd=tmp_path / "shop")
    assert check.returncode == 0 and "all clean" in check.stdout


def test_init_refuses_a_non_empty_directory(tmp_path: Path, run_engine: Runner) -> None:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "notes.txt").write_text("mine", "utf-8")
    proc = run_engine("init", "shop", cwd=tmp_path)
    no_traceback(proc)
    assert proc.returncode == 2
    assert "not empty" in proc.stderr and "--force" in proc.stderr
    assert (tmp_path / "shop" / "notes.txt").read_text("utf-8") == "mine"
    forced = run_engine("init", "shop", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and (tmp_path / "shop" / "engine.yaml").is_file()


def test_init_over_a_file_exits_2(tmp_path: Path, run_engine: Runner) -> None:
    (tmp_path / "shop").write_text("x", "utf-8")
    proc = run_engine("init", "shop", cwd=tmp_path)
    no_traceback(proc)
    assert proc.returncode == 2


def test_version(run_engine: Runner, tmp_path: Path) -> None:
    proc = run_engine("--version", cwd=tmp_path)
    assert proc.returncode == 0 and "engine" in proc.stdout


def test_a_copied_project_outside_the_repo(tmp_path: Path, run_engine: Runner) -> None:
    """The repo root is a project too; a plain copy of its files validates the same."""
    dest = tmp_path / "copy"
    dest.mkdir()
    for name in ("engine.yaml", "datamodel.yaml", "templates.yaml", "coupons.yaml"):
        shutil.copyfile(REPO / name, dest / name)
    shutil.copytree(REPO / "rules", dest / "rules")
    proc = run_engine("validate", cwd=dest)
    assert proc.returncode == 0, proc.stdout
