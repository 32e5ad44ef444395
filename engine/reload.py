"""Noticing that a project changed on disk, and loading a new version all-or-nothing.

`fingerprint` is cheap (names, sizes and modification times of every file `project.load`
reads) and is polled; `digest` hashes the contents, so touching a file without changing it
does not reload. `load_checked` runs exactly what `engine validate` runs; the caller swaps the
new project in only when it has no errors.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import Diagnostic
from .project import Project, load, rule_files, rule_test_files

CONFIG_FILES = ("engine.yaml", "datamodel.yaml", "templates.yaml", "coupons.yaml")
Fingerprint = tuple[tuple[str, int, int], ...]


def project_files(root: Path) -> list[Path]:
    files = [root / n for n in CONFIG_FILES if (root / n).is_file()]
    return files + rule_files(root) + rule_test_files(root)


def fingerprint(root: Path) -> Fingerprint:
    out = []
    for path in project_files(root):
        try:
            st = path.stat()
        except OSError:
            continue  # deleted between the listing and the stat: the next poll sees it
        out.append((str(path.relative_to(root)), st.st_size, st.st_mtime_ns))
    return tuple(out)


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in project_files(root):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        h.update(str(path.relative_to(root)).encode() + b"\0" + data + b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Checked:
    project: Project
    errors: tuple[Diagnostic, ...]
    warnings: int


def load_checked(root: str | os.PathLike[str]) -> Checked:
    """Load and statically check the whole project, as `engine validate` does."""
    from .checks import check_loaded

    loaded = load(root)
    check_loaded(loaded)
    errors = tuple(sorted(loaded.errors, key=Diagnostic.sort_key))
    return Checked(loaded.project, errors, len(loaded.diagnostics) - len(errors))
