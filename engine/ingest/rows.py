"""Checking one ingested row against the data model and turning it into its storage form.

Pure functions, no SQL. A `Spec` is a plain, picklable summary of the data model so that
worker processes can check rows in parallel. A bad row raises `Bad(code, field, message)`;
the caller records it as a reject and goes on with the next row.

Storage forms: money -> integer fen, timestamp -> integer microseconds since the epoch (UTC;
text without an offset is read in the project timezone), date -> "YYYY-MM-DD",
bool -> true/false, list -> JSON array; event props -> a JSON object with sorted keys.
"""
from __future__ import annotations

import difflib
import hashlib
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

import orjson

from ..config import DataModel

_ABSENT = object()
EVENT_KEYS = frozenset({"event_id", "user_id", "type", "ts", "amount", "props"})
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_SORT = orjson.OPT_SORT_KEYS


class Bad(Exception):
    """One row is bad: a stable code, the field at fault ("" for the whole row), a message."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message

    @property
    def reason(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True)
class FieldSpec:
    name: str
    base: str  # string number bool money timestamp date list
    item: str | None = None
    enum: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Spec:
    """What the checkers need from the project, in picklable form."""

    timezone: str
    user: tuple[FieldSpec, ...]
    events: tuple[tuple[str, int, tuple[FieldSpec, ...]], ...]  # (type, type_id, props)

    @staticmethod
    def build(datamodel: DataModel, timezone_name: str, type_ids: Mapping[str, int]) -> "Spec":
        def fs(name: str, f: Any) -> FieldSpec:
            return FieldSpec(name, f.type.base, f.type.item, f.enum)
        return Spec(timezone_name,
                    tuple(fs(n, f) for n, f in datamodel.user.items()),
                    tuple((n, type_ids[n], tuple(fs(p, f) for p, f in et.props.items()))
                          for n, et in datamodel.events.items()))


def _show(v: Any) -> str:
    text = orjson.dumps(v).decode() if not isinstance(v, str) else f'"{v}"'
    return text if len(text) <= 40 else text[:37] + "..."


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


# ---- scalar converters: (value, came_from_text) -> storage form; raise ValueError(message) ----
Conv = Callable[[Any, bool], Any]


def _string(v: Any, text: bool) -> Any:
    if type(v) is str:
        return v
    raise ValueError(f"expected a string, got {_show(v)}")


def _number(v: Any, text: bool) -> Any:
    t = type(v)
    if t is int:
        return v
    if t is float:
        if math.isfinite(v):
            return v
    elif t is str and text:
        try:
            return int(v)
        except ValueError:
            pass
        try:
            d = Decimal(v.strip())
        except InvalidOperation:
            d = Decimal("NaN")
        if d.is_finite():
            return int(d) if d == d.to_integral_value() else float(d)
    raise ValueError(f"expected a number, got {_show(v)}")


def _bool(v: Any, text: bool) -> Any:
    if v is True or v is False:
        return v
    if text and type(v) is str:
        low = v.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
    raise ValueError(f"expected true or false, got {_show(v)}")


def money_fen(v: Any, text: bool = False) -> int:
    """Yuan -> fen, exactly; more than 2 decimals is an error (so is a float like 0.125)."""
    t = type(v)
    if t is int:
        return int(v) * 100
    if t is float:
        s = repr(v)
        if "e" not in s and "n" not in s:  # plain decimal notation, not inf/nan/exponent
            dot = s.find(".")
            if dot < 0 or len(s) - dot - 1 <= 2:
                return round(v * 100)
            raise ValueError(f"{s} has more than 2 decimals; money is exact to the fen")
        v = s
    elif t is not str:
        raise ValueError(f"expected an amount of money in yuan, got {_show(v)}")
    try:
        d = Decimal(str(v).strip())
    except InvalidOperation:
        raise ValueError(f"expected an amount of money in yuan, got {_show(v)}") from None
    if not d.is_finite():
        raise ValueError(f"expected an amount of money in yuan, got {_show(v)}")
    fen = d * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"{v} has more than 2 decimals; money is exact to the fen")
    return int(fen)


def _date(v: Any, text: bool) -> Any:
    if type(v) is str and len(v) == 10:
        try:
            return date.fromisoformat(v).isoformat()
        except ValueError:
            pass
    raise ValueError(f"expected a date like 2026-11-20, got {_show(v)}")


_SECONDS = {f"{i:02d}": i * 1_000_000 for i in range(60)}
_MINUTE_CACHE_MAX = 200_000


def timestamp_converter(tz: Any) -> Conv:
    """ISO 8601 text -> microseconds since the epoch, exactly; naive text is read in `tz`.

    Parsing whole timestamps is the hot path of ingest, so the start of each minute (date,
    hour, minute and offset) is parsed once and cached; the seconds are looked up."""
    fromiso = datetime.fromisoformat
    minutes: dict[str, int] = {}

    def slow(v: str, shown: str) -> int:
        try:
            dt = fromiso(v)
        except ValueError:
            raise ValueError(f"{_show(shown)} is not a timestamp; write ISO 8601 like "
                             "2026-11-20T10:00:00+08:00") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=tz)
        return (dt - _EPOCH) // _US

    def conv(v: Any, text: bool) -> int:
        if type(v) is not str:
            raise ValueError(f"expected a timestamp string like 2026-11-20T10:00:00+08:00, "
                             f"got {_show(v)}")
        if len(v) >= 19 and v[16] == ":" and (len(v) == 19 or v[19] in "+-Z"):
            sec = _SECONDS.get(v[17:19])
            if sec is not None:
                key = v[:17] + v[19:]
                base = minutes.get(key)
                if base is None:
                    base = slow(v[:17] + "00" + v[19:], v)
                    if len(minutes) >= _MINUTE_CACHE_MAX:
                        minutes.clear()
                    minutes[key] = base
                return base + sec
        return slow(v, v)
    conv.minutes = minutes  # type: ignore[attr-defined]
    return conv


def _converter(f: FieldSpec, tz: Any) -> Conv:
    scalars: dict[str, Conv] = {"string": _string, "number": _number, "bool": _bool,
                                "money": money_fen, "date": _date,
                                "timestamp": timestamp_converter(tz)}
    if f.base != "list":
        base = scalars[f.base]
        if f.enum is None:
            return base
        allowed = frozenset(f.enum)
        listed = ", ".join(str(e) for e in f.enum)

        def enum_conv(v: Any, text: bool) -> Any:
            out = base(v, text)
            if out not in allowed:
                raise ValueError(f"{_show(v)} is not one of {listed}")
            return out
        return enum_conv
    item = _converter(FieldSpec(f.name, f.item or "string", None, f.enum), tz)

    def list_conv(v: Any, text: bool) -> Any:
        if text and type(v) is str:
            v = [p for p in v.split("|") if p != ""]
        elif type(v) is not list:
            raise ValueError(f"expected a list, got {_show(v)}")
        return [item(x, text) for x in v]
    return list_conv


class EventChecker:
    """Checks event rows (dicts from JSONL or CSV) and returns storage tuples."""

    def __init__(self, spec: Spec) -> None:
        tz = ZoneInfo(spec.timezone)
        self.ts = timestamp_converter(tz)
        self.types: dict[str, tuple[int, dict[str, Conv]]] = {
            name: (tid, {p.name: _converter(p, tz) for p in props})
            for name, tid, props in spec.events}
        self.type_names = [n for n, _, _ in spec.events]
        # string props without an enum: any string is valid and stored as it is
        self.plain = {name: frozenset(p.name for p in props
                                      if p.base == "string" and p.enum is None)
                      for name, _, props in spec.events}

    def check(self, obj: Any, text: bool = False) -> tuple[str, str, int, int, int | None,
                                                           str | None]:
        if type(obj) is not dict:
            raise Bad("NOT_AN_OBJECT", "", f"expected a JSON object, got {_show(obj)}")
        if not EVENT_KEYS.issuperset(obj):
            self._extra_keys(obj, text)
        uid = obj.get("user_id")
        if type(uid) is not str or not uid:
            uid = _user_id(uid)
        typ: Any = obj.get("type")
        known = self.types.get(typ) if type(typ) is str else None
        if known is None:
            if typ is None or typ == "":
                raise Bad("MISSING_FIELD", "type", "is missing")
            raise Bad("UNKNOWN_EVENT_TYPE", "type",
                      f"{_show(typ)} is not an event type declared in datamodel.yaml"
                      + _suggest(str(typ), self.type_names))
        type_id, convs = known
        raw_ts = obj.get("ts")
        if raw_ts is None or raw_ts == "":
            raise Bad("MISSING_FIELD", "ts", "is missing")
        try:
            ts = self.ts(raw_ts, text)
        except ValueError as exc:
            raise Bad("BAD_TIMESTAMP", "ts", str(exc)) from None
        amount = obj.get("amount")
        if amount is not None and amount != "":
            try:
                amount = money_fen(amount, text)
            except ValueError as exc:
                raise Bad("BAD_MONEY", "amount", str(exc)) from None
        else:
            amount = None
        props = obj.get("props")
        if text:
            props = self._text_props(obj, props)
        props_json: str | None = None
        if props:
            if type(props) is not dict:
                raise Bad("BAD_PROPS", "props", f"expected an object, got {_show(props)}")
            plain = self.plain[typ]
            for k, v in props.items():  # the common case: plain strings, stored as they are
                if type(v) is not str or k not in plain:
                    props = self._props(typ, convs, props, text)
                    break
            if props:
                props_json = orjson.dumps(props, option=_SORT).decode()
        eid = obj.get("event_id")
        if eid is None or eid == "":
            eid = "h:" + hashlib.blake2b(
                f"{uid}\x1f{typ}\x1f{ts}\x1f{amount}\x1f{props_json}".encode(),
                digest_size=16).hexdigest()
        elif type(eid) is not str:
            if type(eid) is int:
                eid = str(eid)
            else:
                raise Bad("BAD_EVENT_ID", "event_id", f"expected a string, got {_show(eid)}")
        return (eid, uid, type_id, ts, amount, props_json)

    @staticmethod
    def _props(typ: str, convs: dict[str, Conv], props: dict[str, Any],
               text: bool) -> dict[str, Any]:
        out = {}
        for k, v in props.items():
            conv = convs.get(k)
            if conv is None:
                raise Bad("UNKNOWN_PROP", f"props.{k}",
                          f"is not a property of `{typ}` in datamodel.yaml"
                          + _suggest(k, list(convs)))
            if v is None:
                continue
            try:
                out[k] = conv(v, text)
            except ValueError as exc:
                code = "NOT_IN_ENUM" if "is not one of" in str(exc) else "BAD_VALUE"
                raise Bad(code, f"props.{k}", str(exc)) from None
        return out

    def _extra_keys(self, obj: dict[str, Any], text: bool) -> None:
        for k in obj:
            if k in EVENT_KEYS or (text and isinstance(k, str) and k.startswith("props.")):
                continue
            if k is None:
                raise Bad("BAD_CSV_ROW", "", "the row has more cells than the header")
            raise Bad("UNKNOWN_FIELD", str(k), "is not a field of an event (event_id, user_id, "
                      "type, ts, amount, props)" + _suggest(str(k), sorted(EVENT_KEYS)))

    @staticmethod
    def _text_props(obj: dict[str, Any], props: Any) -> Any:
        """CSV: a `props` cell holds a JSON object; `props.NAME` columns hold single props."""
        out: dict[str, Any] = {}
        if props:
            try:
                props = orjson.loads(props)
            except orjson.JSONDecodeError:
                raise Bad("BAD_PROPS", "props", "the cell is not a JSON object") from None
            if type(props) is not dict:
                raise Bad("BAD_PROPS", "props", f"expected an object, got {_show(props)}")
            out.update(props)
        for k, v in obj.items():
            if k.startswith("props.") and v not in (None, ""):
                out[k[6:]] = v
        return out


def _user_id(uid: Any) -> str:
    if uid is None or uid == "":
        raise Bad("MISSING_FIELD", "user_id", "is missing")
    if type(uid) is int:
        return str(uid)
    raise Bad("BAD_USER_ID", "user_id", f"expected a non-empty string, got {_show(uid)}")


class UserChecker:
    """Checks user rows; returns (columns, (user_id, *values)) with values in storage form."""

    def __init__(self, spec: Spec) -> None:
        tz = ZoneInfo(spec.timezone)
        self.convs = {f.name: _converter(f, tz) for f in spec.user}
        self.fields = tuple((f.name, self.convs[f.name], f.base == "list") for f in spec.user)

    def check(self, obj: Any, text: bool = False) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        if type(obj) is not dict:
            raise Bad("NOT_AN_OBJECT", "", f"expected a JSON object, got {_show(obj)}")
        uid = obj.get("user_id")
        if type(uid) is not str or not uid:
            uid = _user_id(uid)
        names: list[str] = []
        values: list[Any] = [uid]
        seen = 1
        for k, conv, is_list in self.fields:  # in datamodel order: one column set per shape
            v = obj.get(k, _ABSENT)
            if v is _ABSENT:
                continue
            seen += 1
            if text and (v is None or v == ""):
                continue  # an empty CSV cell leaves the stored value alone
            if v is not None:
                try:
                    v = conv(v, text)
                except ValueError as exc:
                    code = "NOT_IN_ENUM" if "is not one of" in str(exc) else "BAD_VALUE"
                    raise Bad(code, k, str(exc)) from None
                if is_list:
                    v = orjson.dumps(v).decode()
            names.append(k)
            values.append(v)
        if seen != len(obj):
            self._unknown(obj)
        return tuple(names), tuple(values)

    def _unknown(self, obj: dict[Any, Any]) -> None:
        for k in obj:
            if k == "user_id" or k in self.convs:
                continue
            if k is None:
                raise Bad("BAD_CSV_ROW", "", "the row has more cells than the header")
            raise Bad("UNKNOWN_ATTRIBUTE", str(k),
                      "is not a user attribute declared in datamodel.yaml"
                      + _suggest(str(k), list(self.convs)))
        raise Bad("MISSING_FIELD", "user_id", "is missing")  # pragma: no cover


@lru_cache(maxsize=4)
def event_checker(spec: Spec) -> EventChecker:
    return EventChecker(spec)


@lru_cache(maxsize=4)
def user_checker(spec: Spec) -> UserChecker:
    return UserChecker(spec)
