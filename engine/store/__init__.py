"""The store: the only part of the engine that knows table names and SQL.

    from engine.store import open_project_store
    with open_project_store(project, db_override) as store:
        ...

See docs/data.md ("Storage layout") for the tables.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .db import EventRow, Store, open_store, resolve_db_path
from .dialect import SQLITE, SqliteDialect

if TYPE_CHECKING:
    from ..project import Project

__all__ = ["EventRow", "SQLITE", "SqliteDialect", "Store", "open_project_store", "open_store",
           "resolve_db_path"]


def open_project_store(project: "Project", db: str | None = None, *,
                       create: bool = True) -> Store:
    """The database of a loaded project (or `--db` / ENGINE_DB when given)."""
    path = resolve_db_path(project.root, project.config.database, db)
    return open_store(path, project.datamodel, create=create)
