"""The SQL dialect the store speaks: identifier quoting and how datamodel types are stored.

Only the store builds SQL. Names that come from the data model (attribute and property names)
reach SQL only through `ident()`, which accepts nothing but `[a-z_][a-z0-9_]*`; values always
travel as bound parameters. The condition-to-SQL compiler will sit behind this object, so a
PostgreSQL dialect can follow without touching the callers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import FieldType
from ..errors import CannotRun

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")

# How each datamodel type is stored in a column (see docs/data.md "Storage layout").
_COLUMN_TYPES = {
    "string": "TEXT",
    "number": "NUMERIC",    # integers stay integers; decimals are REAL
    "bool": "INTEGER",      # 0 / 1
    "money": "INTEGER",     # fen
    "timestamp": "INTEGER",  # microseconds since the epoch, UTC
    "date": "TEXT",         # YYYY-MM-DD
    "list": "TEXT",         # JSON array (and one row per item in the list-items table)
}


@dataclass(frozen=True)
class SqliteDialect:
    name: str = "sqlite"
    micros_per_day: int = 86_400_000_000

    def ident(self, name: str) -> str:
        """A double-quoted identifier; refuses anything that is not a plain lowercase name."""
        if not _IDENT.match(name):
            raise CannotRun(f"`{name}` cannot be used as a column name",
                            hint="names in datamodel.yaml must match [a-z_][a-z0-9_]*")
        return f'"{name}"'

    def column_type(self, ftype: FieldType) -> str:
        return _COLUMN_TYPES[ftype.base]

    def in_list(self, n: int) -> str:
        """Placeholders for `x IN (...)` with n bound values."""
        return "(" + ",".join("?" * n) + ")"


SQLITE = SqliteDialect()
