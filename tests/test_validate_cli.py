"""`engine validate` and `engine init` as an operator and a CI job run them: the real console
script in a subprocess, in a project directory. Exit 0 clean (warnings allowed), 1 errors,
2 could not run; text, json and github formats; never a traceback.

Each subprocess costs a Python start-up, so the projects below are built once per module and
each command line runs once (`outputs`), shared by the tests that read its output."""
from __future__ import annotations

import json
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

from engine.scaffold import init_project

from conftest import REPO, Runner, run

GOLDEN = Path(__file__).parent / "golden"
TEXT_HEAD = re.compile(r"^(?P<path>\S+?):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning)"
                       r"\[(?P<code>[A-Z_]+)\]: (?P<msg>.+)$")
GITHUB = re.compile(r"^::(?P<kind>error|warning|notice) file=(?P<file>[^,]+),line=(?P<line>\d+),"
                    r"col=(?P<col>\d+),title=(?P<code>[A-Z_]+)::(?P<msg>.+)$")
Proc = subprocess.CompletedProcess[str]


def drop(project: Path, golden: str, rule_id: str | None = None) -> Path:
    """Put a golden bad file into the project's rules/ (optionally under another rule id)."""
    text = (GOLDEN / f"{golden}.bad.yaml").read_text("utf-8")
    if rule_id:
        text = text.replace("id: golden-rule", f"id: {rule_id}")
    dest = project / "rules" / f"{golden}.yaml"
    dest.write_text(text, encoding="utf-8")
    return dest


def expectation(golden: str) -> tuple[str, int, int, str]:
    text = (GOLDEN / f"{golden}.bad.yaml").read_text("utf-8")
    m = re.search(r"^# expect: ([^:]+):(\d+):(\d+): \w+\[([A-Z_]+)\]", text, re.M)
    assert m
    return m[1], int(m[2]), int(m[3]), m[4]


def no_traceback(proc: Proc) -> None:
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream
        assert "internal error" not in stream


def new_project(factory: pytest.TempPathFactory, name: str, *goldens: str) -> Path:
    root = factory.mktemp(name) / "shop"
    init_project(str(root))
    for i, g in enumerate(goldens):
        drop(root, g, rule_id=f"rule-{i}")
    return root


