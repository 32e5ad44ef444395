"""Where the engine's own data files live: JSON Schemas and the example project.

In a wheel they are packed under `engine/_data/`; in a source checkout (editable install)
they are the repository's own top-level `schemas/`, `rules/` and project files, so the
example playbook has exactly one copy.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

PROJECT_FILES = ("engine.yaml", "datamodel.yaml", "templates.yaml", "coupons.yaml")


@lru_cache(maxsize=None)
def data_dir() -> Path:
    packed = Path(__file__).parent / "_data"
    if (packed / "schemas").is_dir():
        return packed
    return Path(__file__).resolve().parent.parent


def schemas_dir() -> Path:
    return data_dir() / "schemas"


def example_project() -> Path:
    """A directory holding the example project's files and `rules/`."""
    return data_dir()
