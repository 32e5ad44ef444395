"""The channels' HTTP/1.1 client (engine/channels/wire.py) against real local servers.

Each test runs a small TCP server on 127.0.0.1 whose replies are written byte for byte, so
the cases a provider or a network can produce are exact: keep-alive reuse, a server closing
idle or busy connections, replies split across packets, chunked and close-framed bodies,
interim 1xx replies, timeouts while connecting versus while waiting for the reply, and TLS.
"""
from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.channels import wire
from engine.channels.wire import BadRequest, Endpoint, Http, NoAnswer, NotSent

Handler = Callable[[socket.socket, "Requests"], None]


def ok_reply(body: bytes = b'{"ok":1}', extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class Requests:
    """Reads the requests of one connection: head and Content-Length body."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def next(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buf = rest[length:]
        return head + b"\r\n\r\n" + rest[:length]


class Server:
    """Accepts connections and runs `handler(sock, requests)` for each on its own thread."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.seen: list[bytes] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            self.handler(sock, _Recording(sock, self.seen))
        except OSError:
            pass
        finally:
            sock.close()

    def http(self, scheme: str = "http", **kw: float) -> Http:
        opts = {"connect_timeout": 2.0, "read_timeout": 2.0, "size": 4, **kw}
        host = "localhost" if scheme == "https" else "127.0.0.1"
        return Http(Endpoint.parse(f"{scheme}://{host}:{self.port}/api"),
                    connect_timeout=opts["connect_timeout"], read_timeout=opts["read_timeout"],
                    size=int(opts["size"]))

    def close(self) -> None:
        self._stop = True
        self.listener.close()


class _Recording(Requests):
    def __init__(self, sock: socket.socket, seen: list[bytes]) -> None:
        super().__init__(sock)
        self.seen = seen

    def next(self) -> bytes | None:
        req = super().next()
        if req is not None:
            self.seen.append(req)
        return req


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(handler: Handler, tls: ssl.SSLContext | None = None) -> Server:
        servers.append(Server(handler, tls))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def replies(*answers: bytes, then_close: bool = False) -> Handler:
    """Answer each request on a connection with the next of `answers` (the last repeats)."""
    def handler(sock: socket.socket, requests: Requests) -> None:
        n = 0
        while requests.next() is not None:
            sock.sendall(answers[min(n, len(answers) - 1)])
            n += 1
            if then_close:
                return
    return handler


def post(http: Http, body: bytes = b'{"a":1}') -> tuple[int, bytes, str | None]:
    return http.request("POST", "/send", params={"access_token": "T"}, body=body,
                        headers={"Content-Type": "application/json", "X-Zailai-Item-Id": "i-1"})


# -- the request ---------------------------------------------------------------------------------

def test_the_request_is_one_well_formed_http11_message(serve: Callable[..., Server]) -> None:
    server = serve(replies(ok_reply()))
    http = server.http()
    assert post(http, b'{"x":"\xe4\xb8\xad"}') == (200, b'{"ok":1}', None)
    (req,) = server.seen
    head, _, body = req.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/send?access_token=T HTTP/1.1"
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])}
    assert headers[b"host"] == f"127.0.0.1:{server.port}".encode()
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"x-zailai-item-id"] == b"i-1"
    assert body == b'{"x":"\xe4\xb8\xad"}'
    http.close()


@pytest.mark.parametrize("headers", [{"X-Evil": "a\r\nInjected: 1"}, {"Bad Name": "x"},
                                     {"X-Name": "用户"}, {"Content-Length": "5"}])
def test_a_request_that_cannot_be_written_as_given_is_bad_request(
        serve: Callable[..., Server], headers: dict[str, str]) -> None:
    server = serve(replies(ok_reply()))
    http = server.http()
    with pytest.raises(BadRequest):
        http.request("POST", "/send", body=b"{}", headers=headers)
    assert server.seen == [] and server.connections == 0  # nothing left the client
    http.close()


# -- keep-alive ----------------------------------------------------------------------------------