class Shop:
    """A project directory plus its command lines, each run once and remembered."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._runs: dict[tuple[str, ...], Proc] = {}

    def __call__(self, *args: str) -> Proc:
        if args not in self._runs:
            self._runs[args] = run(*args, cwd=self.root)
            no_traceback(self._runs[args])
        return self._runs[args]


BROKEN = ("cond-unknown-value", "unknown-coupon", "cond-type-duration-number",
          "cond-unknown-name-after-chinese", "no-limits", "absolute-term-accepted")


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """A project with four errors, one warning and one accepted warning."""
    return Shop(new_project(tmp_path_factory, "broken", *BROKEN))


@pytest.fixture(scope="module")
def warned(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """A project whose only findings are a warning and an accepted warning."""
    return Shop(new_project(tmp_path_factory, "warned", "no-limits", "absolute-term-accepted"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    return Shop(new_project(tmp_path_factory, "clean"))


# -- exit codes --------------------------------------------------------------------------------

def test_clean_project_exits_0(clean: Shop) -> None:
    proc = clean("validate")
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout.strip().endswith("0 error(s), 0 warning(s): all clean")


def test_errors_exit_1(broken: Shop) -> None:
    proc = broken("validate")
    assert proc.returncode == 1
    assert proc.stderr == ""
    assert "4 error(s), 1 warning(s), 1 accepted" in proc.stdout.splitlines()[-1]


def test_warnings_alone_exit_0_and_strict_makes_them_fail(warned: Shop) -> None:
    plain, strict = warned("validate"), warned("validate", "--strict")
    assert plain.returncode == 0
    assert "warning[NO_LIMITS]" in plain.stdout
    assert strict.returncode == 1
    assert "error[NO_LIMITS]" in strict.stdout
    assert "warning[ABSOLUTE_TERM]" in strict.stdout  # accepted: stays a warning
    out = json.loads(warned("validate", "--strict", "--format", "json").stdout)
    assert [(d["code"], d["severity"]) for d in out["diagnostics"]] == [
        ("ABSOLUTE_TERM", "warning"), ("NO_LIMITS", "error")]
    assert (out["errors"], out["warnings"], out["accepted"]) == (1, 0, 1)


def test_accepted_warnings_do_not_fail_even_strict(tmp_path: Path, run_engine: Runner) -> None:
    root = tmp_path / "shop"
    init_project(str(root))
    drop(root, "absolute-term-accepted")
    proc = run_engine("validate", "--strict", cwd=root)
    no_traceback(proc)
    assert proc.returncode == 0
    assert "warning[ABSOLUTE_TERM]" in proc.stdout
    assert "(accepted: 第一面包坊 is the store's registered name)" in proc.stdout


def test_no_engine_yaml_exits_2(tmp_path: Path, run_engine: Runner) -> None:
    proc = run_engine("validate", cwd=tmp_path)
    no_traceback(proc)
    assert proc.returncode == 2
    assert "no engine.yaml" in proc.stderr
    assert "engine init" in proc.stderr  # says how to get one
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [("validate", "rules/nope.yaml"),
                                  ("validate", "--project", "no/such/dir"),
                                  ("validate", "--format", "xml")],
                         ids=["missing-path", "missing-project", "bad-format"])
def test_could_not_run_exits_2(clean: Shop, args: tuple[str, ...]) -> None:
    proc = clean(*args)
    assert proc.returncode == 2
    assert proc.stderr.strip() and proc.stdout == ""


def test_unreadable_input_never_shows_a_traceback(tmp_path: Path, run_engine: Runner) -> None:
    """Garbage of every kind at once: each is a diagnostic, none is a crash."""
    root = tmp_path / "shop"
    init_project(str(root))
    (root / "rules" / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (root / "rules" / "tabs.yaml").write_text("id: x\n\tcategory: marketing\n", "utf-8")
    (root / "rules" / "nul.yaml").write_text("id: \x00\n", "utf-8")
    (root / "rules" / "list-of-junk.yaml").write_text("- 1\n- [a]\n- {id: 3}\n", "utf-8")
    (root / "rules" / "tags.yaml").write_text("id: !!int x\npriority: !!float y\n", "utf-8")
    (root / "rules" / "dir.yaml").mkdir()
    (root / "datamodel.yaml").write_text("user: [1, 2]\nevents: 7\n", "utf-8")
    proc = run_engine("validate", cwd=root)
    no_traceback(proc)
    assert proc.returncode == 1
    assert proc.stderr == ""
    for code in ("FILE_ENCODING", "YAML_TAG", "YAML_SYNTAX", "SCHEMA_TYPE"):
        assert f"error[{code}]" in proc.stdout


# -- paths --------------------------------------------------------------------------------------

def test_paths_limit_the_rule_files_checked(broken: Shop) -> None:
    one = broken("validate", "rules/winback-7d.yaml")
    assert one.returncode == 0
    assert ", 1 rule(s):" in one.stdout and "all clean" in one.stdout
    bad = broken("validate", "rules/cond-unknown-value.yaml", "rules/unknown-coupon.yaml")
    assert bad.returncode == 1
    assert ", 2 rule(s): 2 error(s)" in bad.stdout


def test_project_directory_as_argument_or_option(broken: Shop, tmp_path: Path) -> None:
    for args in (("validate", str(broken.root)), ("validate", "--project", str(broken.root))):
        proc = run(*args, cwd=tmp_path)  # from another working directory
        no_traceback(proc)
        assert proc.returncode == 1
        assert "COND_UNKNOWN_VALUE" in proc.stdout and "4 error(s)" in proc.stdout


# -- formats ------------------------------------------------------------------------------------

def blocks(stdout: str) -> dict[str, list[str]]:
    """Text output split into one block of lines per diagnostic, keyed by its code."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in stdout.splitlines():
        m = TEXT_HEAD.match(line)
        if m:
            current = out.setdefault(m["code"], [])
        current.append(line)
    return out


def test_text_shows_source_line_and_caret_under_the_column(broken: Shop) -> None:
    path, line, col, code = expectation("cond-type-duration-number")
    head, quoted_line, caret = blocks(broken("validate").stdout)[code][:3]
    m = TEXT_HEAD.match(head)
    assert m and (m["path"], int(m["line"]), int(m["col"])) == (path, line, col)
    src = (broken.root / path).read_text("utf-8").splitlines()
    gutter, _, quoted = quoted_line.partition(" | ")
    assert gutter.strip() == str(line) and quoted == src[line - 1]
    assert caret.index("^") == len(gutter) + 3 + col - 1
    assert quoted[col - 1:].startswith(">= 7d")
    assert caret.rstrip().endswith("^~")  # `>=` underlined: two characters


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def test_caret_lines_up_under_chinese_text(broken: Shop) -> None:
    """A terminal draws CJK characters two columns wide; the caret must still sit under the token."""
    _, line, col, code = expectation("cond-unknown-name-after-chinese")
    _, quoted_line, caret_line = blocks(broken("validate").stdout)[code][:3]
    gutter, _, quoted = quoted_line.partition(" | ")
    caret = caret_line[len(gutter) + 3:]
    assert quoted[col - 1:].startswith("user.teir")
    assert display_width(caret[: caret.index("^")]) == display_width(quoted[: col - 1])
    assert caret.strip() == "^" + "~" * (len("user.teir") - 1)


