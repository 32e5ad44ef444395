"""Helpers for the store, ingest, RFM and generate tests: a real project in a temp directory."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from engine.dataproject import load_data_project
from engine.ingest import IngestResult, ingest
from engine.project import Project
from engine.scaffold import init_project
from engine.store import Store, open_project_store

T0 = "2026-11-20T10:00:00+08:00"


def make_project(root: Path, *, timezone: str | None = None,
                 datamodel: str | None = None) -> Project:
    """The example project in `root` (optionally with another timezone or data model)."""
    init_project(str(root), force=True)
    if timezone is not None:
        cfg = root / "engine.yaml"
        cfg.write_text(cfg.read_text(encoding="utf-8").replace(
            "timezone: Asia/Shanghai", f"timezone: {timezone}"), encoding="utf-8")
    if datamodel is not None:
        (root / "datamodel.yaml").write_text(datamodel, encoding="utf-8")
    return load_data_project(root)


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def run_ingest(project: Project, kind: str, *files: Path, rejects: Path | None = None,
               workers: int = 0) -> IngestResult:
    return ingest(project, kind, [str(f) for f in files],
                  rejects=str(rejects) if rejects else None, workers=workers)


def store_of(project: Project) -> Store:
    return open_project_store(project)


def read_rejects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_cli(args: list[str], input: str | None = None) -> tuple[int, str]:
    """Run `engine ARGS` in-process through the real error boundary (`cli.main`); returns the
    exit code and stdout and stderr together."""
    import cli
    from click.testing import CliRunner

    with CliRunner().isolation(input=input) as (_, _, output):
        try:
            cli.main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        text = output.getvalue().decode("utf-8", "replace")
    return code, text


# -- a real project (the example config) with its own rules, and data loaded into it ---------

def make_rule_project(tmp: "Path", rules: "dict[str, str]", coupons: str = "") -> "Path":
    """The example project's config files and schemas in `tmp`, with only the given rules
    (file stem -> YAML text) and, optionally, replacement coupons.yaml text."""
    import shutil

    from engine.resources import PROJECT_FILES, example_project, schemas_dir

    for name in PROJECT_FILES:
        shutil.copyfile(example_project() / name, tmp / name)
    if coupons:
        (tmp / "coupons.yaml").write_text(coupons, encoding="utf-8")
    shutil.copytree(schemas_dir(), tmp / "schemas")
    (tmp / "rules").mkdir()
    for name, text in rules.items():
        (tmp / "rules" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return tmp


def load_rows(tmp: "Path", users: "list[dict[str, Any]]",
              events: "list[tuple[Any, ...]]") -> "tuple[Any, Any]":
    """Load the project in `tmp` and write users (dicts) and events
    (user, type, aware datetime, amount fen, props) into its database."""
    import json

    from engine.project import load_project
    from engine.store import open_project_store
    from engine.timeutil import to_micros

    proj = load_project(tmp)
    store = open_project_store(proj)
    cols = sorted({k for u in users for k in u if k != "user_id"})
    with store.transaction():
        store.upsert_users(tuple(cols), [tuple([u["user_id"]] + [u.get(c) for c in cols])
                                         for u in users])
        store.insert_events([(f"e{i}", uid, store.type_ids[typ], to_micros(ts), amount,
                              json.dumps(props) if props else None)
                             for i, (uid, typ, ts, amount, props) in enumerate(events)])
    return proj, store
