"""Static checks over a loaded project: references, message templates and compliance.

Runs after every file has been read (`project.load`), because a rule's correctness depends on
the other files: its template must be declared, its coupon stock must exist, its channel must
be configured. Appends diagnostics to the `Loaded` value and then applies the rules' `allow:`
entries (warnings accepted with a reason; errors cannot be allowed).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from . import compliance, render
from .codes import CODES
from .config import MESSAGE_CHANNEL_KINDS
from .errors import Diagnostic, Severity
from .lang.checker import suggest
from .project import Loaded
from .rules.loader import LoadedRule
from .yaml12 import Document, PathKey

COUPON_FIELDS = ("id", "name", "value", "minimum", "expires_at", "issued_at", "stock")
TEMPLATE_ROOTS = ("user", "coupon", "event", "rule", "now", "variant", "points")
TEXT_KINDS = ("console", "sms", "wecom", "webhook")


class _Report:
    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded
        self.project = loaded.project
        self.lists = compliance.phrase_lists(self.project.config.phrases)

    def add(self, doc: Document, path: PathKey, code: str, message: str, hint: str = "",
            *, offset: int | None = None, length: int = 1, key: bool = False) -> None:
        sev = CODES[code][0]
        if offset is not None and isinstance(_get(doc.data, path), str):
            text = _get(doc.data, path)
            pos = doc.locate(path, offset, text[offset:offset + length])
        else:
            pos = doc.pos(path, key=key)
        self.loaded.diagnostics.append(Diagnostic(sev, code, message, pos, hint=hint,
                                                  length=length))


def _get(data: Any, path: PathKey) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def check_loaded(loaded: Loaded) -> None:
    """Run every static check and apply `allow:` entries; results go to loaded.diagnostics."""
    rep = _Report(loaded)
    check_config(rep)
    check_coupon_copy(rep)
    for lr in loaded.rules:
        check_rule(rep, lr)
    apply_allows(loaded)
    loaded.diagnostics.sort(key=Diagnostic.sort_key)


def check_config(rep: _Report) -> None:
    """engine.yaml names that refer to the data model and to itself."""
    doc = rep.loaded.docs.get(_doc_name(rep, "engine.yaml"))
    if doc is None or not isinstance(doc.data, dict):
        return
    model, cfg = rep.project.datamodel, rep.project.config
    purchase = doc.data.get("purchase_event")
    if isinstance(purchase, str) and model.events and purchase not in model.events:
        rep.add(doc, ("purchase_event",), "UNKNOWN_EVENT",
                f"purchase_event `{purchase}` is not an event type in datamodel.yaml",
                suggest(purchase, model.events) or "RFM counts this event; declare it")
    caps = (doc.data.get("policy") or {}).get("caps") if isinstance(doc.data.get("policy"),
                                                                     dict) else None
    for i, cap in enumerate(caps or []):
        if isinstance(cap, dict) and isinstance(cap.get("channel"), str) \
                and cap["channel"] not in cfg.channels:
            rep.add(doc, ("policy", "caps", i, "channel"), "UNKNOWN_CHANNEL",
                    f"cap names channel `{cap['channel']}`, which is not configured",
                    suggest(cap["channel"], cfg.channels) or "configure it under `channels:`")


def check_coupon_copy(rep: _Report) -> None:
    doc = rep.loaded.docs.get(_doc_name(rep, "coupons.yaml"))
    if doc is None or not isinstance(doc.data, dict):
        return
    for stock, spec in doc.data.items():
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            scan_copy(rep, doc, (stock, "name"), spec["name"])


def _doc_name(rep: _Report, filename: str) -> str:
    target = (rep.project.root / filename).resolve()
    for name in rep.loaded.docs:
        if Path(name).resolve() == target:
            return name
    return filename


def scan_copy(rep: _Report, doc: Document, path: PathKey, text: str) -> None:
    for hit in compliance.phrase_hits(text, rep.lists):
        rep.add(doc, path, hit.code, f"`{hit.phrase}` {compliance.PHRASE_MESSAGES[hit.list_name]}",
                _phrase_hint(hit.list_name), offset=hit.offset, length=len(hit.phrase))


def _phrase_hint(list_name: str) -> str:
    return {
        "forced_share": "sharing may be encouraged but never required or rewarded by itself",
        "false_claim": "state the real prizes and odds instead",
        "absolute_term": "rephrase, or accept it with `allow: [{check: ABSOLUTE_TERM, reason: "
                         "...}]` if it is literally true",
    }[list_name]


def _action_specs(raw: dict[str, Any], base: PathKey) -> Iterator[tuple[PathKey, list[Any]]]:
    if isinstance(raw.get("actions"), list):
        yield base + ("actions",), raw["actions"]
    exp = raw.get("experiment")
    if isinstance(exp, dict) and isinstance(exp.get("variants"), list):
        for i, v in enumerate(exp["variants"]):
            if isinstance(v, dict) and isinstance(v.get("actions"), list):
                yield base + ("experiment", "variants", i, "actions"), v["actions"]


def check_rule(rep: _Report, lr: LoadedRule) -> None:
    rule, doc, base = lr.rule, lr.doc, lr.base
    raw = _get(doc.data, base)
    if not isinstance(raw, dict):
        return
    if rule.marketing and rule.limits is None and "limits" not in raw:  # else: reported
        rep.add(doc, base + ("id",), "NO_LIMITS", f"marketing rule `{rule.id}` has no `limits`",
                "add e.g. `limits: {max: 1, per: 30d}` so one user is not messaged every tick")
    if isinstance(raw.get("name"), str):
        scan_copy(rep, doc, base + ("name",), raw["name"])
    for at, actions in _action_specs(raw, base):
        coupon_seen = rule.trigger.kind == "coupon_expiring"
        for i, item in enumerate(actions):
            if not isinstance(item, dict) or len(item) != 1:
                continue
            (kind, spec), = item.items()
            if not isinstance(spec, dict):
                continue
            here = at + (i, kind)
            if kind == "coupon":
                check_coupon_action(rep, doc, here, spec)
                coupon_seen = True
            elif kind == "message":
                check_message(rep, lr, here, spec, coupon_seen)
            elif kind == "webhook":
                check_channel(rep, doc, here + ("channel",), str(spec.get("channel", "webhook")),
                              ("webhook",))
    check_social(rep, lr)


def check_coupon_action(rep: _Report, doc: Document, here: PathKey, spec: dict[str, Any]) -> None:
    stock = spec.get("stock")
    if isinstance(stock, str) and stock not in rep.project.coupons:
        rep.add(doc, here + ("stock",), "UNKNOWN_COUPON", f"unknown coupon stock `{stock}`",
                suggest(stock, rep.project.coupons) or "declare it in coupons.yaml")


def check_channel(rep: _Report, doc: Document, path: PathKey, name: str,
                  kinds: tuple[str, ...]) -> str | None:
    channels = rep.project.config.channels
    ch = channels.get(name)
    if ch is None:
        rep.add(doc, path, "UNKNOWN_CHANNEL", f"channel `{name}` is not configured in engine.yaml",
                suggest(name, channels) or "add it under `channels:` in engine.yaml")
        return None
    if ch.kind not in kinds:
        rep.add(doc, path, "BAD_CHANNEL", f"channel `{name}` ({ch.kind}) cannot send this",
                "message channels: " + ", ".join(kinds))
        return None
    return ch.kind


def check_message(rep: _Report, lr: LoadedRule, here: PathKey, spec: dict[str, Any],
                  coupon_seen: bool) -> None:
    doc, rule = lr.doc, lr.rule
    kinds: list[str] = []
    channel = spec.get("channel")
    if isinstance(channel, str):
        k = check_channel(rep, doc, here + ("channel",), channel, MESSAGE_CHANNEL_KINDS)
        if k:
            kinds.append(k)
    for j, fb in enumerate(spec.get("fallback") or []):
        k = check_channel(rep, doc, here + ("fallback", j), str(fb), MESSAGE_CHANNEL_KINDS)
        if k:
            kinds.append(k)
    if "wechat_subscribe" in kinds:
        check_subscription(rep, lr, here, spec)
    # console prints a template message as its keywords; the other text channels need text
    text_kinds = [k for k in kinds if k in TEXT_KINDS
                  and not (k == "console" and isinstance(spec.get("template"), str))]
    if text_kinds and not isinstance(spec.get("text"), str):
        rep.add(doc, here, "TEXT_REQUIRED", f"channel kind {text_kinds[0]} sends `text`, and "
                "this message has none", "add `text: \"...\"` (a template)")
    if "sms" in kinds and rule.marketing and isinstance(spec.get("text"), str):
        if not compliance.has_opt_out(spec["text"], rep.lists):
            rep.add(doc, here + ("text",), "SMS_NO_OPT_OUT", "marketing SMS text has no opt-out",
                    "end it with e.g. 回T退订 (PIPL art. 24: a convenient way to refuse)")
    for key in ("text", "title", "page"):
        if isinstance(spec.get(key), str):
            check_template_text(rep, lr, here + (key,), spec[key], coupon_seen, key != "page")
    if isinstance(spec.get("data"), dict):
        for k, v in spec["data"].items():
            if isinstance(v, str):
                check_template_text(rep, lr, here + ("data", k), v, coupon_seen, True)


def check_subscription(rep: _Report, lr: LoadedRule, here: PathKey, spec: dict[str, Any]) -> None:
    doc = lr.doc
    name = spec.get("template")
    if not isinstance(name, str) or not isinstance(spec.get("data"), dict):
        missing = "template" if not isinstance(name, str) else "data"
        rep.add(doc, here, "TEMPLATE_REQUIRED", f"a wechat_subscribe message needs `{missing}`",
                "name a template from templates.yaml and fill its keywords under `data`")
        return
    tpl = rep.project.templates.get(name)
    if tpl is None:
        rep.add(doc, here + ("template",), "UNKNOWN_TEMPLATE",
                f"template `{name}` is not declared in templates.yaml",
                suggest(name, rep.project.templates) or "declare it in templates.yaml")
        return
    if tpl.kind == "long_term" and lr.rule.marketing:
        rep.add(doc, here + ("template",), "LONG_TERM_MARKETING",
                f"long-term template `{name}` used by a marketing rule",
                "long-term subscriptions are for public-service notices (政务民生、医疗、交通、"
                "金融、教育); marketing through them risks the template being banned")
    data = spec["data"]
    for key in data:
        if key not in tpl.keywords:
            rep.add(doc, here + ("data", key), "TEMPLATE_KEYS",
                    f"template `{name}` has no keyword `{key}`",
                    suggest(key, tpl.keywords) or "keywords: " + ", ".join(tpl.keywords),
                    key=True, length=len(key))
    absent = [k for k in tpl.keywords if k not in data]
    if absent:
        rep.add(doc, here + ("data",), "TEMPLATE_KEYS",
                f"data is missing keyword(s) {', '.join(absent)} of template `{name}`",
                "WeChat rejects a send whose data lacks a keyword (47003)")
    for key, value in data.items():
        kind = tpl.keywords.get(key)
        if kind is None:
            continue
        sample = _static_value(rep, lr, str(value))
        if sample is None:
            continue
        problem = compliance.keyword_problem(kind, sample)
        if problem:
            shown = "" if sample == str(value) else f" (renders as `{sample}`)"
            rep.add(doc, here + ("data", key), "KEYWORD_LIMIT", f"{key}: {problem}{shown}",
                    "WeChat rejects the send with 47003; shorten or reformat it")


def _static_value(rep: _Report, lr: LoadedRule, value: str) -> str | None:
    """The value as it will be sent, when it depends only on static configuration."""
    if not render.is_template(value):
        return value
    refs, problem = render.analyse(value)
    if problem is not None or any(r.root != "coupon" for r in refs):
        return None
    stocks = [a.stock for a in lr.rule.all_actions() if a.kind == "coupon"]  # type: ignore[union-attr]
    if lr.rule.trigger.stock:
        stocks.append(lr.rule.trigger.stock)
    if len(stocks) != 1 or stocks[0] not in rep.project.coupons:
        return None
    from datetime import datetime, timezone
    c = rep.project.coupons[stocks[0]]
    sample = {"coupon": {"id": "C0000000000000000001", "name": c.title, "stock": c.name,
                         "value": f"{c.value_fen / 100:.2f}", "minimum": f"{c.minimum_fen / 100:.2f}",
                         "expires_at": datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc),
                         "issued_at": datetime(2026, 12, 24, 10, 0, tzinfo=timezone.utc)}}
    try:
        return render.render(value, sample)
    except Exception:  # noqa: BLE001 - any render failure is reported by check_template_text
        return None


def check_template_text(rep: _Report, lr: LoadedRule, path: PathKey, text: str,
                        coupon_seen: bool, user_facing: bool) -> None:
    doc, rule, model = lr.doc, lr.rule, rep.project.datamodel
    if user_facing:
        scan_copy(rep, doc, path, text)
    if not render.is_template(text):
        return
    refs, problem = render.analyse(text)
    if problem is not None:
        rep.add(doc, path, "TEMPLATE_SYNTAX", f"message template does not parse: {problem.message}",
                offset=problem.offset)
        return
    trigger_event = rule.trigger.event if rule.trigger.kind == "event" else None
    for ref in refs:
        offset = _ref_offset(text, ref)
        if ref.root not in TEMPLATE_ROOTS:
            rep.add(doc, path, "TEMPLATE_UNDEFINED", f"`{ref.root}` is not available in a message "
                    "template", suggest(ref.root, TEMPLATE_ROOTS) or
                    "available: " + ", ".join(TEMPLATE_ROOTS), offset=offset, length=len(ref.root))
            continue
        if ref.root == "user" and ref.attr is not None:
            field_ = model.user.get(ref.attr)
            if ref.attr != "user_id" and field_ is None:
                rep.add(doc, path, "TEMPLATE_UNDEFINED", f"`user.{ref.attr}` is not a user attribute",
                        suggest(f"user.{ref.attr}", [f"user.{a}" for a in model.user]),
                        offset=offset, length=len(ref.attr) + 5)
            elif field_ is not None and field_.pii and user_facing:
                rep.add(doc, path, "PII_IN_MESSAGE", f"`user.{ref.attr}` is personal information "
                        "(pii: true) and may not be rendered into a message",
                        "PIPL: minimum necessary; address the user without it",
                        offset=offset, length=len(ref.attr) + 5)
        if ref.root == "coupon":
            if not coupon_seen:
                rep.add(doc, path, "TEMPLATE_UNDEFINED", "`coupon` is only available after a "
                        "`coupon` action (or in a coupon_expiring rule)",
                        "put the coupon action before this message", offset=offset, length=6)
            elif ref.attr is not None and ref.attr not in COUPON_FIELDS:
                rep.add(doc, path, "TEMPLATE_UNDEFINED", f"`coupon.{ref.attr}` does not exist",
                        suggest(ref.attr, COUPON_FIELDS) or "fields: " + ", ".join(COUPON_FIELDS),
                        offset=offset, length=len(ref.attr) + 7)
        if ref.root == "event":
            if trigger_event is None:
                rep.add(doc, path, "TEMPLATE_UNDEFINED", "`event` is only available in rules "
                        "with an event trigger", offset=offset, length=5)
            elif ref.attr is not None and trigger_event in model.events:
                et = model.events[trigger_event]
                ef = et.field(ref.attr)
                if ef is None:
                    rep.add(doc, path, "TEMPLATE_UNDEFINED",
                            f"`{trigger_event}` events have no field `{ref.attr}`",
                            suggest(ref.attr, et.field_names()), offset=offset,
                            length=len(ref.attr) + 6)
                elif ef.pii and user_facing:
                    rep.add(doc, path, "PII_IN_MESSAGE", f"`event.{ref.attr}` is personal "
                            "information (pii: true) and may not be rendered into a message",
                            "PIPL: minimum necessary; leave it out of the text",
                            offset=offset, length=len(ref.attr) + 6)


def _ref_offset(text: str, ref: render.Reference) -> int:
    probe = f"{ref.root}.{ref.attr}" if ref.attr else ref.root
    at = text.find(probe)
    if at < 0:
        at = text.find(ref.root)
    return max(at, 0)


def check_social(rep: _Report, lr: LoadedRule) -> None:
    rule, doc, base = lr.rule, lr.doc, lr.base
    model = rep.project.datamodel
    social = {n for n, e in model.events.items() if e.social}
    participation = {n for n, e in model.events.items() if e.recipient_action}
    if not social:
        return
    uses: list[compliance.SocialUse] = []
    if rule.trigger.kind == "event" and rule.trigger.event in social:
        uses.append(compliance.SocialUse(rule.trigger.event,
                                         rule.trigger.where.expr if rule.trigger.where else None))
    for cond in (rule.audience, rule.trigger.where):
        uses.extend(compliance.social_uses(cond.expr if cond else None, social))
    if not uses:
        return
    referenced = _events_referenced(rule)
    rewards = [(a, p) for a, p in _reward_paths(doc, base)]
    if not rewards:
        return
    for action, path in rewards:
        kind, spec = action
        stock = rep.project.coupons.get(str(spec.get("stock"))) if kind == "coupon" else None
        if stock is not None and stock.kind == "red_packet":
            rep.add(doc, path, "SOCIAL_CASH_REWARD", f"red packet `{stock.name}` rewards sharing "
                    f"(`{uses[0].event}`)", "cash and red packets may never reward sharing "
                    "(平台运营规范 5.1)")
            continue
        for use in uses:
            moment_fields = {n for n, f in model.events[use.event].props.items()
                             if f.enum and any(str(v) in compliance.MOMENTS_VALUES for v in f.enum)}
            status = compliance.moments_status(use.filter, moment_fields)
            if status != "excluded":
                how = "names" if status == "included" else "does not exclude"
                rep.add(doc, path, "MOMENTS_REWARD", f"this reward depends on `{use.event}`, and "
                        f"the condition {how} shares to moments (朋友圈)",
                        "no reward may be given for sharing to moments; filter e.g. "
                        f"`where: {next(iter(moment_fields), 'target')} != \"moments\"`")
                break
        else:
            if not (referenced & participation):
                rep.add(doc, path, "SHARE_REWARD_NO_PARTICIPATION",
                        f"{'points' if kind == 'points' else 'a coupon'} for sharing "
                        f"(`{uses[0].event}`) with no recipient-participation condition", "reward only the recipient's real participation, e.g. an "
                        "event marked `recipient_action: true` in datamodel.yaml")


def _events_referenced(rule: Any) -> set[str]:
    from .lang.typed import TAgg, walk
    out: set[str] = set()
    if rule.trigger.event:
        out.add(rule.trigger.event)
    for cond in (rule.audience, rule.unless, rule.trigger.where):
        if cond is not None:
            out.update(n.event for n in walk(cond.expr) if isinstance(n, TAgg))
    return out


def _reward_paths(doc: Document, base: PathKey) -> list[tuple[tuple[str, dict[str, Any]], PathKey]]:
    raw = _get(doc.data, base)
    out: list[tuple[tuple[str, dict[str, Any]], PathKey]] = []
    if not isinstance(raw, dict):
        return out
    for at, actions in _action_specs(raw, base):
        for i, item in enumerate(actions):
            if isinstance(item, dict) and len(item) == 1:
                (kind, spec), = item.items()
                if kind in ("coupon", "points") and isinstance(spec, dict):
                    out.append(((kind, spec), at + (i, kind)))
    return out


def apply_allows(loaded: Loaded) -> None:
    """Turn warnings a rule accepts (`allow:`) into accepted ones; report misuse."""
    extra: list[Diagnostic] = []
    for lr in loaded.rules:
        raw = _get(lr.doc.data, lr.base)
        entries = raw.get("allow") if isinstance(raw, dict) else None
        if not isinstance(entries, list):
            continue
        first = lr.doc.pos(lr.base).line
        last = max((m.line for p, m in lr.doc.marks.items() if p[:len(lr.base)] == lr.base),
                   default=first)
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("check"), str):
                continue
            code, reason = entry["check"], str(entry.get("reason", ""))
            at = lr.doc.pos(lr.base + ("allow", i, "check"))
            if code not in CODES:
                extra.append(Diagnostic(Severity.ERROR, "ALLOW_UNKNOWN",
                                        f"`allow` names unknown check `{code}`", at,
                                        hint=suggest(code, CODES)))
                continue
            if CODES[code][0] is Severity.ERROR:
                extra.append(Diagnostic(Severity.ERROR, "ALLOW_ERROR",
                                        f"`{code}` is an error and cannot be allowed", at,
                                        hint="fix the rule instead"))
                continue
            used = False
            for k, d in enumerate(loaded.diagnostics):
                if (d.code == code and d.severity is Severity.WARNING and not d.accepted
                        and d.pos.path == lr.doc.path and first <= d.pos.line <= last):
                    loaded.diagnostics[k] = replace(d, accepted=reason)
                    used = True
            if not used:
                extra.append(Diagnostic(Severity.WARNING, "ALLOW_UNUSED",
                                        f"`allow: {code}` accepted nothing in this rule", at,
                                        hint="remove the entry"))
    loaded.diagnostics.extend(extra)
