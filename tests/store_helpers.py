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
