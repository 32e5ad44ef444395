"""A small pooled HTTP/1.1 keep-alive client for the channels, on plain sockets.

Why not httpx.Client or http.client: per request, httpx.Client cost ~0.6 ms of CPU and a pool
on http.client ~0.3 ms (its request writing, and its reply parsing line by line through a
buffered socket file into an email.message object); this client ~0.15 ms, and a bare socket
loop 0.04 ms (one thread, the fake server in another process, the 2-vCPU dev machine under
load). A channel needs little: the request written with one `sendall`, the reply read with
(usually) one `recv` and parsed by hand. TLS wraps the socket in the verifying context of
httpx (certifi's CA bundle), made once per process.

What it speaks: HTTP/1.1 requests with a bytes body (Content-Length); replies framed by
Content-Length, `Transfer-Encoding: chunked`, or the server closing the connection; interim 1xx
replies are skipped. A reply it cannot parse is `NoAnswer("bad_reply")`: the request was sent.
It does not follow redirects, ask for compression or use proxies (nor did the client before).

What the pool guarantees:
- separate connect and read timeouts: connecting (with the TLS handshake) has
  `connect_timeout`; once the request is written the whole reply must arrive within
  `read_timeout`;
- a connection is used by one thread at a time; at most `size` are open, a caller waits up to
  `pool_timeout` for one;
- idle connections are reused for at most `keepalive` seconds and only if the server has not
  closed them (checked with a zero-timeout poll before reuse, as urllib3 does), so a reply
  lost on a stale connection is rare rather than routine; a connection with bytes left over
  after a reply, or a reply that asked to close, is never reused;
- failures say how far the request got: `NotSent` (connecting, or writing the request, failed:
  the provider cannot have acted on it, since a request cut short lacks bytes its
  Content-Length announced) or `NoAnswer` (the request was written, no complete reply came: the
  outcome is unknown).
"""
from __future__ import annotations

import re
import select
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from functools import cached_property, lru_cache
from queue import Empty, SimpleQueue
from typing import Mapping
from urllib.parse import urlencode, urlsplit
from .. import clock

USER_AGENT = "zailai/0.1"
RECV_SIZE = 65536
MAX_HEAD = 65536  # bytes of status line and headers we accept
MAX_BODY = 4 * 1024 * 1024  # a provider's reply is small; this bounds a misbehaving one
_NO_BODY = frozenset({204, 304})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token


class WireError(Exception):
    """A request that got no reply; `kind` is a short code (connect, write, timeout ...)."""

    def __init__(self, kind: str, cause: BaseException | str | None = None) -> None:
        what = cause if isinstance(cause, str) or cause is None else type(cause).__name__
        super().__init__(kind if what is None else f"{kind} ({what})")
        self.kind = kind


class NotSent(WireError):
    """The request did not reach the provider complete: it cannot have been acted on."""


class NoAnswer(WireError):
    """The request was written but no complete reply came: it may have been acted on."""


class BadRequest(WireError):
    """The request could not be written as given (e.g. a header that is not Latin-1)."""


class _BadReply(Exception):
    """The reply is not HTTP/1.x as this client reads it."""


class _Closed(Exception):
    """The server closed the connection before the reply was complete."""


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every channel (loading the CA bundle costs ~0.1 s)."""
    import httpx  # only for its certifi-backed context; imported when TLS is first needed
    return httpx.create_ssl_context()


class BadEndpoint(ValueError):
    pass


@dataclass(frozen=True)
class Endpoint:
    """A URL parsed once: where to connect and the request target's path prefix."""

    scheme: str
    host: str
    port: int
    path: str  # without a trailing slash
    query: str = ""  # kept from the configured URL (a webhook may carry one)

    @staticmethod
    def parse(url: str) -> "Endpoint":
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            raise BadEndpoint(f"`{url}` is not an http(s) URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise BadEndpoint(f"`{url}` has a bad port") from None
        return Endpoint(parts.scheme, parts.hostname, port, parts.path.rstrip("/"), parts.query)

    def target(self, path: str, params: Mapping[str, str] | None = None) -> str:
        """The request target (path and query) for `path` under this endpoint."""
        query = "&".join(q for q in (self.query, urlencode(params) if params else "") if q)
        return (self.path + path or "/") + ("?" + query if query else "")

    @cached_property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class Response:
    """What came back: the status, the body and the Retry-After header, if any."""

    status: int
    body: bytes
    retry_after: str | None
    keep_alive: bool  # the connection may carry another request


class _Conn:
    """One connection: its socket and the bytes received beyond the last reply (none, when
    the server behaves)."""

    __slots__ = ("sock", "rest", "shortened")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rest = b""
        self.shortened = False  # the socket's timeout was cut to a reply's deadline

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def dropped(self) -> bool:
        """True if the server closed (or sent junk on) this idle connection."""
        if self.rest:
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)


