"""A project on disk: engine.yaml, datamodel.yaml, templates.yaml, coupons.yaml, rules/.

`load()` reads everything, collects every problem as a positioned diagnostic and still
returns what could be built; `load_project()` is for commands that need a valid project and
raises `InputProblems` when there is any error.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import schema
from .config import (Built, CouponStock, DataModel, EngineConfig, Template, build_coupons,
                     build_datamodel, build_engine_config, build_templates)
from .errors import CannotRun, Diagnostic, InputProblems, Severity
from .rules.loader import LoadedRule, RuleContext, load_rules
from .rules.model import Rule
from .yaml12 import Document, YamlError
from .yaml12 import load as load_yaml

RULE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Project:
    root: Path
    config: EngineConfig
    datamodel: DataModel
    templates: Mapping[str, Template]
    coupons: Mapping[str, CouponStock]
    rules: tuple[Rule, ...]

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def git_commit(self) -> str:
        """The checkout's HEAD commit, or "" when the project is not a git checkout."""
        try:
            out = subprocess.run(["git", "-C", str(self.root), "rev-parse", "HEAD"],
                                 capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""


@dataclass
class Loaded:
    project: Project
    rules: list[LoadedRule]
    docs: dict[str, Document]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: int = 0

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]


def display_path(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def find_root(project: str | os.PathLike[str] | None) -> Path:
    root = Path(project) if project else Path.cwd()
    if not root.is_dir():
        raise CannotRun(f"project directory {root} does not exist")
    if not (root / "engine.yaml").is_file():
        raise CannotRun(f"no engine.yaml in {display_path(root.resolve())}",
                        hint="run `engine init DIR` to create a project, or pass --project DIR")
    return root


def read_document(path: Path, diags: list[Diagnostic], docs: dict[str, Document]) -> Document | None:
    """The parsed file, or None after reporting why it cannot be read. A file that fails to
    parse still has its text kept in `docs`, so its diagnostics can quote the source line."""
    shown = display_path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CannotRun(f"cannot read {shown}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        diags.append(Diagnostic(Severity.ERROR, "FILE_ENCODING",
                                "file is not valid UTF-8", _pos(shown, line)))
        docs[shown] = Document(shown, raw.decode("utf-8", errors="replace"))
        return None
    try:
        doc = load_yaml(text, shown)
    except YamlError as exc:
        diags.append(exc.diagnostic)
        docs[shown] = Document(shown, text)
        return None
    diags.extend(doc.problems)
    return doc


def _pos(path: str, line: int) -> Any:
    from .errors import Position
    return Position(path, line, 1)