def test_text_shows_hints_and_accepted_reasons(broken: Shop) -> None:
    b = blocks(broken("validate").stdout)
    assert "      = hint: did you mean `gold`?" in b["COND_UNKNOWN_VALUE"]
    assert b["ABSOLUTE_TERM"][0].endswith("(accepted: 第一面包坊 is the store's registered name)")


def test_text_quotes_the_line_of_a_yaml_syntax_error(tmp_path: Path, run_engine: Runner) -> None:
    root = tmp_path / "shop"
    init_project(str(root))
    drop(root, "yaml-syntax")
    _, line, col, _ = expectation("yaml-syntax")
    lines = run_engine("validate", cwd=root).stdout.splitlines()
    assert lines[0].startswith(f"rules/yaml-syntax.yaml:{line}:{col}: error[YAML_SYNTAX]")
    assert lines[1].endswith(" | actions:")
    assert lines[2].endswith("| ^")


def test_json_format(broken: Shop) -> None:
    proc = broken("validate", "--format", "json")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert (out["errors"], out["warnings"], out["accepted"]) == (4, 1, 1)
    rule_tests = len(list((REPO / "tests").glob("*.yaml")))  # validate reads them too
    assert out["rules"] == 16 + len(BROKEN) and out["files"] == 19 + rule_tests + len(BROKEN)
    for d in out["diagnostics"]:
        assert {"path", "line", "column", "severity", "code", "message"} <= set(d)
        assert isinstance(d["line"], int) and isinstance(d["column"], int)
        assert d["severity"] in ("error", "warning")
    got = sorted((d["path"], d["line"], d["column"], d["code"]) for d in out["diagnostics"])
    assert got == sorted(expectation(g) for g in BROKEN)
    by_code = {d["code"]: d for d in out["diagnostics"]}
    assert by_code["COND_UNKNOWN_VALUE"]["hint"] == "did you mean `gold`?"
    assert by_code["ABSOLUTE_TERM"]["accepted"].startswith("第一面包坊")
    assert "accepted" not in by_code["NO_LIMITS"]


def test_json_format_when_clean(clean: Shop) -> None:
    proc = clean("validate", "--format", "json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert out["diagnostics"] == [] and out["errors"] == 0 and out["rules"] == 16


def test_github_format(broken: Shop) -> None:
    proc = broken("validate", "--format", "github")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == len(BROKEN)
    parsed = [GITHUB.match(line) for line in lines]
    assert all(parsed), lines
    by_code = {m["code"]: m for m in parsed if m}
    path, line, col, _ = expectation("cond-unknown-value")
    m = by_code["COND_UNKNOWN_VALUE"]
    assert (m["kind"], m["file"], int(m["line"]), int(m["col"])) == ("error", path, line, col)
    assert "did you mean `gold`?" in m["msg"]
    assert by_code["NO_LIMITS"]["kind"] == "warning"
    assert by_code["ABSOLUTE_TERM"]["kind"] == "notice"  # accepted: not a failure annotation
    assert sum(1 for m in parsed if m and m["kind"] == "error") == 4


def test_github_format_escapes_newlines_and_properties(tmp_path: Path, run_engine: Runner) -> None:
    """Workflow commands are one line each: CR/LF/% escaped in messages, `,` and `:` in properties."""
    root = tmp_path / "shop"
    init_project(str(root))
    (root / "rules" / "odd,name.yaml").write_text(
        'id: odd\ncategory: transactional\ntrigger: {event: checkin}\n'
        'actions:\n  - tag: {add: x}\n"two\\nlines 100%": 1\n', "utf-8")
    proc = run_engine("validate", "--format", "github", cwd=root)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, lines
    m = GITHUB.match(lines[0])
    assert m and m["file"] == "rules/odd%2Cname.yaml" and m["code"] == "SCHEMA_UNKNOWN_KEY"
    assert "two%0Alines 100%25" in m["msg"]


def test_github_format_is_empty_when_clean(clean: Shop) -> None:
    proc = clean("validate", "--format", "github")
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
    assert not (tmp_path / "shop" / "engine.yaml").exists()
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