def test_a_keep_alive_connection_is_reused(serve: Callable[..., Server]) -> None:
    server = serve(replies(ok_reply()))
    http = server.http()
    for _ in range(5):
        assert post(http)[0] == 200
    assert server.connections == 1 and len(server.seen) == 5 and http.opened == 1
    http.close()


def test_an_idle_connection_the_server_closed_is_not_reused(
        serve: Callable[..., Server]) -> None:
    server = serve(replies(ok_reply(), then_close=True))  # one reply, then the server closes
    http = server.http()
    assert post(http)[0] == 200
    time.sleep(0.1)  # the server's FIN arrives while the connection is idle
    assert post(http)[0] == 200  # not NoAnswer: the closed connection was noticed and dropped
    assert server.connections == 2
    http.close()


@pytest.mark.parametrize("reply", [
    ok_reply(extra=b"Connection: close\r\n"),
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",  # HTTP/1.0 without keep-alive
    ok_reply() + b"junk",  # bytes beyond the reply: the connection is not trusted again
])
def test_a_connection_is_not_reused_when_the_reply_says_so_or_is_followed_by_junk(
        serve: Callable[..., Server], reply: bytes) -> None:
    server = serve(replies(reply))
    http = server.http()
    assert post(http)[0] == 200
    assert post(http)[0] == 200
    assert server.connections == 2
    http.close()