def _config_file(root: Path, name: str, kind: str, build: Callable[[Any], Built], default: Any,
                 diags: list[Diagnostic], docs: dict[str, Document]) -> Any:
    path = root / name
    if not path.is_file():
        return default
    doc = read_document(path, diags, docs)
    if doc is None:
        return default
    docs[doc.path] = doc
    data = doc.data if doc.data is not None else {}
    errors = schema.check(doc, kind, data)
    diags.extend(errors)
    if not isinstance(data, dict):
        return default
    if errors:
        data = _drop_bad(data, kind)
    try:
        built = build(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return default  # the schema errors above already say why
    for p in built.problems:
        diags.append(Diagnostic(Severity.ERROR, p.code, p.message, doc.pos(p.path)))
    return built.value


def _drop_bad(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """Remove what broke the schema, so everything else in the file still builds.

    The unit removed is one second-level entry (a channel, a user attribute, an event type,
    a field of a template or coupon stock) or one item of a top-level list: one typo must not
    take the rest of the file, and every rule that relies on it, down with it. Unknown keys
    stay: the builders ignore them and the schema has reported them."""
    cuts: set[tuple[Any, ...]] = set()
    for err in schema.validator(kind).iter_errors(data):
        if err.validator == "additionalProperties" or not err.absolute_path:
            continue
        path = tuple(err.absolute_path)
        cuts.add(path[:1] if len(path) == 1 or not isinstance(data.get(path[0]), (dict, list))
                 else path[:2])
    keep: dict[str, Any] = {}
    for key, value in data.items():
        if (key,) in cuts:
            continue
        gone = {c[1] for c in cuts if len(c) == 2 and c[0] == key}
        if gone and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in gone}
        elif gone and isinstance(value, list):
            value = [v for i, v in enumerate(value) if i not in gone]
        keep[key] = value
    return keep


def rule_files(root: Path, paths: Sequence[Path] = ()) -> list[Path]:
    targets = list(paths) or [root / "rules"]
    out: list[Path] = []
    for t in targets:
        if t.is_dir():
            out.extend(sorted(p for p in t.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file()))
        elif t.is_file():
            out.append(t)
        elif paths:
            raise CannotRun(f"no such file or directory: {display_path(t)}")
    return out


def load(project: str | os.PathLike[str] | None = None, paths: Sequence[str] = (),
         tests: bool = True) -> Loaded:
    """Read a project and every rule file (and, with `tests`, the rule test files); never
    raises for problems in the input."""
    chosen = [Path(p) for p in paths]
    if len(chosen) == 1 and chosen[0].is_dir() and (chosen[0] / "engine.yaml").is_file():
        project, chosen = chosen[0], []
    root = find_root(project)
    diags: list[Diagnostic] = []
    docs: dict[str, Document] = {}
    config: EngineConfig = _config_file(root, "engine.yaml", "engine", build_engine_config,
                                        EngineConfig(), diags, docs)
    model: DataModel = _config_file(root, "datamodel.yaml", "datamodel", build_datamodel,
                                    DataModel(), diags, docs)
    templates = _config_file(root, "templates.yaml", "templates", build_templates, {}, diags,
                             docs)
    coupons = _config_file(root, "coupons.yaml", "coupons", build_coupons, {}, diags, docs)
    files = len(docs)
    ctx = RuleContext(model, config, coupons, templates)
    loaded: list[LoadedRule] = []
    for path in rule_files(root, chosen):
        files += 1
        doc = read_document(path, diags, docs)
        if doc is None:
            continue
        docs[doc.path] = doc
        rules, problems = load_rules(doc, ctx)
        loaded.extend(rules)
        diags.extend(problems)
    seen: dict[str, LoadedRule] = {}
    for lr in loaded:
        first = seen.get(lr.rule.id)
        if first is not None:
            diags.append(Diagnostic(Severity.ERROR, "DUPLICATE_RULE_ID",
                                    f"rule id `{lr.rule.id}` is already used at "
                                    f"{first.rule.path}:{first.rule.line}",
                                    lr.doc.pos(lr.base + ("id",)),
                                    hint="rule ids must be unique across the project"))
        else:
            seen[lr.rule.id] = lr
    proj = Project(root, config, model, templates, coupons,
                   tuple(lr.rule for lr in seen.values()))
    if not chosen and tests:
        files += _check_rule_tests(root, proj, diags, docs)
    return Loaded(proj, list(seen.values()), docs, diags, files)


def rule_test_files(root: Path) -> list[Path]:
    """Rule tests: `tests/*.yaml` directly in the project's tests/ directory."""
    tests = root / "tests"
    if not tests.is_dir():
        return []
    return sorted(p for p in tests.iterdir() if p.suffix in RULE_SUFFIXES and p.is_file())


def _check_rule_tests(root: Path, project: Project, diags: list[Diagnostic],
                      docs: dict[str, Document]) -> int:
    from .ruletests.files import check_test_document

    paths = rule_test_files(root)
    for path in paths:
        doc = read_document(path, diags, docs)
        if doc is None:
            continue
        docs[doc.path] = doc
        diags.extend(check_test_document(doc, project))
    return len(paths)


def load_project(project: str | os.PathLike[str] | None = None) -> Project:
    """A valid project, or InputProblems listing every error (run `engine validate`)."""
    from .checks import check_loaded  # the static checks need the whole project

    loaded = load(project, tests=False)  # rule tests matter to `validate` and `test` only
    check_loaded(loaded)
    if loaded.errors:
        raise InputProblems(sorted(loaded.errors, key=Diagnostic.sort_key))
    return loaded.project
