"""Delivering the outbox: render, guard, send, record; retries, dead letters, at most once.

- Items run in step order within a fire (a message can use the coupon issued before it); a
  step that fails for good fails the steps after it.
- Before a channel is called the item is marked `sending` and committed. After a crash such
  items become `unknown` (messages: never re-sent automatically) or go back to `pending`
  (coupons: resent with the same out_request_no, which the provider de-duplicates).
- Transient errors (`retry`) back off exponentially with jitter (deterministic per item and
  attempt) and become `dead` after `max_attempts` (channel option, default 5).
- Sends to one user are serialised (WeChat 43108); channels run with bounded concurrency.
- Work goes in chunks (CHUNK items): the main thread renders a chunk, marks it `sending` in
  one transaction that also records the results that came back, and hands it to the channel's
  workers, then renders the next chunk while they send.
- Rendered values are checked again at send time (keyword limits, forced-share and
  false-claim phrases): a violation fails the item with a reason instead of sending it.
- A message's context holds what its templates read (found once per message spec on the
  syntax tree): the user attributes they name, `coupon` and `event` only when named.
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Mapping

import orjson

from . import compliance, render
from .channels.base import FAILED, RETRY, SENT, UNKNOWN, Channel, SendRequest, SendResult
from .config import fen_to_yuan
from .project import Project
from .store import Store, ledger
from .store.facts import _convert
from .timeutil import from_micros, to_micros

GUARDED_LISTS = ("forced_share", "false_claim")
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


@dataclass(frozen=True)
class Reads:
    """What a message's templates read: the context names (None: any) and the user
    attributes (None: all of them)."""

    roots: frozenset[str] | None
    user_attrs: frozenset[str] | None


EVERYTHING = Reads(None, None)


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
        self.lists = {k: v for k, v in compliance.phrase_lists(project.config.phrases).items()
                      if k in GUARDED_LISTS}  # checked at send time; the others by `validate`
        self.phrases = re.compile("|".join(re.escape(p.casefold())
                                           for v in self.lists.values() for p in v) or "(?!)")
        self.now = from_micros(self.T, self.tz)
        pii = project.datamodel.pii_fields()  # never rendered, whatever the template says
        self.user_fields = {k: (f.type, str(f.type) == "timestamp")
                            for k, f in project.datamodel.user.items() if k not in pii}
        self.reads_of: dict[tuple[str, ...], Reads] = {}
        self.rule_ctx: dict[Any, dict[str, Any]] = {}
        self.recipient_attr: dict[str, str | None] = {}  # the user attribute, per channel
        self.guarded: dict[tuple[str, str | None, str], str | None] = {}
        self.prepare([])

    # -- rendering ---------------------------------------------------------------------------
    def prepare(self, items: list[ledger.Item]) -> None:
        """Read what rendering needs for a round's items in a few queries (fires, users,
        coupons, events), instead of several queries per item."""
        fire_ids = {i.fire_id for i in items}
        self.fires = ledger.fire_contexts(self.conn, fire_ids)
        self.users = ledger.users_by_id(self.conn, {i.user_id for i in items})
        self.coupons = ledger.coupons_of_fires(self.conn, fire_ids)
        self.events = ledger.events_by_id(
            self.conn, {str(f["event_id"]) for f in self.fires.values() if f.get("event_id")})
        self.user_ctx: dict[str, dict[str, Any]] = {}

    def fire(self, item: ledger.Item) -> dict[str, Any]:
        return self.fires.get(item.fire_id) or ledger.fire_context(self.conn, item.fire_id)

    def user_context(self, user_id: str, attrs: frozenset[str] | None = None
                     ) -> dict[str, Any]:
        """The user's non-PII attributes in template form: those in `attrs` (all if None),
        converted once per user and round (a user with several items shares them)."""
        user = self.user_ctx.get(user_id)
        if user is None:
            user = self.user_ctx[user_id] = {"user_id": user_id}
        if attrs is None:
            if len(user) == len(self.user_fields) + 1:
                return user
            done, user = user, {"user_id": user_id}  # all of them, in the data model's order
            self.user_ctx[user_id] = user
        else:
            done = user
        row = self.users.get(user_id) or {}
        for k in self.user_fields if attrs is None else attrs:
            if k in done:
                user[k] = done[k]
            elif k in self.user_fields:  # else not a field a template may read: undefined
                ftype, stamp = self.user_fields[k]
                v = _convert(row.get(k), ftype)
                user[k] = from_micros(v, self.tz) if stamp and v is not None else v
        return user

    def reads(self, texts: tuple[str, ...]) -> Reads:
        """What `texts` read, so that only that is put in their context (computed once per
        distinct message spec)."""
        known = self.reads_of.get(texts)
        if known is not None:
            return known
        roots: set[str] | None = set()
        attrs: set[str] | None = set()
        for text in texts:
            refs, problem = render.analyse(text) if _is_template(text) else ((), None)
            if problem is not None:  # rendering reports the syntax error; give it everything
                roots = attrs = None
                break
            for ref in refs:
                if roots is not None:
                    roots.add(ref.root)
                if ref.root == "user" and attrs is not None:
                    if ref.attr is None or (ref.attr not in self.user_fields
                                            and ref.attr != "user_id"):
                        attrs = None  # `user` itself, or one of its methods (`user.items()`)
                    else:
                        attrs.add(ref.attr)
        out = Reads(None if roots is None else frozenset(roots),
                    None if attrs is None else frozenset(attrs))
        self.reads_of[texts] = out
        return out

    def context(self, item: ledger.Item, reads: Reads = EVERYTHING) -> dict[str, Any]:
        """The names a template may use: `user` (non-PII attributes), `now`, `variant`,
        `rule`, and `coupon` and `event` when the fire has them. Only the names `reads` lists
        are built (a name not built is undefined, as it would be unused)."""
        roots = reads.roots
        fire = self.fires.get(item.fire_id) or {}
        ctx: dict[str, Any] = {"now": self.now, "variant": fire.get("variant")}
        if roots is None or "user" in roots:
            ctx["user"] = self.user_context(item.user_id, reads.user_attrs)
        if roots is None or "rule" in roots:
            ctx["rule"] = self.rule_context(fire.get("rule_id"))
        if roots is None or "coupon" in roots:
            self.add_coupon(ctx, item, fire)
        if roots is None or "event" in roots:
            event_id = fire.get("event_id")
            ev = self.events.get(str(event_id)) if event_id else None
            if ev is not None:
                props = orjson.loads(ev[2]) if ev[2] else {}
                ctx["event"] = {"event_id": event_id, "ts": from_micros(ev[0], self.tz),
                                "amount": ev[1], **props}
        return ctx

    def add_coupon(self, ctx: dict[str, Any], item: ledger.Item, fire: dict[str, Any]) -> None:
        coupon = self.coupons.get(item.fire_id)
        if coupon is None and str(fire.get("occurrence", "")).startswith("coupon:"):
            coupon = ledger.coupon_by_id(self.conn, str(fire["occurrence"])[7:])
        if coupon is not None:
            stock = self.project.coupons.get(coupon["stock"])
            ctx["coupon"] = {
                "id": coupon["coupon_id"], "stock": coupon["stock"],
                "name": stock.title if stock else coupon["stock"],
                "value": fen_to_yuan(coupon["value_fen"]),
                "minimum": fen_to_yuan(stock.minimum_fen) if stock else "0.00",
                "issued_at": from_micros(coupon["issued_at"], self.tz),
                "expires_at": from_micros(coupon["expires_at"], self.tz)}

    def rule_context(self, rule_id: Any) -> dict[str, Any]:
        known = self.rule_ctx.get(rule_id)
        if known is None:
            rule = self.project.rule(str(rule_id))
            known = self.rule_ctx[rule_id] = {"id": rule_id, "name": rule.name if rule else ""}
        return known

    def guard(self, name: str, kind: str | None, value: str) -> str | None:
        """Why a rendered value may not be sent (the limits of template keyword `name` of
        `kind`, when given; forced-share and false-claim phrases), or None. Memoised: the
        fixed parts of a message are checked once per delivery run."""
        key = (name, kind, value)
        if key in self.guarded:
            return self.guarded[key]
        problem = compliance.keyword_problem(kind, value) if kind is not None else None
        if problem:
            problem = f"keyword_limit: {name}: {problem}"
        elif self.phrases.search(value.casefold()):  # else no phrase can match
            hits = [h for h in compliance.phrase_hits(value, self.lists)
                    if h.code in ("FORCED_SHARE", "FALSE_CLAIM")]
            problem = f"compliance: {hits[0].code} `{hits[0].phrase}`" if hits else None
        if len(self.guarded) >= GUARD_MEMO:
            self.guarded.clear()
        self.guarded[key] = problem
        return problem

    def rendered(self, item: ledger.Item, kind: str) -> tuple[dict[str, Any], str | None]:
        """The payload for the channel, or why it may not be sent."""
        spec = item.spec
        try:
            if item.kind == "webhook":
                self.context(item)  # built whole, as before: a row it cannot read fails it
                return {"body": spec.get("body")}, None
            subscribe = kind == "wechat_subscribe" or (kind == "console" and spec.get("template")
                                                       and not spec.get("text"))
            if subscribe:
                texts = tuple(str(v) for v in (spec.get("data") or {}).values())
                texts += (str(spec["page"]),) if spec.get("page") else ()
            else:
                texts = (str(spec.get("text") or ""),)
            ctx = self.context(item, self.reads(texts))
            if subscribe:
                tpl = self.project.templates.get(str(spec.get("template")))
                if tpl is None:
                    return {}, "template_unknown"
                data = {k: _render(str(v), ctx) for k, v in (spec.get("data") or {}).items()}
                for key, value in data.items():
                    problem = self.guard(key, tpl.keywords.get(key, "thing"), value)
                    if problem:
                        return {}, problem
                page = _render(spec["page"], ctx) if spec.get("page") else ""
                return {"template_id": tpl.id, "page": page, "data": data}, None
            text = _render(str(spec.get("text") or ""), ctx)
            problem = self.guard("", None, text)
            if problem:
                return {}, problem
            return {"text": text}, None
        except Exception as exc:  # noqa: BLE001 - a template error fails this item only
            return {}, f"render: {type(exc).__name__}: {exc}"

    # -- internal actions ----------------------------------------------------------------------
    def internal(self, item: ledger.Item) -> None:
        spec = item.spec
        fire = self.fire(item)
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
        if item.channel not in self.recipient_attr:
            cfg = self.project.config.channels.get(item.channel)
            field_opt, default = RECIPIENT_FIELDS.get(ch.kind, ("", ""))
            self.recipient_attr[item.channel] = \
                (str(cfg.options.get(field_opt, default)) if cfg else default) \
                if field_opt else None
        attr = self.recipient_attr[item.channel]
        recipient = ""
        if attr is not None:
            row = self.users.get(item.user_id) or {}
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
                    self.issue_coupon(item, res.provider_id or item.item_id, self.fire(item))
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
        """Record a batch of results (the caller holds the transaction); plain sent messages
        in one statement."""
        sent = []
        for item, res in done:
            if res.status == SENT and item.kind != "coupon":
                sent.append((item.item_id, res.code, res.detail, res.provider_id))
            else:
                self.record(item, res)
        if sent:
            ledger.mark_sent(self.conn, sent, self.T)
            self.report.counts["sent"] += len(sent)

    def fail(self, item: ledger.Item, reason: str) -> None:
        """Record an item that cannot be sent; the caller holds the transaction."""
        ledger.mark(self.conn, item.item_id, "failed", self.T, reason.split(":")[0], reason,
                    attempts_delta=1)
        ledger.abandon_later_steps(self.conn, item.fire_id, item.step, self.T, reason)
        self.report.add("failed")

    def run(self, max_rounds: int = 100, limit: int = 10_000,
            stop: Callable[[], bool] | None = None) -> DeliveryReport:
        """Deliver every item whose time has come; steps unlocked by this run go too.

        `limit` bounds the items read per round; `stop` is asked between rounds (the daemon's
        shutdown). Within a round, items are rendered, marked `sending` and sent chunk by
        chunk, so at most a few chunks are in flight when the process is killed."""
        for _ in range(max_rounds):
            if stop is not None and stop():
                break
            items = [i for i in ledger.ready_items(self.conn, self.T, limit)
                     if not i.channel or i.channel in self.channels]
            if not items:  # items for channels that are not available wait, nothing is lost
                break
            self.prepare(items)
            sendable = []
            for item in items:
                if item.kind in ("points", "tag") or (item.kind == "coupon" and not item.channel):
                    self.internal(item)
                else:
                    sendable.append(item)
            if sendable:
                self.send_all(sendable)
        return self.report

    def send_all(self, items: list[ledger.Item]) -> None:
        """Render, mark `sending`, send and record, CHUNK items at a time: the main thread
        renders the next chunk while the channel's workers send the previous ones, and one
        transaction per chunk marks it `sending` and records the results that came back
        meanwhile. A user's items on a channel go to one worker, one after another (43108)."""
        groups: dict[tuple[str, str], list[ledger.Item]] = {}
        for item in items:
            groups.setdefault((item.channel, item.user_id), []).append(item)
        pools: dict[str, ThreadPoolExecutor] = {}
        flight: deque[Future[list[tuple[ledger.Item, SendResult]]]] = deque()
        done: list[tuple[ledger.Item, SendResult]] = []
        try:
            for chunk in _chunks(list(groups.values()), CHUNK):
                tasks, failed = self.requests(chunk)
                with self.store.transaction():
                    self.record_all(done)
                    for item, reason in failed:
                        self.fail(item, reason)
                    ledger.mark_sending(self.conn, (item.item_id for gs in tasks.values()
                                                    for g in gs for item, _ in g), self.T)
                done = []
                flight.extend(self.hand_over(tasks, pools))
                while flight and (flight[0].done() or len(flight) > MAX_IN_FLIGHT):
                    done.extend(flight.popleft().result())
            while flight or done:
                if flight:
                    done.extend(flight.popleft().result())
                if len(done) >= RECORD_BATCH or not flight:
                    with self.store.transaction():
                        self.record_all(done)
                    done = []
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True)

    def requests(self, chunk: list[list[ledger.Item]]) -> tuple[
            dict[str, list[list[tuple[ledger.Item, SendRequest]]]], list[tuple[ledger.Item, str]]]:
        """The rendered requests of a chunk of user groups, per channel, and the items that
        cannot be sent with the reason."""
        tasks: dict[str, list[list[tuple[ledger.Item, SendRequest]]]] = defaultdict(list)
        failed: list[tuple[ledger.Item, str]] = []
        for group in chunk:
            pairs = []
            for item in group:
                req, problem = self.request(item)
                if req is None:
                    failed.append((item, problem or "cannot send"))
                else:
                    pairs.append((item, req))
            if pairs:
                tasks[group[0].channel].append(pairs)
        return tasks, failed

    def hand_over(self, tasks: dict[str, list[list[tuple[ledger.Item, SendRequest]]]],
                  pools: dict[str, ThreadPoolExecutor]
                  ) -> list[Future[list[tuple[ledger.Item, SendResult]]]]:
        """Give the workers groups marked `sending`: one task per worker and channel, a
        user's group never split."""
        futures = []
        for name, user_groups in tasks.items():
            pool = pools.get(name)
            if pool is None:
                pool = pools[name] = ThreadPoolExecutor(max_workers=self.workers(name),
                                                        thread_name_prefix=f"send-{name}")
            share = min(self.workers(name), len(user_groups))
            for k in range(share):
                futures.append(pool.submit(_send_groups, self.channels[name],
                                           user_groups[k::share]))
        return futures

    def workers(self, channel: str) -> int:
        cfg = self.project.config.channels.get(channel)
        return max(1, int(cfg.options.get("concurrency", 8)) if cfg else 8)


