"""One user's facts for the Python evaluator (`engine.lang.to_python`): point queries.

Attributes and event properties are converted from their storage form to the evaluation
form shared with the SQL compiler (`engine.lang.values`): dates become day numbers, bools
become bools, lists become tuples (an absent list is the empty list).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Mapping, Sequence

import orjson

from ..config import DataModel, FieldType
from ..lang.to_python import EventRow
from ..lang.values import date_to_days
from .dialect import SQLITE

RFM_COLUMNS = ("recency_days", "frequency", "monetary", "r", "f", "m", "segment")


def _convert(value: Any, ftype: FieldType | None) -> Any:
    if ftype is None:
        return value
    if ftype.base == "list":
        items = orjson.loads(value) if isinstance(value, (str, bytes)) else (value or [])
        return tuple(_convert(v, FieldType(ftype.item or "string")) for v in items)
    if value is None:
        return None
    if ftype.base == "date" and isinstance(value, str):
        return date_to_days(date.fromisoformat(value))
    if ftype.base == "bool":
        return bool(value)
    return value


@dataclass
class StoredFacts:
    user_id: str
    attrs: Mapping[str, Any]
    rfm: Mapping[str, Any]
    by_type: dict[str, list[EventRow]] = field(default_factory=dict)
    # lazy facts (lazy_facts): loads the user's events of one type (a name), or of every type
    # (None); None once by_type holds every type
    loader: Callable[[str | None], dict[str, list[EventRow]]] | None = None

    def events(self, event_type: str) -> Sequence[EventRow]:
        rows = self.by_type.get(event_type)
        if rows is None:
            if self.loader is None:
                return []
            rows = self.by_type[event_type] = self.loader(event_type).get(event_type, [])
        return rows

    def complete(self) -> None:
        """Read every event type not read yet (lazy facts)."""
        if self.loader is not None:
            self.by_type, self.loader = self.loader(None), None

    def activity_bounds(self, before: int) -> tuple[int | None, int | None]:
        self.complete()  # every type is needed
        first = last = None
        for rows in self.by_type.values():
            for e in rows:
                if e.ts >= before:
                    break
                if first is None or e.ts < first:
                    first = e.ts
                if last is None or e.ts > last:
                    last = e.ts
        return first, last


def load_facts(conn: Any, model: DataModel, user_id: str,
               rfm_table: str | None = None) -> StoredFacts:
    """Everything the evaluator may ask about `user_id` (attributes, events, RFM row)."""
    facts = lazy_facts(conn, model, user_id, rfm_table)
    facts.complete()
    return facts


def lazy_facts(conn: Any, model: DataModel, user_id: str,
               rfm_table: str | None = None) -> StoredFacts:
    """The same facts, with the events read per type when the evaluator first asks for that
    type (a rule that reads one event type, or none, does not read the user's whole history);
    `lifecycle` (activity_bounds) reads them all."""
    cur = conn.execute("SELECT * FROM users WHERE user_id = ?", (user_id,))
    row = cur.fetchone()
    stored = {d[0]: v for d, v in zip(cur.description, row)} if row else {}
    attrs = {}
    for name, f in model.user.items():
        attrs[name] = _convert(stored.get(name), f.type)
    rfm: dict[str, Any] = {}
    if rfm_table is not None:
        cols = ", ".join(SQLITE.ident(c) for c in RFM_COLUMNS)
        r = conn.execute(f"SELECT {cols} FROM {rfm_table} WHERE user_id = ?", (user_id,)).fetchone()
        if r is not None:
            rfm = dict(zip(RFM_COLUMNS, r))
    return StoredFacts(user_id, attrs, rfm, {},
                       lambda event_type: _events(conn, model, user_id, event_type))


def _events(conn: Any, model: DataModel, user_id: str,
            event_type: str | None) -> dict[str, list[EventRow]]:
    """The user's events of one type (None: of every type), by type, oldest first."""
    if event_type is None:
        sql = ("SELECT e.event_id, e.user_id, t.name, e.ts, e.amount_fen, e.props FROM events e "
               "JOIN event_types t ON t.type_id = e.type_id WHERE e.user_id = ?1 "
               "ORDER BY e.ts, e.event_id")
        params: tuple[Any, ...] = (user_id,)
    else:
        # the (type_id, user_id, ts) index: only this type's rows are read (`+e.ts` keeps the
        # planner from scanning every event of the type in ts order instead)
        sql = ("SELECT e.event_id, e.user_id, ?2, e.ts, e.amount_fen, e.props FROM events e "
               "WHERE e.type_id = (SELECT type_id FROM event_types WHERE name = ?2) "
               "AND e.user_id = ?1 ORDER BY +e.ts, e.event_id")
        params = (user_id, event_type)
    by_type: dict[str, list[EventRow]] = {}
    for event_id, uid, type_name, ts, amount, props in conn.execute(sql, params):
        etype = model.events.get(type_name)
        decoded = orjson.loads(props) if props else {}
        if etype is not None:
            decoded = {k: _convert(v, etype.props[k].type if k in etype.props else None)
                       for k, v in decoded.items()}
        by_type.setdefault(type_name, []).append(
            EventRow(ts, amount, decoded, event_id, uid, type_name))
    return by_type
