"""Delivering the outbox: render, guard, send, record; retries, dead letters, at most once.

- Items run in step order within a fire (a message can use the coupon issued before it); a
  step that fails for good fails the steps after it.
- Before a channel is called the item is marked `sending` and committed. After a crash such
  items become `unknown` (messages: never re-sent automatically) or go back to `pending`
  (coupons: resent with the same out_request_no, which the provider de-duplicates).
- Transient errors (`retry`) back off exponentially with jitter (deterministic per item and
  attempt) and become `dead` after `max_attempts` (channel option, default 5).
- Sends to one user are serialised (WeChat 43108); channels run with bounded concurrency.
- Rendered values are checked again at send time (keyword limits, forced-share and
  false-claim phrases): a violation fails the item with a reason instead of sending it.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from . import compliance, render
from .channels.base import FAILED, RETRY, SENT, UNKNOWN, Channel, SendRequest, SendResult
from .config import fen_to_yuan
from .project import Project
from .store import Store, ledger
from .store.facts import _convert
from .timeutil import from_micros, to_micros

BACKOFF_BASE_S = 30
BACKOFF_MAX_S = 3600
DEFAULT_MAX_ATTEMPTS = 5
RECIPIENT_FIELDS = {"wechat_subscribe": ("openid_field", "openid"),
                    "wechat_coupon": ("openid_field", "openid"),
                    "sms": ("phone_field", "phone"), "wecom": ("userid_field", "wecom_userid")}


@dataclass
class DeliveryReport:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, state: str) -> None:
        self.counts[state] += 1

    def as_json(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


def backoff_us(item_id: str, attempt: int) -> int:
    """Exponential backoff with jitter in [0.5, 1.5): deterministic per (item, attempt)."""
    h = int.from_bytes(hashlib.sha256(f"{item_id}:{attempt}".encode()).digest()[:4], "big")
    jitter = 0.5 + h / 2**32
    seconds = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1)) * jitter
    return int(seconds * 1_000_000)


class Deliverer:
    def __init__(self, project: Project, store: Store, channels: Mapping[str, Channel],
                 at: datetime) -> None:
        self.project = project
        self.store = store
        self.conn = store.conn
        self.channels = channels
        self.T = to_micros(at)
        self.tz = project.config.tz
        self.report = DeliveryReport()
        self.lists = compliance.phrase_lists(project.config.phrases)

    # -- rendering ---------------------------------------------------------------------------
    def context(self, item: ledger.Item) -> dict[str, Any]:
        fire = ledger.fire_context(self.conn, item.fire_id)
        row = self.store.user(item.user_id) or {}
        pii = self.project.datamodel.pii_fields()  # never rendered, whatever the template says
        user: dict[str, Any] = {"user_id": item.user_id}
        for k, f in self.project.datamodel.user.items():
            if k in pii:
                continue
            v = _convert(row.get(k), f.type)
            user[k] = from_micros(v, self.tz) if str(f.type) == "timestamp" and v is not None \
                else v
        ctx: dict[str, Any] = {"user": user, "now": from_micros(self.T, self.tz),
                               "variant": fire.get("variant")}
        rule = self.project.rule(str(fire.get("rule_id")))
        ctx["rule"] = {"id": fire.get("rule_id"), "name": rule.name if rule else ""}
        coupon = ledger.coupon_of_fire(self.conn, item.fire_id)
        if coupon is None and str(fire.get("occurrence", "")).startswith("coupon:"):
            coupon = self.coupon_by_id(str(fire["occurrence"])[7:])
        if coupon is not None:
            stock = self.project.coupons.get(coupon["stock"])
            ctx["coupon"] = {
                "id": coupon["coupon_id"], "stock": coupon["stock"],
                "name": stock.title if stock else coupon["stock"],
                "value": fen_to_yuan(coupon["value_fen"]),
                "minimum": fen_to_yuan(stock.minimum_fen) if stock else "0.00",
                "issued_at": from_micros(coupon["issued_at"], self.tz),
                "expires_at": from_micros(coupon["expires_at"], self.tz)}
        event_id = fire.get("event_id")
        if event_id:
            ev = self.conn.execute("SELECT ts, amount_fen, props FROM events WHERE event_id = ?",
                                   (event_id,)).fetchone()
            if ev is not None:
                import orjson
                props = orjson.loads(ev[2]) if ev[2] else {}
                ctx["event"] = {"event_id": event_id, "ts": from_micros(ev[0], self.tz),
                                "amount": ev[1], **props}
        return ctx

    def coupon_by_id(self, coupon_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT coupon_id, stock, value_fen, issued_at, expires_at FROM "
                                "issued_coupons WHERE coupon_id = ?", (coupon_id,)).fetchone()
        return None if row is None else dict(zip(
            ("coupon_id", "stock", "value_fen", "issued_at", "expires_at"), row))

    def rendered(self, item: ledger.Item, kind: str) -> tuple[dict[str, Any], str | None]:
        """The payload for the channel, or why it may not be sent."""
        spec = item.spec
        try:
            ctx = self.context(item)
            if item.kind == "webhook":
                return {"body": spec.get("body")}, None
            if kind == "wechat_subscribe" or (kind == "console" and spec.get("template")
                                              and not spec.get("text")):
                tpl = self.project.templates.get(str(spec.get("template")))
                if tpl is None:
                    return {}, "template_unknown"
                data = {k: render.render(str(v), ctx) for k, v in (spec.get("data") or {}).items()}
                for key, value in data.items():
                    problem = compliance.keyword_problem(tpl.keywords.get(key, "thing"), value)
                    if problem:
                        return {}, f"keyword_limit: {key}: {problem}"
                    hits = [h for h in compliance.phrase_hits(value, self.lists)
                            if h.code in ("FORCED_SHARE", "FALSE_CLAIM")]
                    if hits:
                        return {}, f"compliance: {hits[0].code} `{hits[0].phrase}`"
                page = render.render(spec["page"], ctx) if spec.get("page") else ""
                return {"template_id": tpl.id, "page": page, "data": data}, None
            text = render.render(str(spec.get("text") or ""), ctx)
            hits = [h for h in compliance.phrase_hits(text, self.lists)
                    if h.code in ("FORCED_SHARE", "FALSE_CLAIM")]
            if hits:
                return {}, f"compliance: {hits[0].code} `{hits[0].phrase}`"
            return {"text": text}, None
        except Exception as exc:  # noqa: BLE001 - a template error fails this item only
            return {}, f"render: {type(exc).__name__}: {exc}"

    # -- internal actions ----------------------------------------------------------------------
    def internal(self, item: ledger.Item) -> None:
        spec = item.spec
        fire = ledger.fire_context(self.conn, item.fire_id)
        with self.store.transaction():
            if item.kind == "coupon":
                self.issue_coupon(item, item.item_id, fire)
            elif item.kind == "points":
                self.conn.execute("UPDATE users SET \"points\" = COALESCE(\"points\", 0) + ? "
                                  "WHERE user_id = ?", (int(spec.get("add", 0)), item.user_id)) \
                    if "points" in self.project.datamodel.user else None
            elif item.kind == "tag" and "tags" in self.project.datamodel.user:
                ledger.change_tag(self.conn, item.user_id, "tags", str(spec.get("tag")),
                                  add=spec.get("op") == "add")
            ledger.mark(self.conn, item.item_id, "sent", self.T, "0", "", None)
        self.report.add("sent")

    def issue_coupon(self, item: ledger.Item, coupon_id: str, fire: dict[str, Any]) -> None:
        stock = self.project.coupons[str(item.spec.get("stock"))]
        expires = self.T + int(stock.valid_for.total_seconds() * 1_000_000)
        ledger.insert_coupon(self.conn, coupon_id, item.item_id, item.fire_id, item.user_id,
                             stock.name, str(fire.get("rule_id")), stock.value_fen, self.T,
                             expires)

    # -- channel sends -------------------------------------------------------------------------
    def request(self, item: ledger.Item) -> tuple[SendRequest | None, str | None]:
        ch = self.channels.get(item.channel)
        if ch is None:
            return None, f"channel `{item.channel}` is not available"
        cfg = self.project.config.channels.get(item.channel)
        field_opt, default = RECIPIENT_FIELDS.get(ch.kind, ("", ""))
        recipient = ""
        if field_opt:
            attr = str(cfg.options.get(field_opt, default)) if cfg else default
            row = self.store.user(item.user_id) or {}
            recipient = str(row.get(attr) or "")
            if not recipient:
                return None, f"no_recipient: user has no {attr}"
        if item.kind == "coupon":
            stock = self.project.coupons[str(item.spec.get("stock"))]
            payload: dict[str, Any] = {"stock_id": stock.wechat_stock_id}
            return SendRequest(item.item_id, item.channel, "coupon", item.user_id, recipient,
                               payload), None
        payload, problem = self.rendered(item, ch.kind)
        if problem:
            return None, problem
        return SendRequest(item.item_id, item.channel, item.kind, item.user_id, recipient,
                           payload), None

    def record(self, item: ledger.Item, res: SendResult) -> None:
        """Record one result; the caller holds the transaction (results go in small batches)."""
        ch = self.channels[item.channel]
        cfg = self.project.config.channels.get(item.channel)
        max_attempts = int(cfg.options.get("max_attempts", DEFAULT_MAX_ATTEMPTS)) if cfg else \
            DEFAULT_MAX_ATTEMPTS
        if True:
            if res.status == SENT:
                if item.kind == "coupon":
                    fire = ledger.fire_context(self.conn, item.fire_id)
                    self.issue_coupon(item, res.provider_id or item.item_id, fire)
                ledger.mark(self.conn, item.item_id, "sent", self.T, res.code, res.detail,
                            res.provider_id)
                state = "sent"
            elif res.status == RETRY and (item.attempts + 1 < max_attempts):
                wait = int(res.retry_after * 1e6) if res.retry_after else \
                    backoff_us(item.item_id, item.attempts + 1)
                ledger.mark(self.conn, item.item_id, "pending", self.T, res.code, res.detail,
                            next_at=self.T + wait, attempts_delta=1)
                state = "retry"
            else:
                state = {RETRY: "dead", FAILED: "failed", UNKNOWN: "unknown"}[res.status]
                if res.status == UNKNOWN and ch.idempotent:
                    state = "pending"
                ledger.mark(self.conn, item.item_id, state, self.T, res.code, res.detail,
                            attempts_delta=1, next_at=self.T + backoff_us(item.item_id, 1))
                if state != "pending":
                    ledger.abandon_later_steps(self.conn, item.fire_id, item.step, self.T,
                                               f"step {item.step} {state}: {res.code}")
                if res.consent_exhausted and item.spec.get("template"):
                    ledger.zero_consent(self.conn, item.user_id, str(item.spec["template"]),
                                        self.T)
        self.report.add(state)

    def record_all(self, done: list[tuple[ledger.Item, SendResult]]) -> None:
        if not done:
            return
        with self.store.transaction():
            for item, res in done:
                self.record(item, res)

    def fail(self, item: ledger.Item, reason: str) -> None:
        with self.store.transaction():
            ledger.mark(self.conn, item.item_id, "failed", self.T, reason.split(":")[0], reason,
                        attempts_delta=1)
            ledger.abandon_later_steps(self.conn, item.fire_id, item.step, self.T, reason)
        self.report.add("failed")

    def run(self, max_rounds: int = 100, limit: int = 10_000,
            stop: Callable[[], bool] | None = None) -> DeliveryReport:
        """Deliver every item whose time has come; steps unlocked by this run go too.

        `limit` bounds the items marked `sending` at once; `stop` is asked between batches
        (the daemon's shutdown), so an interrupted run leaves few items in flight."""
        for _ in range(max_rounds):
            if stop is not None and stop():
                break
            items = [i for i in ledger.ready_items(self.conn, self.T, limit)
                     if not i.channel or i.channel in self.channels]
            if not items:  # items for channels that are not available wait, nothing is lost
                break
            sends: dict[str, list[tuple[ledger.Item, SendRequest]]] = defaultdict(list)
            for item in items:
                if item.kind in ("points", "tag") or (item.kind == "coupon" and not item.channel):
                    self.internal(item)
                    continue
                req, problem = self.request(item)
                if req is None:
                    self.fail(item, problem or "cannot send")
                    continue
                sends[item.channel].append((item, req))
            if not sends:
                continue
            with self.store.transaction():  # at most once: `sending` is durable before sending
                for batch in sends.values():
                    for item, _ in batch:
                        ledger.mark(self.conn, item.item_id, "sending", self.T)
            self.send_all(sends)
        return self.report

    def send_all(self, sends: Mapping[str, list[tuple[ledger.Item, SendRequest]]]) -> None:
        futures: list[tuple[list[tuple[ledger.Item, SendRequest]], Future[list[SendResult]]]] = []
        pools = []
        for name, batch in sends.items():
            cfg = self.project.config.channels.get(name)
            workers = int(cfg.options.get("concurrency", 8)) if cfg else 8
            pool = ThreadPoolExecutor(max_workers=max(1, workers),
                                      thread_name_prefix=f"send-{name}")
            pools.append(pool)
            by_user: dict[str, list[tuple[ledger.Item, SendRequest]]] = defaultdict(list)
            for pair in batch:
                by_user[pair[0].user_id].append(pair)
            channel = self.channels[name]
            for group in by_user.values():  # one user's sends run one after another (43108)
                futures.append((group, pool.submit(_send_group, channel, group)))
        try:
            done: list[tuple[ledger.Item, SendResult]] = []
            for group, fut in futures:
                try:
                    results = fut.result()
                except Exception as exc:  # noqa: BLE001 - a crashing channel is an unknown
                    results = [SendResult(UNKNOWN, "exception", type(exc).__name__)] * len(group)
                done.extend(zip((item for item, _ in group), results))
                if len(done) >= RECORD_BATCH:
                    self.record_all(done)
                    done = []
            self.record_all(done)
        finally:
            for pool in pools:
                pool.shutdown(wait=True)


RECORD_BATCH = 200  # results recorded per transaction (a crash leaves these few `unknown`)


def _send_group(channel: Channel, group: list[tuple[ledger.Item, SendRequest]]
                ) -> list[SendResult]:
    return [channel.send(req) for _, req in group]


def deliver(project: Project, store: Store, channels: Mapping[str, Channel],
            at: datetime, *, batch: int = 10_000, max_rounds: int = 100,
            stop: Callable[[], bool] | None = None) -> DeliveryReport:
    with store.transaction():
        ledger.ensure_ledger(store.conn)
        back, unknown = ledger.recover_interrupted(store.conn, set(), to_micros(at))
    d = Deliverer(project, store, channels, at)
    if back:
        d.report.counts["recovered_pending"] += back
    if unknown:
        d.report.counts["recovered_unknown"] += unknown
    return d.run(max_rounds, batch, stop)


Clock = Callable[[], datetime]
__all__ = ["Deliverer", "DeliveryReport", "deliver", "backoff_us", "timedelta"]
