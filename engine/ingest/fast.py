"""The compiled fast path for event lines: one msgspec struct per declared event type.

`FastEvents.row(line)` decodes a JSONL line straight into the struct of its event type (a
tagged union on `type`), so msgspec checks in C that the keys are known, `user_id`/`ts`/
`event_id` are strings, the props are the type's declared props with the declared JSON types
and string enums hold listed values. Python then only turns the timestamp and money into
their storage form and serialises the props. Every line it cannot take as it is raises (any
exception): the caller then checks that line with `EventChecker.check`, which accepts or
rejects it with a reason. So the fast path never decides that a row is bad, and for every row
it accepts it returns exactly the tuple `check` would (tests compare the two).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any, Callable, Literal, Union

import msgspec
import orjson

from ..store.db import EventRow
from .rows import _SECONDS, Bad, Conv, EventChecker, FieldSpec, Spec, event_checker, \
    money_fen

_SORT = orjson.OPT_SORT_KEYS
_EMPTY = b"{}"


def _native(f: FieldSpec) -> Any:
    """The msgspec type checking `f` entirely in C, or None when Python must convert it."""
    if f.base == "string":
        if f.enum is None:
            return str
        if all(type(e) is str for e in f.enum):
            return Literal[tuple(f.enum)]
        return None
    if f.base == "bool" and f.enum is None:
        return bool
    return None  # numbers (range and finiteness), money, timestamps, dates, lists


class _Type:
    """What the fast path knows about one event type."""

    __slots__ = ("name", "type_id", "props")

    def __init__(self, name: str, type_id: int, props: Callable[[Any], str | None]) -> None:
        self.name, self.type_id, self.props = name, type_id, props


def _props_writer(fields: list[FieldSpec], convs: dict[str, Conv]) -> Callable[[Any], str | None]:
    """Props struct -> stored JSON (sorted keys; None when empty), as `EventChecker` writes it."""
    encode = msgspec.json.encode
    attrs = [(f"f{i}", f.name, None if _native(f) is not None else convs[f.name])
             for i, f in enumerate(fields)]
    if all(conv is None for _, _, conv in attrs):
        def native(p: Any) -> str | None:
            if p is None:
                return None
            out = encode(p)  # fields are declared in sorted order; absent/null ones omitted
            return None if out == _EMPTY else out.decode()
        return native
    dumps = orjson.dumps

    def converted(p: Any) -> str | None:
        if p is None:
            return None
        out: dict[str, Any] = {}
        for attr, name, conv in attrs:
            v = getattr(p, attr)
            if v is not None:
                out[name] = v if conv is None else conv(v, False)
        return dumps(out, option=_SORT).decode() if out else None
    return converted


class FastEvents:
    def __init__(self, spec: Spec, checker: EventChecker) -> None:
        classes: list[Any] = []
        self.types: dict[Any, _Type] = {}
        for name, type_id, props in spec.events:
            fields = sorted(props, key=lambda f: f.name)
            props_struct = msgspec.defstruct(
                f"Props_{type_id}",
                [(f"f{i}", (_native(f) or Any) | None, None)
                 for i, f in enumerate(fields)],
                rename={f"f{i}": f.name for i, f in enumerate(fields)},
                forbid_unknown_fields=True, omit_defaults=True, gc=False)
            event_struct = msgspec.defstruct(
                f"Event_{type_id}",
                [("user_id", str), ("ts", str), ("event_id", Union[str, None], None),
                 ("amount", Union[int, float, str, None], None),
                 ("props", Union[props_struct, None], None)],
                tag_field="type", tag=name, forbid_unknown_fields=True, gc=False)
            classes.append(event_struct)
            self.types[event_struct] = _Type(name, type_id,
                                             _props_writer(fields, checker.types[name][1]))
        self.decode = msgspec.json.Decoder(Union[tuple(classes)]).decode
        self.row = self._row_function(checker)

    def _row_function(self, checker: EventChecker) -> Callable[[bytes], EventRow]:
        """`row(line)`: the storage tuple of one line; raises (anything) when `check` must look
        at it. A closure over locals: this runs once per event."""
        decode, types, conv, blake2b = self.decode, self.types, checker.ts, hashlib.blake2b
        minutes: dict[str, int] = conv.minutes  # type: ignore[attr-defined]
        seconds = _SECONDS.get

        def row(raw: bytes) -> EventRow:
            ev = decode(raw)
            t = types[ev.__class__]
            uid = ev.user_id
            if not uid:
                raise ValueError("empty user_id")
            v = ev.ts  # the start of its minute parsed before: only the seconds to add
            sec = seconds(v[17:19])
            base = minutes.get(v[:17] + v[19:])
            ts = base + sec if base is not None and sec is not None else conv(v, False)
            amount = ev.amount
            if amount is not None:
                amount = None if amount == "" else money_fen(amount)
            props = t.props(ev.props)
            eid = ev.event_id
            if not eid:
                eid = "h:" + blake2b(f"{uid}\x1f{t.name}\x1f{ts}\x1f{amount}\x1f{props}".encode(),
                                     digest_size=16).hexdigest()
            return (eid, uid, t.type_id, ts, amount, props)
        return row


def check_lines(checker: EventChecker, fast: FastEvents, lines: list[bytes], first_line: int,
                rows: list[Any], rejects: list[tuple[int, str, str, str, Any]]) -> int:
    """Check JSONL event lines into `rows` and `rejects`; returns the rows read (blank lines
    are not rows). The hot loop of ingest: `fast.row`, else `checker.check` for the line."""
    loads, JSONError, check, row = orjson.loads, orjson.JSONDecodeError, checker.check, fast.row
    append = rows.append
    n = first_line - 1
    read = 0
    for raw in lines:
        n += 1
        if not raw:
            continue
        try:
            append(row(raw))
            read += 1
            continue
        except Exception:  # noqa: BLE001 - anything unusual is for `check` to judge
            pass
        if not raw.strip():
            continue
        read += 1
        try:
            obj = loads(raw)
        except JSONError as exc:
            rejects.append((n, "BAD_JSON", "", f"the line is not valid JSON ({exc})",
                            raw.decode("utf-8", "replace").rstrip("\r")))
            continue
        try:
            append(check(obj))
        except Bad as bad:
            rejects.append((n, bad.code, bad.field, bad.reason, obj))
    return read


@lru_cache(maxsize=4)
def fast_events(spec: Spec) -> FastEvents:
    return FastEvents(spec, event_checker(spec))
