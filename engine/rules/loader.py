"""Rule files -> `Rule` values, with every problem reported at its line and column.

A rule file holds one rule (a mapping) or several (a list). Each rule is checked against the
JSON Schema, then built part by part: a problem in one part (an unknown key, a bad cron, a
type error in the audience) is reported and the rest of the rule is still checked, so one
run shows everything that is wrong.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Mapping

from .. import cron as cronlib
from .. import schema
from ..config import CouponStock, DataModel, EngineConfig, Template
from ..durations import BadLiteral, parse_duration, parse_percent
from ..errors import ConditionError, Diagnostic, Severity
from ..lang.checker import Scope, check_all, suggest
from ..yaml12 import Document, PathKey
from .model import (TRIGGER_KINDS, Action, Allow, Condition, CouponAction, Experiment, Goal,
                    Limit, MessageAction, PointsAction, Rule, TagAction, Trigger, Variant,
                    WebhookAction)

_TRIGGER_MODIFIERS = {"where": "event", "wait": "event", "before": "date", "after": "date",
                      "annual": "date"}


@dataclass
class LoadedRule:
    """A rule plus where it came from, for checks that report positions."""

    rule: Rule
    doc: Document
    base: PathKey


@dataclass
class RuleContext:
    model: DataModel
    config: EngineConfig
    coupons: Mapping[str, CouponStock] = field(default_factory=dict)
    templates: Mapping[str, Template] = field(default_factory=dict)


@dataclass
class _Builder:
    doc: Document
    base: PathKey
    ctx: RuleContext
    diags: list[Diagnostic] = field(default_factory=list)

    def err(self, code: str, message: str, at: PathKey, hint: str = "", key: bool = False,
            severity: Severity = Severity.ERROR) -> None:
        self.diags.append(Diagnostic(severity, code, message,
                                     self.doc.pos(self.base + at, key=key), hint=hint))

    def duration(self, raw: Any, at: PathKey) -> timedelta | None:
        if raw is None:
            return None
        try:
            return parse_duration(str(raw))
        except BadLiteral as exc:
            self.err("BAD_DURATION", str(exc), at)
            return None

    def condition(self, raw: Any, at: PathKey, scope: Scope) -> Condition | None:
        if not isinstance(raw, str) or not raw.strip():
            return None
        node, errors = check_all(raw, scope)
        for e in errors:
            self.diags.append(self.cond_diag(e, raw, at))
        return Condition(raw.strip(), node) if node is not None else None

    def cond_diag(self, e: ConditionError, text: str, at: PathKey) -> Diagnostic:
        probe = text[e.offset:e.offset + e.length]
        pos = self.doc.locate(self.base + at, e.offset, probe)
        return Diagnostic(Severity.ERROR, e.code, e.message, pos, hint=e.hint, length=e.length)


def rule_entries(doc: Document) -> list[tuple[Any, PathKey]]:
    if isinstance(doc.data, list):
        return [(item, (i,)) for i, item in enumerate(doc.data)]
    return [(doc.data, ())]


def load_rules(doc: Document, ctx: RuleContext) -> tuple[list[LoadedRule], list[Diagnostic]]:
    """Build every rule in one parsed file."""
    out: list[LoadedRule] = []
    diags: list[Diagnostic] = []
    if doc.data is None:
        diags.append(Diagnostic(Severity.WARNING, "EMPTY_FILE", "rule file is empty",
                                doc.pos(())))
        return out, diags
    if not isinstance(doc.data, (dict, list)):
        diags.append(Diagnostic(Severity.ERROR, "SCHEMA_TYPE", "a rule file holds a rule (a "
                                "mapping) or a list of rules", doc.pos(())))
        return out, diags
    for raw, base in rule_entries(doc):
        diags.extend(schema.check(doc, "rule", raw, base, pointer="/$defs/rule"))
        if not isinstance(raw, dict):
            continue
        b = _Builder(doc, base, ctx)
        rule = build_rule(raw, b)
        diags.extend(b.diags)
        if rule is not None:
            out.append(LoadedRule(rule, doc, base))
    return out, diags


def content_hash(raw: Any) -> str:
    canon = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:16]


def build_rule(raw: dict[str, Any], b: _Builder) -> Rule | None:
    rid = raw.get("id")
    if not isinstance(rid, str):
        return None
    trigger = build_trigger(raw.get("trigger"), b)
    tz = b.ctx.config.tz
    trigger_event = trigger.event if trigger and trigger.kind == "event" else None
    scope = Scope(b.ctx.model, tz, trigger_event=trigger_event)
    audience = b.condition(raw.get("audience"), ("audience",), scope)
    unless = b.condition(raw.get("unless"), ("unless",), scope)
    actions = build_actions(raw.get("actions"), ("actions",), b)
    limits = None
    lim = raw.get("limits")
    if isinstance(lim, dict) and isinstance(lim.get("max"), int):
        per = b.duration(lim.get("per"), ("limits", "per"))
        if per is not None:
            limits = Limit(lim["max"], per)
    goal = build_goal(raw.get("goal"), b)
    experiment = build_experiment(raw.get("experiment"), b)
    allow = tuple(Allow(str(a.get("check")), str(a.get("reason")))
                  for a in raw.get("allow") or [] if isinstance(a, dict))
    if trigger is None:  # reported already; keep checking the rest of the rule
        trigger = Trigger("invalid")
    return Rule(
        id=rid, trigger=trigger, actions=actions,
        name=str(raw.get("name", "")), description=str(raw.get("description", "")),
        owner=str(raw.get("owner", "")), enabled=raw.get("enabled", True) is not False,
        category=str(raw.get("category", "marketing")),
        priority=raw.get("priority", 0) if isinstance(raw.get("priority"), int) else 0,
        fire=str(raw.get("fire", "on_enter")), audience=audience, unless=unless,
        limits=limits, goal=goal, experiment=experiment, allow=allow, path=b.doc.path,
        line=b.doc.pos(b.base).line, content_hash=content_hash(raw))


def build_trigger(raw: Any, b: _Builder) -> Trigger | None:
    if not isinstance(raw, dict):
        return None
    at: PathKey = ("trigger",)
    kinds = [k for k in TRIGGER_KINDS if k in raw]
    if not kinds:
        if any(k in _TRIGGER_MODIFIERS for k in raw):  # only unknown keys: the schema said so
            b.err("TRIGGER_KIND", "the trigger names no kind; use one of "
                  + ", ".join(TRIGGER_KINDS), at)
        return None
    if len(kinds) > 1:
        b.err("TRIGGER_KIND", f"a trigger has one kind, found {' and '.join(kinds)}",
              at + (kinds[1],), key=True)
        return None
    kind = kinds[0]
    for mod, owner in _TRIGGER_MODIFIERS.items():
        if mod in raw and owner != kind:
            b.err("TRIGGER_KIND", f"`{mod}` belongs to `{owner}` triggers, not `{kind}`",
                  at + (mod,), key=True)
    model = b.ctx.model
    if kind == "schedule":
        text = raw["schedule"]
        if not isinstance(text, str):
            return None
        try:
            return Trigger("schedule", cron=cronlib.parse(text))
        except cronlib.CronError as exc:
            pos = b.doc.locate(b.base + at + ("schedule",), exc.offset,
                               text[exc.offset:exc.offset + exc.length])
            b.diags.append(Diagnostic(Severity.ERROR, "BAD_CRON", exc.message, pos,
                                      hint="minute hour day-of-month month day-of-week, "
                                           "e.g. \"0 10 * * *\"", length=exc.length))
            return None
    if kind == "every":
        every = b.duration(raw["every"], at + ("every",))
        if every is not None and every < timedelta(seconds=1):
            b.err("BAD_DURATION", "`every` must be at least 1s", at + ("every",))
            return None
        if every is not None and every < timedelta(minutes=1):
            b.err("SHORT_EVERY", "`every` is shorter than 1m", at + ("every",),
                  hint="seconds-level schedules are meant for tests", severity=Severity.WARNING)
        return Trigger("every", every=every) if every else None
    if kind == "event":
        event = raw["event"]
        if not isinstance(event, str):
            return None
        if event not in model.events:
            b.err("UNKNOWN_EVENT", f"unknown event type `{event}`", at + ("event",),
                  suggest(event, model.events) or "declare it under `events:` in datamodel.yaml")
            return Trigger("event", event=event)
        where = b.condition(raw.get("where"), at + ("where",),
                            Scope(model, b.ctx.config.tz, trigger_event=event, bare_event=event))
        wait = b.duration(raw.get("wait"), at + ("wait",))
        return Trigger("event", event=event, where=where, wait=wait)
    if kind == "date":
        text = raw["date"]
        if not isinstance(text, str):
            return None
        attr = text[5:] if text.startswith("user.") else None
        field_ = model.user.get(attr) if attr else None
        if attr is None or field_ is None:
            choices = [f"user.{a}" for a, f in model.user.items()
                       if str(f.type) in ("timestamp", "date")]
            b.err("UNKNOWN_ATTRIBUTE", f"`{text}` is not a user attribute", at + ("date",),
                  suggest(text, choices) or ("dated attributes: " + ", ".join(choices)
                                             if choices else "declare a timestamp or date "
                                             "attribute in datamodel.yaml"))
            return None
        if str(field_.type) not in ("timestamp", "date"):
            b.err("COND_TYPE", f"`{text}` is {field_.type}; a date trigger needs a timestamp "
                  "or date attribute", at + ("date",))
            return None
        if raw.get("annual") is True and str(field_.type) != "date":
            b.err("COND_TYPE", f"`annual: true` needs a date attribute; `{text}` is a "
                  "timestamp", at + ("annual",), key=True,
                  hint="declare it as `type: date` (a birthday), or drop `annual`")
        before = b.duration(raw.get("before"), at + ("before",))
        after = b.duration(raw.get("after"), at + ("after",))
        if before and after:
            b.err("TRIGGER_KIND", "a date trigger takes `before` or `after`, not both",
                  at + ("after",), key=True)
        return Trigger("date", date_attr=attr, before=before, after=after,
                       annual=raw.get("annual") is True)
    ce = raw["coupon_expiring"]
    if not isinstance(ce, dict):
        return None
    before = b.duration(ce.get("before"), at + ("coupon_expiring", "before"))
    stock = ce.get("stock")
    if stock is not None and stock not in b.ctx.coupons:
        b.err("UNKNOWN_COUPON", f"unknown coupon stock `{stock}`",
              at + ("coupon_expiring", "stock"), suggest(str(stock), b.ctx.coupons))
    return Trigger("coupon_expiring", before=before, stock=stock)


def build_actions(raw: Any, at: PathKey, b: _Builder) -> tuple[Action, ...]:
    out: list[Action] = []
    if not isinstance(raw, list):
        return ()
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or len(item) != 1:
            continue
        (kind, spec), = item.items()
        built = _ACTION_BUILDERS.get(kind)
        if built is None or not isinstance(spec, dict):
            continue
        action = built(spec)
        if action is not None:
            out.append(action)
    return tuple(out)


def _coupon(spec: dict[str, Any]) -> Action | None:
    return CouponAction(str(spec["stock"])) if isinstance(spec.get("stock"), str) else None


def _message(spec: dict[str, Any]) -> Action | None:
    if not isinstance(spec.get("channel"), str):
        return None
    data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
    fallback: list[Any] = spec["fallback"] if isinstance(spec.get("fallback"), list) else []
    return MessageAction(
        channel=spec["channel"], fallback=tuple(str(f) for f in fallback),
        template=spec.get("template") if isinstance(spec.get("template"), str) else None,
        page=spec.get("page") if isinstance(spec.get("page"), str) else None,
        data={str(k): str(v) for k, v in (data or {}).items()},
        text=spec.get("text") if isinstance(spec.get("text"), str) else None,
        title=spec.get("title") if isinstance(spec.get("title"), str) else None)


def _points(spec: dict[str, Any]) -> Action | None:
    add = spec.get("add")
    if not isinstance(add, int) or isinstance(add, bool):
        return None
    return PointsAction(add, str(spec.get("reason", "")))


def _tag(spec: dict[str, Any]) -> Action | None:
    for op in ("add", "remove"):
        if isinstance(spec.get(op), str):
            return TagAction(op, spec[op])
    return None


def _webhook(spec: dict[str, Any]) -> Action | None:
    return WebhookAction(str(spec.get("channel", "webhook")), spec.get("body"))


_ACTION_BUILDERS: dict[str, Callable[[dict[str, Any]], Action | None]] = {
    "coupon": _coupon, "message": _message, "points": _points, "tag": _tag,
    "webhook": _webhook,
}


def build_goal(raw: Any, b: _Builder) -> Goal | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("event"), str):
        return None
    event = raw["event"]
    model = b.ctx.model
    if event not in model.events:
        b.err("UNKNOWN_EVENT", f"unknown event type `{event}`", ("goal", "event"),
              suggest(event, model.events))
        return None
    within = b.duration(raw.get("within"), ("goal", "within"))
    where = b.condition(raw.get("where"), ("goal", "where"),
                        Scope(model, b.ctx.config.tz, trigger_event=event, bare_event=event))
    return Goal(event, within, where) if within else None


def build_experiment(raw: Any, b: _Builder) -> Experiment | None:
    if not isinstance(raw, dict):
        return None
    holdout = 0.0
    if raw.get("holdout") is not None:
        try:
            holdout = parse_percent(raw["holdout"])
        except BadLiteral as exc:
            b.err("BAD_PERCENT", str(exc), ("experiment", "holdout"))
    variants = []
    seen: set[str] = set()
    for i, v in enumerate(raw.get("variants") or []):
        if not isinstance(v, dict) or not isinstance(v.get("name"), str):
            continue
        if v["name"] in seen:
            b.err("DUPLICATE_VARIANT", f"variant `{v['name']}` is named twice",
                  ("experiment", "variants", i, "name"))
        seen.add(v["name"])
        actions = None
        if isinstance(v.get("actions"), list):
            actions = build_actions(v["actions"], ("experiment", "variants", i, "actions"), b)
        weight: int = v["weight"] if isinstance(v.get("weight"), int) else 1
        variants.append(Variant(v["name"], weight, actions))
    if holdout >= 1.0 and raw.get("holdout") is not None:
        b.err("BAD_PERCENT", "a 100% holdout means the rule never acts",
              ("experiment", "holdout"))
    return Experiment(holdout, tuple(variants))
