"""The project as the data commands (ingest, rfm) need it: engine.yaml and datamodel.yaml.

Data can be loaded and RFM computed while a rule file is being fixed: only problems in the two
files these commands depend on stop them (exit 2, could not run), listed as diagnostics.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import InputProblems
from .project import Project, load

DATA_FILES = ("engine.yaml", "datamodel.yaml")


class ConfigProblems(InputProblems):
    """engine.yaml or datamodel.yaml is invalid, so a data command cannot run."""

    code = "CONFIG"
    exit_code = 2


def load_data_project(project: str | os.PathLike[str] | None = None) -> Project:
    loaded = load(project)
    root = loaded.project.root.resolve()
    mine = {(root / name) for name in DATA_FILES}
    errors = [d for d in loaded.errors if Path(d.pos.path).resolve() in mine]
    if errors:
        raise ConfigProblems(errors)
    return loaded.project