def test_at_most_size_connections_are_open(serve: Callable[..., Server]) -> None:
    def slow(sock: socket.socket, requests: Requests) -> None:
        while requests.next() is not None:
            time.sleep(0.05)
            sock.sendall(ok_reply())

    server = serve(slow)
    http = server.http(size=2)
    threads = [threading.Thread(target=post, args=(http,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(server.seen) == 6 and server.connections <= 2
    http.close()


# -- reading replies -----------------------------------------------------------------------------

def test_a_reply_split_across_packets(serve: Callable[..., Server]) -> None:
    reply = ok_reply(b'{"errcode":0,"msgid":42}', extra=b"Retry-After: 3\r\n")

    def dribble(sock: socket.socket, requests: Requests) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while requests.next() is not None:
            for cut in (5, 17, len(reply) - 30, len(reply) - 2, len(reply)):
                start = getattr(dribble, "at", 0)
                sock.sendall(reply[start:cut])
                dribble.at = cut  # type: ignore[attr-defined]
                time.sleep(0.02)
            dribble.at = 0  # type: ignore[attr-defined]

    server = serve(dribble)
    http = server.http()
    assert post(http) == (200, b'{"errcode":0,"msgid":42}', "3")
    assert post(http) == (200, b'{"errcode":0,"msgid":42}', "3")
    assert server.connections == 1
    http.close()


def test_a_chunked_reply_is_decoded(serve: Callable[..., Server]) -> None:
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"7;ext=1\r\n{\"errco\r\n" b"A\r\nde\":0,\"x\":\r\n" b"1\r\n1\r\n" b"1\r\n}\r\n"
             b"0\r\nX-Trailer: t\r\n\r\n")
    server = serve(replies(reply))
    http = server.http()
    assert post(http) == (200, b'{"errcode":0,"x":1}', None)
    assert post(http)[1] == b'{"errcode":0,"x":1}'
    assert server.connections == 1  # a chunked reply keeps the connection usable
    http.close()


def test_a_reply_without_length_runs_to_the_close(serve: Callable[..., Server]) -> None:
    server = serve(replies(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"ok\":2}",
                           then_close=True))
    http = server.http()
    assert post(http) == (200, b'{"ok":2}', None)
    assert post(http)[0] == 200 and server.connections == 2
    http.close()


def test_interim_replies_are_skipped(serve: Callable[..., Server]) -> None:
    server = serve(replies(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
                           b"Link: </x>\r\n\r\n" + ok_reply()))
    http = server.http()
    assert post(http) == (200, b'{"ok":1}', None)
    http.close()


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
def test_non_2xx_replies_come_back_with_their_status_and_body(
        serve: Callable[..., Server], status: int) -> None:
    body = b'{"code":"SYSTEM_ERROR"}'
    server = serve(replies(f"HTTP/1.1 {status} Whatever\r\nRetry-After: 7\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body))
    http = server.http()
    assert post(http) == (status, body, "7")
    assert post(http)[0] == status and server.connections == 1
    http.close()


@pytest.mark.parametrize("reply", [b"garbage\r\n\r\n", b"HTTP/1.1 2x0 OK\r\n\r\n",
                                   b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                                   b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])
def test_an_unreadable_reply_is_no_answer(serve: Callable[..., Server], reply: bytes) -> None:
    server = serve(replies(reply))
    http = server.http()
    with pytest.raises(NoAnswer) as err:
        post(http)
    assert err.value.kind == "bad_reply"  # the request was sent: the outcome is unknown
    assert len(server.seen) == 1
    http.close()


# -- failures: how far did the request get? -------------------------------------------------------

def test_connection_refused_is_not_sent() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    http = Http(Endpoint.parse(f"http://127.0.0.1:{port}"), connect_timeout=1.0,
                read_timeout=1.0, size=1)
    with pytest.raises(NotSent) as err:
        post(http)
    assert err.value.kind == "connect"


def test_a_connect_timeout_is_not_sent() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: once the backlog is full, SYNs go unanswered
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.1)
        http = Http(Endpoint.parse(f"http://127.0.0.1:{port}"), connect_timeout=0.3,
                    read_timeout=5.0, size=1)
        with pytest.raises(NotSent) as err:
            post(http)
        assert err.value.kind == "connect"
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_a_read_timeout_after_the_request_is_no_answer(serve: Callable[..., Server]) -> None:
    def silent(sock: socket.socket, requests: Requests) -> None:
        requests.next()
        time.sleep(1.0)  # read the request, never answer

    server = serve(silent)
    http = server.http(read_timeout=0.2)
    with pytest.raises(NoAnswer) as err:
        post(http)
    assert err.value.kind == "timeout" and len(server.seen) == 1


def test_the_read_timeout_bounds_the_whole_reply_not_each_packet(
        serve: Callable[..., Server]) -> None:
    def drip(sock: socket.socket, requests: Requests) -> None:
        requests.next()
        for byte in ok_reply():  # each byte well within the timeout, the reply far beyond it
            sock.sendall(bytes([byte]))
            time.sleep(0.02)

    server = serve(drip)
    http = server.http(read_timeout=0.3)
    with pytest.raises(NoAnswer) as err:
        post(http)
    assert err.value.kind == "timeout"


def test_a_connection_dropped_after_the_request_is_no_answer(
        serve: Callable[..., Server]) -> None:
    def drop(sock: socket.socket, requests: Requests) -> None:
        requests.next()  # read it, then close without a word

    server = serve(drop)
    http = server.http()
    with pytest.raises(NoAnswer) as err:
        post(http)
    assert err.value.kind == "connection_lost" and len(server.seen) == 1


def test_a_reply_cut_short_is_no_answer(serve: Callable[..., Server]) -> None:
    server = serve(replies(ok_reply()[:-3], then_close=True))
    http = server.http()
    with pytest.raises(NoAnswer) as err:
        post(http)
    assert err.value.kind == "connection_lost"


# -- TLS -------------------------------------------------------------------------------------------

def _certificate(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_wraps_the_connection_in_verified_tls(
        serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _certificate(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server = serve(replies(ok_reply()), tls=server_ctx)

    untrusted = server.http("https")  # the real context: this certificate is not trusted
    with pytest.raises(NotSent) as err:
        post(untrusted)
    assert err.value.kind == "connect"

    client_ctx = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(wire, "tls_context", lambda: client_ctx)
    http = server.http("https")
    for _ in range(3):
        assert post(http) == (200, b'{"ok":1}', None)
    assert http.opened == 1  # kept alive over TLS too
    http.close()

