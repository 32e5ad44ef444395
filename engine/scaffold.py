"""`engine init`: write a working example project (config, the example playbook, schemas)."""
from __future__ import annotations

import shutil
from pathlib import Path

from .errors import CannotRun
from .resources import PROJECT_FILES, example_project, schemas_dir

GITIGNORE = "engine.db\nengine.db-*\n*.rejects.jsonl\n"


def init_project(directory: str, force: bool = False) -> list[Path]:
    """Copy the example project into `directory`; returns the files written."""
    dest = Path(directory)
    if dest.exists() and not dest.is_dir():
        raise CannotRun(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise CannotRun(f"{dest} is not empty", hint="choose a new directory or pass --force")
    src = example_project()
    written: list[Path] = []
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name in PROJECT_FILES:
            shutil.copyfile(src / name, dest / name)
            written.append(dest / name)
        for sub, source in (("rules", src / "rules"), ("schemas", schemas_dir())):
            (dest / sub).mkdir(exist_ok=True)
            for f in sorted(source.iterdir()):
                if f.is_file() and f.suffix in (".yaml", ".yml", ".json"):
                    shutil.copyfile(f, dest / sub / f.name)
                    written.append(dest / sub / f.name)
        tests = src / "tests"
        if tests.is_dir() and list(tests.glob("*.yaml")):
            (dest / "tests").mkdir(exist_ok=True)
            for f in sorted(tests.glob("*.yaml")):
                shutil.copyfile(f, dest / "tests" / f.name)
                written.append(dest / "tests" / f.name)
        (dest / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        written.append(dest / ".gitignore")
    except OSError as exc:
        raise CannotRun(f"cannot write the project to {dest}: {exc.strerror}") from None
    return written
