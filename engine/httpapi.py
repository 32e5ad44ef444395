"""The daemon's HTTP API: `POST /events`, `GET /healthz`, `GET /metrics`.

Events are checked exactly as `engine ingest` checks them (the same row checker, the same
reject codes and reasons) and answered row by row; the good rows are committed in one
transaction even when others are rejected, and re-sending an event is a no-op (events are
idempotent by `event_id`). `POST /events` needs `Authorization: Bearer TOKEN` where TOKEN is
the value of the environment variable ENGINE_HTTP_TOKEN; without that variable it is refused.
"""
from __future__ import annotations

import hmac
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import orjson

from .errors import CannotRun
from .ingest.read import JsonlChunk, check_chunk
from .ingest.rows import Spec
from .project import Project
from .rules.model import Rule
from .store import Store
from .store import monitor
from .triggers import event_eval_time

MAX_BODY = 16 << 20
TOKEN_ENV = "ENGINE_HTTP_TOKEN"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class BadBody(ValueError):
    """The body as a whole cannot be read (the rows are never looked at)."""


@dataclass
class EventsAnswer:
    rows: list[dict[str, Any]] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    users_created: int = 0
    latest_ts: int | None = None  # µs, of the accepted events

    def as_json(self) -> dict[str, Any]:
        return {"received": len(self.rows), "accepted": self.accepted,
                "duplicates": self.duplicates, "rejected": self.rejected,
                "users_created": self.users_created, "rows": self.rows}


def body_lines(body: bytes) -> bytes:
    """A JSON array of events, or JSON lines, as JSON lines (one event a line)."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    head = body.lstrip()
    if not head:
        raise BadBody("the body is empty; send a JSON array of events or JSON lines")
    if head.startswith(b"["):
        try:
            items = orjson.loads(head)
        except orjson.JSONDecodeError as exc:
            raise BadBody(f"the body starts with `[` but is not a JSON array ({exc})") from None
        if not isinstance(items, list):
            raise BadBody("the body must be a JSON array of events or JSON lines")
        return b"\n".join(orjson.dumps(i) for i in items)
    return body


def receive_events(project: Project, store: Store, body: bytes) -> EventsAnswer:
    """Check every row, commit the good ones, answer each row (1-based `row` numbers: the
    position in the array, or the line of a JSON-lines body)."""
    data = body_lines(body)
    spec = Spec.build(project.datamodel, project.config.timezone, store.type_ids)
    checked = check_chunk("events", spec, JsonlChunk(1, data))
    answer = EventsAnswer()
    bad = {line: (code, fld, reason) for line, code, fld, reason, _ in checked.rejects}
    lines = [n for n, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]
    good = iter(checked.rows)
    rows: list[tuple[int, Any]] = []
    for n in lines:
        if n in bad:
            code, fld, reason = bad[n]
            answer.rows.append({"row": n, "status": "rejected", "code": code, "field": fld,
                                "reason": reason})
            answer.rejected += 1
        else:
            row = next(good)
            rows.append((n, row))
            answer.rows.append({"row": n, "status": "accepted", "event_id": row[0]})
    if not rows:
        return answer
    with store.transaction():
        existing = monitor.existing_event_ids(store.conn, [r[0] for _, r in rows])
        answer.users_created = store.ensure_users({r[1] for _, r in rows})
        store.insert_events([r for _, r in rows])
    late = _late_rules(project, store, rows)
    seen: set[str] = set()
    by_row = {a["row"]: a for a in answer.rows}
    for n, row in rows:
        entry = by_row[n]
        if row[0] in existing or row[0] in seen:
            entry["status"] = "duplicate"
            answer.duplicates += 1
            continue
        seen.add(row[0])
        answer.accepted += 1
        answer.latest_ts = row[3] if answer.latest_ts is None else max(answer.latest_ts, row[3])
        if late.get(n):
            entry["late_for"] = late[n]
    return answer


def _late_rules(project: Project, store: Store, rows: list[tuple[int, Any]]) -> dict[int, list[str]]:
    """Event rules that already ticked past an event's evaluation time: the event is stored
    (conditions see it) but does not trigger them."""
    by_type: dict[int, list[Rule]] = {}
    for rule in project.rules:
        if rule.enabled and rule.trigger.kind == "event" and rule.trigger.event:
            tid = store.type_ids.get(rule.trigger.event)
            if tid is not None:
                by_type.setdefault(tid, []).append(rule)
    if not by_type:
        return {}
    ticks = monitor.rule_ticks(store.conn)
    out: dict[int, list[str]] = {}
    for n, row in rows:
        for rule in by_type.get(row[2], []):
            last = ticks.get(rule.id)
            if last is not None and event_eval_time(rule.trigger, row[3]) <= last:
                out.setdefault(n, []).append(rule.id)
    return out


# -- the server ------------------------------------------------------------------------------

class Api(Protocol):
    token: str | None

    def post_events(self, body: bytes) -> tuple[int, dict[str, Any]]:
        ...

    def health(self) -> tuple[int, dict[str, Any]]:
        ...

    def metrics_text(self) -> str:
        ...


def parse_address(text: str) -> tuple[str, int]:
    """`127.0.0.1:8700`, `:8700` or `8700` (loopback), `[::1]:8700`, `0.0.0.0:8700`."""
    raw = text.strip()
    host, _, port = raw.rpartition(":") if ":" in raw else ("", "", raw)
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise CannotRun(f"--http `{text}` is not an address; write HOST:PORT, e.g. "
                        "127.0.0.1:8700") from None
    if not 0 <= number <= 65535:
        raise CannotRun(f"--http `{text}`: port {number} is out of range")
    return host, number


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server_version = "zailai-engine"
    protocol_version = "HTTP/1.1"

    @property
    def api(self) -> Api:
        return self.server.api  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="engine"')
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, orjson.dumps(data) + b"\n")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._json(*self.api.health())
        elif path == "/metrics":
            self._send(200, self.api.metrics_text().encode(),
                       "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/events":
            self._error(405, "use POST /events")
        else:
            self._error(404, "no such endpoint; try POST /events, GET /healthz, GET /metrics")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/events":
            self._error(404 if path not in ("/healthz", "/metrics") else 405,
                        "POST only to /events")
            return
        token = self.api.token
        if not token:
            self._drain()
            self._error(503, f"POST /events is disabled: set the environment variable "
                             f"{TOKEN_ENV} for the daemon and send it as a Bearer token")
            return
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                                 token.encode()):
            self._drain()
            self._error(401, "missing or wrong bearer token")
            return
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            self._error(411, "send a Content-Length")
            return
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True
            self._error(400, "bad Content-Length")
            return
        if size > MAX_BODY:
            self.close_connection = True
            self._error(413, f"the body is larger than {MAX_BODY >> 20} MiB; send smaller batches")
            return
        body = self.rfile.read(size)
        self._json(*self.api.post_events(body))

    def _drain(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= MAX_BODY:
            self.rfile.read(int(length))
        else:
            self.close_connection = True


class ApiServer:
    def __init__(self, api: Api, host: str, port: int) -> None:
        try:
            cls = _Server6 if ":" in host else _Server
            self.server = cls((host, port), _Handler)
        except OSError as exc:
            raise CannotRun(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.server.api = api  # type: ignore[attr-defined]
        self.host = host
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.2}, name="http",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