_DEFAULT_HEADERS = ("host", "user-agent", "accept")


@lru_cache(maxsize=256)
def _checked_name(name: str) -> str:
    """`name`, lower-cased, if it may be sent by a caller; ValueError otherwise."""
    low = name.lower()
    if low in ("content-length", "transfer-encoding"):
        raise ValueError(f"header {name} is set by the client")
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"bad header name {name!r}")
    return low


def _start(method: str, target: str, host: str) -> str:
    """The request line and the default headers; ValueError for a bad method or target."""
    if not _TOKEN.fullmatch(method) or not target \
            or any(c in target for c in " \r\n\x00\t"):
        raise ValueError("bad method or request target")
    return (f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Accept: application/json\r\n")


def encode_head(method: str, target: str, host: str, headers: Mapping[str, str],
                length: int | None, start: str | None = None) -> bytes:
    """The request line and headers, CRLF-terminated; ValueError if a part could smuggle a
    line break, is empty where it may not be, or is not Latin-1. `start` is `_start(...)`
    when the caller has it."""
    lines = [start or _start(method, target, host)]
    for name, value in headers.items():
        if _checked_name(name) in _DEFAULT_HEADERS:  # the caller's value replaces ours
            return _encode_overriding(method, target, host, headers, length)
        if "\r" in value or "\n" in value or "\x00" in value:
            raise ValueError(f"header {name} contains a line break or NUL")
        lines.append(f"{name}: {value}\r\n")
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")  # UnicodeEncodeError is a ValueError


def _encode_overriding(method: str, target: str, host: str, headers: Mapping[str, str],
                       length: int | None) -> bytes:
    fields = {"host": ("Host", host), "user-agent": ("User-Agent", USER_AGENT),
              "accept": ("Accept", "application/json")}
    for name, value in headers.items():
        fields[_checked_name(name)] = (name, value)
    lines = [_start(method, target, host).split("\r\n", 1)[0] + "\r\n"]
    for name, value in fields.values():
        if "\r" in value or "\n" in value or "\x00" in value:
            raise ValueError(f"header {name} contains a line break or NUL")
        lines.append(f"{name}: {value}\r\n")
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def parse_reply(buf: bytes, eof: bool, method: str = "POST") -> tuple[Response, bytes] | None:
    """The first complete reply in `buf` and the bytes after it, or None if more must be
    read (`eof`: the server has closed, nothing more will come). Raises _BadReply."""
    pos = 0
    while True:
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            if len(buf) - pos > MAX_HEAD:
                raise _BadReply("reply head too long")
            return None
        lines = buf[pos:end].split(b"\r\n")
        pos = end + 4
        version, _, rest = lines[0].partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit() \
                or rest[3:4] not in (b"", b" "):
            raise _BadReply(f"status line {lines[0][:40]!r}")
        status = int(code)
        if status == 101:
            raise _BadReply("the server switched protocols")
        if status >= 200 or status < 100:
            break
        # an interim reply (100 Continue, 103 Early Hints): the real one follows
    length: int | None = None
    chunked = te = False
    retry_after = None
    close = version == b"HTTP/1.0"
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in (b" ", b"\t"):
            raise _BadReply(f"header line {line[:40]!r}")
        low = name.lower()
        if low == b"content-length":
            try:
                n = int(value.strip())
            except ValueError:
                raise _BadReply("Content-Length is not a number") from None
            if n < 0 or (length is not None and n != length):
                raise _BadReply("bad or conflicting Content-Length")
            length = n
        elif low == b"transfer-encoding":
            te = True
            chunked = value.strip().lower().endswith(b"chunked")
        elif low == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            if b"close" in tokens:
                close = True
            elif b"keep-alive" in tokens and version == b"HTTP/1.0":
                close = False
        elif low == b"retry-after":
            retry_after = value.strip().decode("latin-1")
    if method == "HEAD" or status in _NO_BODY:
        body = b""
    elif chunked:
        got = _dechunk(buf, pos)
        if got is None:
            return None
        body, pos = got
    elif te or length is None:  # no length (or a coding other than chunked): runs to the close
        if len(buf) - pos > MAX_BODY:
            raise _BadReply("reply body too large")
        if not eof:
            return None
        body, pos, close = buf[pos:], len(buf), True
    else:
        if length > MAX_BODY:
            raise _BadReply("reply body too large")
        if len(buf) - pos < length:
            return None
        body, pos = buf[pos:pos + length], pos + length
    rest = buf[pos:]  # bytes beyond the reply: the connection will not be reused
    return Response(status, body, retry_after, not close and not rest), rest


def _dechunk(buf: bytes, pos: int) -> tuple[bytes, int] | None:
    """A chunked body starting at `pos`: (body, position after it), or None if incomplete."""
    parts: list[bytes] = []
    total = 0
    while True:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            if len(buf) - pos > MAX_HEAD:
                raise _BadReply("chunk line too long")
            return None
        try:
            size = int(buf[pos:end].split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadReply("bad chunk size") from None
        if size < 0 or total + size > MAX_BODY:
            raise _BadReply("bad chunk size")
        pos = end + 2
        if size == 0:  # then trailer fields, up to an empty line
            while True:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    return None
                line, pos = buf[pos:end], end + 2
                if not line:
                    return b"".join(parts), pos
        if len(buf) < pos + size + 2:
            return None
        if buf[pos + size:pos + size + 2] != b"\r\n":
            raise _BadReply("chunk not followed by CRLF")
        parts.append(buf[pos:pos + size])
        total += size
        pos += size + 2


def _receive(conn: _Conn) -> bool:
    """Append what the socket has to `conn.rest`; False at the end of the stream."""
    sock = conn.sock
    data = sock.recv(RECV_SIZE)
    if not data:
        return False
    conn.rest += data
    if isinstance(sock, ssl.SSLSocket):
        while sock.pending():  # decrypted bytes the kernel's readiness does not show
            conn.rest += sock.recv(RECV_SIZE)
    return True


def read_reply(conn: _Conn, deadline: float, method: str = "POST") -> Response:
    """Read one reply from `conn`, blocking (the first `recv` waits up to the socket's
    timeout, later ones up to `deadline`). Raises _BadReply, _Closed, socket.timeout, OSError."""
    first = True
    eof = False
    while True:
        got = parse_reply(conn.rest, eof, method) if conn.rest or eof else None
        if got is not None:
            reply, conn.rest = got
            return reply
        if eof:
            raise _Closed()
        if not first:  # the socket's own timeout covers one recv; keep to the deadline
            left = deadline - clock.monotonic()
            if left <= 0:
                raise socket.timeout("reply not complete within the read timeout")
            conn.sock.settimeout(left)
            conn.shortened = True
        first = False
        eof = not _receive(conn)


class Http:
    """Keep-alive connections to one endpoint, shared by the sending threads of a channel."""

    def __init__(self, endpoint: Endpoint, *, connect_timeout: float, read_timeout: float,
                 size: int, keepalive: float = 5.0, pool_timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.keepalive, self.pool_timeout = keepalive, pool_timeout
        self._slots: SimpleQueue[None] = SimpleQueue()  # a token per connection allowed
        for _ in range(size):
            self._slots.put(None)
        self._idle: deque[tuple[_Conn, float]] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self.opened = 0  # connections opened so far (for tests and benchmarks)
        self._starts: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[str, str]] = {}

    def __repr__(self) -> str:
        return (f"Http({self.endpoint.scheme}://{self.endpoint.host_header}, "
                f"connect={self.connect_timeout:g}s, read={self.read_timeout:g}s)")

    def _connect(self) -> _Conn:
        """A new connection (TCP, and TLS for https), within the connect timeout."""
        e = self.endpoint
        sock = socket.create_connection((e.host, e.port), timeout=self.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if e.scheme == "https":
                sock = tls_context().wrap_socket(sock, server_hostname=e.host)
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        self.opened += 1
        return _Conn(sock)

    def _take(self) -> _Conn | None:
        """An idle connection that is still usable, or None."""
        now = clock.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn, since = self._idle.pop()  # the most recently used is the likeliest alive
            if now - since < self.keepalive and not conn.dropped():
                return conn
            conn.close()

    def _give(self, conn: _Conn) -> None:
        if conn.shortened:
            conn.sock.settimeout(self.read_timeout)
            conn.shortened = False
        with self._lock:
            if not self._closed:
                self._idle.append((conn, clock.monotonic()))
                return
        conn.close()

    def encode(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
               body: bytes | None = None, headers: Mapping[str, str] | None = None) -> bytes:
        """The request's bytes; BadRequest if it cannot be written as given. The request
        line and default headers are made once per (method, path, params)."""
        try:
            key = (method, path, tuple(params.items()) if params else ())
            known = self._starts.get(key)
            if known is None:
                target = self.endpoint.target(path, params)
                known = target, _start(method, target, self.endpoint.host_header)
                if len(self._starts) >= 64:  # a new access token every two hours
                    self._starts.clear()
                self._starts[key] = known
            head = encode_head(method, known[0], self.endpoint.host_header, headers or {},
                               None if body is None and method in ("GET", "HEAD")
                               else len(body or b""), known[1])
        except ValueError as exc:  # an illegal header or target: never sendable as is
            raise BadRequest("bad_request", exc) from None
        return head + body if body else head

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, bytes, str | None]:
        """(status, body, Retry-After header); raises NotSent, NoAnswer or BadRequest."""
        message = self.encode(method, path, params=params, body=body, headers=headers)
        try:
            self._slots.get(timeout=self.pool_timeout)
        except Empty:
            raise NotSent("pool") from None
        try:
            conn = self._open()
            self._write(conn, message)
            try:
                reply = read_reply(conn, clock.monotonic() + self.read_timeout, method)
            except BaseException as exc:
                conn.close()
                raise _no_answer(exc) from None
            self._done(conn, reply)
            return reply.status, reply.body, reply.retry_after
        finally:
            self._slots.put(None)

    def _open(self) -> _Conn:
        conn = self._take()
        if conn is not None:
            return conn
        try:
            return self._connect()
        except OSError as exc:  # refused, unreachable, timed out, DNS, TLS handshake
            raise NotSent("connect", exc) from None

    @staticmethod
    def _write(conn: _Conn, message: bytes) -> None:
        try:
            conn.sock.sendall(message)
        except OSError as exc:  # not all of it left: the server cannot act on a part
            conn.close()
            raise NotSent("write", exc) from None

    def _done(self, conn: _Conn, reply: Response) -> None:
        if reply.keep_alive:
            self._give(conn)
        else:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
        for conn, _ in idle:
            conn.close()


def _no_answer(exc: BaseException) -> BaseException:
    """The error for a request that was written and then got no complete reply."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return NoAnswer("timeout", exc)
    if isinstance(exc, _Closed):
        return NoAnswer("connection_lost", "closed by the server")
    if isinstance(exc, _BadReply):
        return NoAnswer("bad_reply", str(exc))
    if isinstance(exc, OSError):
        return NoAnswer("connection_lost", exc)
    return exc  # not a network failure: let it through