CHUNK = 256  # items rendered and marked `sending` at once
MAX_IN_FLIGHT = 64  # worker tasks handed over, not yet recorded (4 chunks at concurrency 16)
GUARD_MEMO = 50_000  # guard answers remembered per run (values repeat: fixed texts, names)
RECORD_BATCH = 200  # results recorded per transaction (a crash leaves these few `unknown`)


def _chunks(groups: list[list[ledger.Item]], size: int) -> Iterator[list[list[ledger.Item]]]:
    """User groups in chunks of about `size` items (a group is never split)."""
    chunk: list[list[ledger.Item]] = []
    n = 0
    for group in groups:
        chunk.append(group)
        n += len(group)
        if n >= size:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


def _send_groups(channel: Channel, groups: list[list[tuple[ledger.Item, SendRequest]]]
                 ) -> list[tuple[ledger.Item, SendResult]]:
    out = []
    for group in groups:
        for item, req in group:
            try:
                res = channel.send(req)
            except Exception as exc:  # noqa: BLE001 - a crashing channel is an unknown outcome
                res = SendResult(UNKNOWN, "exception", type(exc).__name__)
            out.append((item, res))
    return out


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def _render(text: str, context: dict[str, Any]) -> str:
    """A text with no template syntax is its own rendering (no sandbox call)."""
    if _is_template(text):
        return render.render(text, context)
    return text


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
