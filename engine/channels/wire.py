"""A small pooled HTTP/1.1 client for the channels, on the standard library's http.client.

Why not httpx.Client: its layers (URL models parsed three times per request, header
normalisation, redirect and auth hooks, h11) cost 0.6 ms of CPU per request (httpcore alone
0.3 ms, http.client 0.14 ms, measured on the 2-vCPU dev machine). Through one channel to the
local fake server that was ~800 sends/s with httpx.Client, ~1,000/s with httpcore and ~2,000/s
or more with http.client, against the issue's goal of 2,000. TLS uses httpx's verifying
context (certifi's CA bundle), made once per process.

What the pool guarantees:
- separate connect and read timeouts (the TLS handshake counts as connecting);
- a connection is used by one thread at a time; at most `size` are open, a caller waits up to
  `pool_timeout` for one;
- idle connections are reused for at most `keepalive` seconds and only if the server has not
  closed them (checked with a zero-timeout poll before reuse, as urllib3 does), so a reply
  lost on a stale connection is rare rather than routine;
- failures say how far the request got: `NotSent` (connecting, or writing the request, failed:
  the provider cannot have acted on it) or `NoAnswer` (the request was written, no complete
  reply came: the outcome is unknown).
"""
from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Mapping
from urllib.parse import urlencode, urlsplit
from .. import clock

USER_AGENT = "zailai/0.1"


class WireError(Exception):
    """A request that got no reply; `kind` is a short code (connect, write, timeout ...)."""

    def __init__(self, kind: str, cause: BaseException | None = None) -> None:
        super().__init__(kind if cause is None else f"{kind} ({type(cause).__name__})")
        self.kind = kind


class NotSent(WireError):
    """The request did not reach the provider complete: it cannot have been acted on."""


class NoAnswer(WireError):
    """The request was written but no complete reply came: it may have been acted on."""


class BadRequest(WireError):
    """The request could not be written as given (e.g. a header that is not Latin-1)."""


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


class _OneWrite:
    """Writes the head and a bytes body of a request in one send(): one syscall and one TCP
    segment instead of two (http.client sends them separately since 3.x)."""

    _buffer: list[bytes]

    def _send_output(self, message_body: object = None, encode_chunked: bool = False) -> None:
        if isinstance(message_body, bytes) and not encode_chunked \
                and isinstance(getattr(self, "_buffer", None), list):
            self._buffer.extend((b"", message_body))
            msg = b"\r\n".join(self._buffer)
            del self._buffer[:]
            self.send(msg)  # type: ignore[attr-defined]
            return
        super()._send_output(message_body, encode_chunked)  # type: ignore[misc]


class _Connection(_OneWrite, http.client.HTTPConnection):
    read_timeout = 10.0

    def connect(self) -> None:
        super().connect()  # create_connection with self.timeout (connect) and TCP_NODELAY
        self.sock.settimeout(self.read_timeout)


class _TLSConnection(_OneWrite, http.client.HTTPSConnection):
    read_timeout = 10.0

    def connect(self) -> None:
        super().connect()  # TCP connect and TLS handshake, both under the connect timeout
        self.sock.settimeout(self.read_timeout)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True if the server closed (or sent junk on) an idle connection."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Http:
    """Keep-alive connections to one endpoint, shared by the sending threads of a channel."""

    def __init__(self, endpoint: Endpoint, *, connect_timeout: float, read_timeout: float,
                 size: int, keepalive: float = 5.0, pool_timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.keepalive, self.pool_timeout = keepalive, pool_timeout
        self._slots = threading.BoundedSemaphore(size)
        self._idle: deque[tuple[http.client.HTTPConnection, float]] = deque()
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return (f"Http({self.endpoint.scheme}://{self.endpoint.host_header}, "
                f"connect={self.connect_timeout:g}s, read={self.read_timeout:g}s)")

    def _new(self) -> http.client.HTTPConnection:
        e = self.endpoint
        conn: _Connection | _TLSConnection
        if e.scheme == "https":
            conn = _TLSConnection(e.host, e.port, timeout=self.connect_timeout,
                                  context=tls_context())
        else:
            conn = _Connection(e.host, e.port, timeout=self.connect_timeout)
        conn.read_timeout = self.read_timeout
        return conn

    def _take(self) -> http.client.HTTPConnection:
        now = clock.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, since = self._idle.pop()  # the most recently used is the likeliest alive
            if now - since < self.keepalive and not _dropped(conn):
                return conn
            conn.close()
        return self._new()

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append((conn, clock.monotonic()))
                return
        conn.close()

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, bytes, str | None]:
        """(status, body, Retry-After header); raises NotSent or NoAnswer."""
        if not self._slots.acquire(timeout=self.pool_timeout):
            raise NotSent("pool")
        try:
            return self._request(method, self.endpoint.target(path, params), body, headers)
        finally:
            self._slots.release()

    def _request(self, method: str, target: str, body: bytes | None,
                 headers: Mapping[str, str] | None) -> tuple[int, bytes, str | None]:
        conn = self._take()
        try:
            if conn.sock is None:
                try:
                    conn.connect()
                except (OSError, http.client.HTTPException) as exc:
                    raise NotSent("connect", exc) from None
            head = {"Host": self.endpoint.host_header, "User-Agent": USER_AGENT,
                    "Accept": "application/json", **(headers or {})}
            try:
                conn.request(method, target, body=body, headers=head)
            except (OSError, http.client.HTTPException) as exc:
                raise NotSent("write", exc) from None
            except ValueError as exc:  # an illegal header or target: never sendable as is
                raise BadRequest("bad_request", exc) from None
            try:
                response = conn.getresponse()
                data = response.read()
            except (socket.timeout, TimeoutError) as exc:
                raise NoAnswer("timeout", exc) from None
            except (OSError, http.client.HTTPException) as exc:
                raise NoAnswer("connection_lost", exc) from None
        except WireError:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._give(conn)
        return response.status, data, response.getheader("Retry-After")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
        for conn, _ in idle:
            conn.close()
