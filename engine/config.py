"""The project's configuration files as frozen dataclasses.

`engine.yaml`, `datamodel.yaml`, `templates.yaml` and `coupons.yaml` are first checked against
their JSON Schemas (see `engine.schema`); the builders here turn the checked data into typed
values. Money becomes integer fen, durations `timedelta`, clock times `time`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field as dc_field
from datetime import time, timedelta
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .durations import BadLiteral, parse_clock, parse_duration

SCALAR_TYPES = ("string", "number", "bool", "money", "timestamp", "date")
_TYPE_RE = re.compile(r"^(?:(string|number|bool|money|timestamp|date)|list<(string|number|bool|money|timestamp|date)>)$")

CHANNEL_KINDS = ("console", "webhook", "wechat_subscribe", "wechat_coupon", "sms", "wecom")
MESSAGE_CHANNEL_KINDS = ("console", "webhook", "wechat_subscribe", "sms", "wecom")
COUPON_KINDS = ("cash", "discount", "exchange", "red_packet")
EMPTY: Mapping[str, Any] = MappingProxyType({})


def money_to_fen(value: object) -> int:
    """Yuan (int, Decimal or numeric string) -> integer fen; more than 2 decimals is an error."""
    if isinstance(value, bool) or isinstance(value, float):
        value = str(value) if isinstance(value, float) else value
        if isinstance(value, bool):
            raise BadLiteral(f"`{value}` is not an amount of money")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise BadLiteral(f"`{value}` is not an amount of money") from None
    if not d.is_finite():
        raise BadLiteral(f"`{value}` is not an amount of money")
    fen = d * 100
    if fen != fen.to_integral_value():
        raise BadLiteral(f"`{value}` has more than 2 decimals; money is exact to the fen")
    return int(fen)


def fen_to_yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


@dataclass(frozen=True)
class FieldType:
    base: str  # one of SCALAR_TYPES or "list"
    item: str | None = None

    @staticmethod
    def parse(text: str) -> "FieldType":
        m = _TYPE_RE.match(text.replace(" ", ""))
        if not m:
            raise BadLiteral(f"`{text}` is not a type; use one of {', '.join(SCALAR_TYPES)} "
                             "or list<T>")
        return FieldType(m.group(1)) if m.group(1) else FieldType("list", m.group(2))

    def __str__(self) -> str:
        return f"list<{self.item}>" if self.base == "list" else self.base


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    enum: tuple[Any, ...] | None = None
    pii: bool = False
    description: str = ""


STANDARD_EVENT_FIELDS: Mapping[str, Field] = MappingProxyType({
    "event_id": Field("event_id", FieldType("string")),
    "user_id": Field("user_id", FieldType("string")),
    "ts": Field("ts", FieldType("timestamp")),
    "amount": Field("amount", FieldType("money")),
})


@dataclass(frozen=True)
class EventType:
    name: str
    props: Mapping[str, Field] = dc_field(default_factory=lambda: EMPTY)
    social: bool = False
    recipient_action: bool = False  # records the share recipient's real participation
    description: str = ""

    def field(self, name: str) -> Field | None:
        return self.props.get(name) or STANDARD_EVENT_FIELDS.get(name)

    def field_names(self) -> list[str]:
        return list(STANDARD_EVENT_FIELDS) + [p for p in self.props if p not in STANDARD_EVENT_FIELDS]


@dataclass(frozen=True)
class DataModel:
    user: Mapping[str, Field] = dc_field(default_factory=lambda: EMPTY)
    events: Mapping[str, EventType] = dc_field(default_factory=lambda: EMPTY)

    def pii_fields(self) -> frozenset[str]:
        return frozenset(n for n, f in self.user.items() if f.pii)


@dataclass(frozen=True)
class Template:
    name: str
    id: str
    kind: str  # one_time | long_term
    keywords: Mapping[str, str]  # data key -> WeChat keyword type
    title: str = ""


@dataclass(frozen=True)
class CouponStock:
    name: str  # the key in coupons.yaml, e.g. WINBACK10
    title: str  # the `name:` shown to users
    kind: str
    value_fen: int
    minimum_fen: int = 0
    valid_for: timedelta = timedelta(days=7)
    max_count: int | None = None
    max_amount_fen: int | None = None
    wechat_stock_id: str = ""


@dataclass(frozen=True)
class Cap:
    max: int
    per: timedelta
    category: str | None = None
    channel: str | None = None


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time


@dataclass(frozen=True)
class Policy:
    caps: tuple[Cap, ...] = ()
    quiet_hours: QuietHours | None = None


@dataclass(frozen=True)
class Channel:
    name: str
    kind: str
    options: Mapping[str, Any] = dc_field(default_factory=lambda: EMPTY)


@dataclass(frozen=True)
class Lifecycle:
    new_within: timedelta = timedelta(days=7)
    active_within: timedelta = timedelta(days=7)
    sleeping_within: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class EngineConfig:
    timezone: str = "Asia/Shanghai"
    database: str = "engine.db"
    purchase_event: str = "order_paid"
    schedule_grace: timedelta = timedelta(minutes=5)
    policy: Policy = Policy()
    channels: Mapping[str, Channel] = dc_field(default_factory=lambda: EMPTY)
    phrases: Mapping[str, tuple[str, ...]] = dc_field(default_factory=lambda: EMPTY)  # extra compliance phrases by list name
    lifecycle: Lifecycle = Lifecycle()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Problem:
    """A value that passed the schema but not the builder: where (data path) and why."""

    path: tuple[Any, ...]
    code: str
    message: str


@dataclass
class Built:
    """The result of building one config file: a value plus any problems found."""

    value: Any
    problems: list[Problem] = dc_field(default_factory=list)


def _duration(raw: Any, path: tuple[Any, ...], problems: list[Problem],
              default: timedelta) -> timedelta:
    if raw is None:
        return default
    try:
        return parse_duration(raw)
    except BadLiteral as exc:
        problems.append(Problem(path, "BAD_DURATION", str(exc)))
        return default


def build_engine_config(data: Mapping[str, Any]) -> Built:
    problems: list[Problem] = []
    tz = str(data.get("timezone", "Asia/Shanghai"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(Problem(("timezone",), "BAD_TIMEZONE",
                                f"unknown timezone `{tz}`; use an IANA name such as Asia/Shanghai"))
        tz = "Asia/Shanghai"
    policy_raw = data.get("policy") or {}
    caps = []
    for i, c in enumerate(policy_raw.get("caps") or []):
        per = _duration(c.get("per"), ("policy", "caps", i, "per"), problems, timedelta(days=7))
        caps.append(Cap(max=int(c["max"]), per=per, category=c.get("category"),
                        channel=c.get("channel")))
    quiet = None
    qh = policy_raw.get("quiet_hours")
    if qh:
        try:
            quiet = QuietHours(parse_clock(qh["start"]), parse_clock(qh["end"]))
        except BadLiteral as exc:
            key = "start"
            try:
                parse_clock(qh["start"])
                key = "end"
            except BadLiteral:
                pass
            problems.append(Problem(("policy", "quiet_hours", key), "BAD_TIME", str(exc)))
    channels = {}
    for name, opts in (data.get("channels") or {}).items():
        opts = dict(opts or {})
        kind = str(opts.pop("type", name))
        channels[name] = Channel(name, kind, MappingProxyType(opts))
        if kind not in CHANNEL_KINDS:
            problems.append(Problem(("channels", name), "UNKNOWN_CHANNEL_TYPE",
                                    f"channel `{name}` has unknown type `{kind}`; set `type:` to "
                                    f"one of {', '.join(CHANNEL_KINDS)}"))
    phrases = {k: tuple(str(p) for p in v)
               for k, v in ((data.get("compliance") or {}).get("phrases") or {}).items()}
    lc = data.get("lifecycle") or {}
    lifecycle = Lifecycle(
        _duration(lc.get("new_within"), ("lifecycle", "new_within"), problems, timedelta(days=7)),
        _duration(lc.get("active_within"), ("lifecycle", "active_within"), problems,
                  timedelta(days=7)),
        _duration(lc.get("sleeping_within"), ("lifecycle", "sleeping_within"), problems,
                  timedelta(days=30)))
    cfg = EngineConfig(
        timezone=tz,
        database=str(data.get("database", "engine.db")),
        purchase_event=str(data.get("purchase_event", "order_paid")),
        schedule_grace=_duration(data.get("schedule_grace"), ("schedule_grace",), problems,
                                 timedelta(minutes=5)),
        policy=Policy(tuple(caps), quiet),
        channels=MappingProxyType(channels),
        phrases=MappingProxyType(phrases),
        lifecycle=lifecycle,
    )
    return Built(cfg, problems)


def _field(name: str, raw: Mapping[str, Any], path: tuple[Any, ...],
           problems: list[Problem]) -> Field:
    try:
        ftype = FieldType.parse(str(raw.get("type", "string")))
    except BadLiteral as exc:
        problems.append(Problem(path + ("type",), "BAD_TYPE", str(exc)))
        ftype = FieldType("string")
    enum = raw.get("enum")
    return Field(name, ftype, tuple(enum) if enum is not None else None,
                 bool(raw.get("pii", False)), str(raw.get("description", "")))


def build_datamodel(data: Mapping[str, Any]) -> Built:
    problems: list[Problem] = []
    user = {}
    for name, raw in (data.get("user") or {}).items():
        if name == "user_id":
            problems.append(Problem(("user", name), "RESERVED_NAME",
                                    "`user_id` is implicit; do not declare it"))
            continue
        user[name] = _field(name, raw or {}, ("user", name), problems)
    events = {}
    for name, raw in (data.get("events") or {}).items():
        raw = raw or {}
        props = {}
        for pname, praw in (raw.get("props") or {}).items():
            if pname in STANDARD_EVENT_FIELDS:
                problems.append(Problem(("events", name, "props", pname), "RESERVED_NAME",
                                        f"`{pname}` is a standard field of every event; "
                                        "do not declare it"))
                continue
            props[pname] = _field(pname, praw or {}, ("events", name, "props", pname), problems)
        events[name] = EventType(name, MappingProxyType(props), bool(raw.get("social", False)),
                                 bool(raw.get("recipient_action", False)),
                                 str(raw.get("description", "")))
    return Built(DataModel(MappingProxyType(user), MappingProxyType(events)), problems)


def build_templates(data: Mapping[str, Any]) -> Built:
    out = {}
    for name, raw in (data or {}).items():
        out[name] = Template(name, str(raw["id"]), str(raw.get("kind", "one_time")),
                             MappingProxyType(dict(raw.get("keywords") or {})),
                             str(raw.get("title", "")))
    return Built(MappingProxyType(out))


def build_coupons(data: Mapping[str, Any]) -> Built:
    problems: list[Problem] = []
    out = {}
    for name, raw in (data or {}).items():
        def fen(key: str, default: int | None = 0) -> int | None:
            if raw.get(key) is None:
                return default
            try:
                return money_to_fen(raw[key])
            except BadLiteral as exc:
                problems.append(Problem((name, key), "BAD_MONEY", str(exc)))
                return default
        budget = raw.get("budget") or {}
        max_amount = None
        if budget.get("max_amount") is not None:
            try:
                max_amount = money_to_fen(budget["max_amount"])
            except BadLiteral as exc:
                problems.append(Problem((name, "budget", "max_amount"), "BAD_MONEY", str(exc)))
        out[name] = CouponStock(
            name=name, title=str(raw.get("name", name)), kind=str(raw.get("kind", "cash")),
            value_fen=fen("value") or 0, minimum_fen=fen("minimum") or 0,
            valid_for=_duration(raw.get("valid_for"), (name, "valid_for"), problems,
                                timedelta(days=7)),
            max_count=budget.get("max_count"), max_amount_fen=max_amount,
            wechat_stock_id=str(raw.get("wechat_stock_id", "")))
    return Built(MappingProxyType(out), problems)
