"""The shape of the code base: the library never imports click, every command documents itself,
every diagnostic code the library can report is declared in engine/codes.py."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterator

import click
import pytest
from click.testing import CliRunner

import cli
from engine.codes import CODES
from engine.compliance import PHRASE_CODES

from conftest import REPO

ENGINE = REPO / "engine"
SOURCES = sorted(ENGINE.rglob("*.py"))


def imported_modules(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
              and getattr(node.func, "attr", getattr(node.func, "id", "")) in
              ("import_module", "__import__") and node.args
              and isinstance(node.args[0], ast.Constant)):
            yield str(node.args[0].value)


def test_sources_found() -> None:
    assert len(SOURCES) >= 15 and ENGINE / "validate.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(REPO)) for p in SOURCES])
def test_engine_never_imports_click(path: Path) -> None:
    bad = [m for m in imported_modules(path) if m == "click" or m.startswith("click.")]
    assert not bad, f"{path.relative_to(REPO)} imports {bad}: the library must not know the CLI"


def test_the_import_scan_would_catch_click(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import os\nif True:\n    from click import echo\n", "utf-8")
    assert "click" in list(imported_modules(sample))


def all_commands() -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []

    def visit(prefix: str, cmd: click.Command) -> None:
        out.append((prefix, cmd))
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                visit(f"{prefix} {name}".strip(), sub)

    visit("", cli.cli)
    return out


COMMANDS = all_commands()


def test_the_contract_commands_exist() -> None:
    names = {name for name, _ in COMMANDS}
    assert {"init", "validate"} <= names


@pytest.mark.parametrize("name, cmd", COMMANDS, ids=[n or "engine" for n, _ in COMMANDS])
def test_every_command_has_help(name: str, cmd: click.Command) -> None:
    assert (cmd.help or "").strip(), f"`engine {name}` has no help text"
    for param in cmd.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert (param.help or "").strip(), f"`engine {name}` option {param.opts} has no help"


@pytest.mark.parametrize("name", [n for n, _ in COMMANDS], ids=[n or "engine" for n, _ in COMMANDS])
def test_help_works(name: str) -> None:
    result = CliRunner().invoke(cli.cli, [*name.split(), "--help"], prog_name="engine")
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "Usage: engine" in result.output
    cmd = dict(COMMANDS)[name]
    first_line = (cmd.help or "").strip().splitlines()[0]
    assert first_line[:40] in " ".join(result.output.split())


def _module_path(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def validate_modules() -> list[Path]:
    """engine.validate and every engine module it imports, directly or not."""
    todo, seen = ["engine.validate"], set()
    while todo:
        name = todo.pop()
        path = _module_path(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("engine")]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                if mod.startswith("engine"):
                    todo.append(mod)
                    todo += [f"{mod}.{a.name}" for a in node.names]
    return sorted(p for p in map(_module_path, seen) if p is not None)


def test_every_reported_code_is_declared() -> None:
    """Any UPPER_SNAKE string that `engine validate`'s modules pass to a call (a Diagnostic, an
    error, `rep.add`) is a diagnostic code, and must be in engine/codes.py with its severity."""
    modules = validate_modules()
    assert {ENGINE / "checks.py", ENGINE / "lang" / "checker.py", ENGINE / "yaml12.py",
            ENGINE / "rules" / "loader.py"} <= set(modules)
    found: dict[str, str] = {}
    for path in modules:
        if path.name == "codes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call):
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    if (isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                            and re.fullmatch(r"[A-Z]+(?:_[A-Z0-9]+)+", arg.value)):
                        found.setdefault(arg.value, str(path.relative_to(REPO)))
    assert len(found) >= 40  # the scan sees the codes
    missing = {c: where for c, where in found.items() if c not in CODES}
    assert not missing
    assert set(PHRASE_CODES.values()) <= set(CODES)


def test_codes_have_a_severity_and_a_summary() -> None:
    for code, (severity, summary) in CODES.items():
        assert re.fullmatch(r"[A-Z]+(?:_[A-Z0-9]+)*", code)
        assert severity.value in ("error", "warning") and summary.strip()


def test_only_the_clock_module_and_the_daemon_tick_read_the_clock() -> None:
    """Time is an argument: rule evaluation never reads a clock. Protocol clocks (signature
    timestamps, token lifetimes) go through engine/clock.py; the daemon reads `now` per tick."""
    allowed = {"engine/clock.py", "engine/daemon.py"}
    offenders = []
    pattern = re.compile(r"datetime\.now\(|datetime\.utcnow\(|time\.time\(|time\.monotonic\(|"
                         r"date\.today\(")
    for path in sorted((REPO / "engine").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        if rel in allowed:
            continue
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, offenders
