"""A fake WeChat (and SMS, WeCom, webhook) server for tests: a real HTTP server on 127.0.0.1.

Endpoints, as the channels call them:

    POST /cgi-bin/stable_token                      {grant_type, appid, secret, force_refresh}
    POST /cgi-bin/message/subscribe/send?access_token=T   subscription message -> msgid
    POST /v3/marketing/favor/users/{openid}/coupons  WeChat Pay v3, RSA signature verified
    GET  /cgi-bin/gettoken?corpid=&corpsecret=      WeCom token
    POST /cgi-bin/message/send?access_token=T       WeCom text message -> msgid
    POST /v1/sms/send                               SMS gateway (Bearer key) -> message_id
    POST /webhook                                   HMAC-SHA256 verified -> id

Faults are queued per endpoint (`fake.fault("subscribe", "http_500", "45009")`); each request
to the endpoint takes the next one. A fault is `http_NNN` (that status, request not processed),
`delay` or `delay:SECONDS` (processed and recorded, then the reply is late, so a client read
timeout leaves the outcome unknown), `drop` (connection closed before processing), a WeChat
errcode such as `-1`, `45009`, `43101`, `40001` (also invalidates the current tokens), `47003`,
or a provider code such as `SYSTEM_ERROR`, `RULE_LIMIT`, `RATE_LIMITED`.

Every request is in `fake.requests`; every ACCEPTED send (a message delivered, a coupon issued)
is in `fake.accepted`, once: a coupon resent with the same out_request_no returns the same
coupon_id and is not recorded again. `fake.duplicates()` lists item ids accepted more than once.

In a test: the `fake_wechat` fixture (tests/conftest.py). As a process, for tests that run the
daemon: `python -m tests.fake_wechat --port 0 --merchant-key-out key.pem` prints one JSON line
{"url", "port", "env"} and serves until SIGTERM; `/_fake/state`, `/_fake/faults`,
`/_fake/reset` and `/_fake/config` control it over HTTP.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import itertools
import json
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HOST = "127.0.0.1"
APPID = "wx0123456789abcdef"
APPSECRET = "fake-appsecret-7f3a9c"
MCHID = "1900000001"
MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
CORPID = "ww0123456789fake"
AGENTID = 1000002
WECOM_SECRET = "fake-wecom-secret-91be"
SMS_KEY = "fake-sms-key-4d1e"
WEBHOOK_SECRET = "fake-webhook-secret-c0de"
TEMPLATE_ID = "tmpl-fake-0001"
STOCK_ID = "9856000"

# keyword type -> a check of the value (a subset of WECHAT.md §1)
_LIMITS: dict[str, re.Pattern[str]] = {
    "thing": re.compile(r"^[^\x00-\x1f]{1,20}$"),
    "number": re.compile(r"^[0-9.]{1,32}$"),
    "letter": re.compile(r"^[A-Za-z]{1,32}$"),
    "character_string": re.compile(r"^[\x21-\x7e]{1,32}$"),
    "phrase": re.compile(r"^[\u4e00-\u9fff]{1,5}$"),
    "name": re.compile(r"^[^\x00-\x1f]{1,20}$"),
    "amount": re.compile(r"^[^\x00-\x1f0-9]?[0-9.]{1,13}元?$"),
}
_KEYWORD = re.compile(r"^([a-z_]+?)(\d+)$")
_AUTH = re.compile(r'(\w+)="([^"]*)"')
_COUPON_PATH = re.compile(r"^/v3/marketing/favor/users/([^/]+)/coupons$")
_REQUEST_NO = re.compile(r"^[A-Za-z0-9|_*\-]{1,128}$")
COUPON_ERRORS = {  # provider code -> HTTP status
    "SYSTEM_ERROR": 500, "FREQUENCY_LIMITED": 429, "PARAM_ERROR": 400, "RULE_LIMIT": 400,
    "USER_AL_GET_COUPON": 400, "NOT_ENOUGH": 400, "用户非法": 403, "SIGN_ERROR": 401,
}
SMS_ERRORS = {"RATE_LIMITED": 429, "SYSTEM_BUSY": 503, "INVALID_PHONE": 400,
              "BLACKLISTED": 403, "UNAUTHORIZED": 401}
ENDPOINTS = ("stable_token", "subscribe", "coupon", "wecom_token", "wecom", "sms", "webhook")


@lru_cache(maxsize=None)
def merchant_key(label: str = "default") -> tuple[str, str]:
    """A fresh RSA-2048 test key pair (private PEM, public PEM), one per label per process."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public.decode("ascii")


def load_templates(path: str | Path) -> dict[str, list[str]]:
    """template id -> keywords, from a project's templates.yaml."""
    return dict(_templates(str(path)))


@lru_cache(maxsize=8)
def _templates(path: str) -> tuple[tuple[str, list[str]], ...]:
    import yaml
    data = yaml.safe_load(Path(path).read_text("utf-8")) or {}
    return tuple((str(t["id"]), list((t.get("keywords") or {}).keys())) for t in data.values())


@dataclass
class Accepted:
    endpoint: str
    item_id: str  # X-Zailai-Item-Id header, webhook item_id, or the coupon's out_request_no
    recipient: str
    provider_id: str
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class Seen:
    endpoint: str
    method: str
    path: str
    status: int
    fault: str = ""
    item_id: str = ""


class FakeWeChat:
    def __init__(self, *, port: int = 0, templates: Mapping[str, Iterable[str]] | None = None,
                 stocks: Mapping[str, int] | None = None) -> None:
        self.port = port
        self.templates: dict[str, set[str]] = {TEMPLATE_ID: {"thing1", "amount2", "date3",
                                                             "thing4"}}
        for tid, keys in (templates or {}).items():
            self.templates[tid] = set(keys)
        self.stocks: dict[str, int | None] = {STOCK_ID: None, **(stocks or {})}
        self.merchant_keys: dict[str, rsa.RSAPublicKey] = {}
        self.token_expires_in = 7200
        self.delay = 0.5  # seconds for a bare `delay` fault
        self.lock = threading.Lock()
        self.faults: dict[str, deque[str]] = {e: deque() for e in ENDPOINTS}
        self.accepted: list[Accepted] = []
        self.requests: list[Seen] = []
        self.token_calls: Counter[str] = Counter()  # stable_token, stable_token_forced, wecom
        self.tokens: set[str] = set()  # valid access tokens (WeChat and WeCom)
        self.issued: list[str] = []  # every access token ever handed out
        self._current = ""  # the stable token handed out in normal mode
        self._current_expiry = 0.0
        self._coupons: dict[str, Accepted] = {}  # out_request_no -> the issued coupon
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.connections_opened = 0

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> "FakeWeChat":
        server = _Server((HOST, self.port), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="fake-wechat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self.close_connections()
        self._server = None

    def close_connections(self) -> None:
        """Close every open client connection, as a server does with idle keep-alives."""
        with self.lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "FakeWeChat":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a test sets up ---------------------------------------------------------------------

    def fault(self, endpoint: str, *faults: str) -> None:
        if endpoint not in self.faults:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)}")
        with self.lock:
            self.faults[endpoint].extend(str(f) for f in faults)

    def trust_merchant_key(self, public_pem: str, serial: str = MERCHANT_SERIAL) -> None:
        key = serialization.load_pem_public_key(public_pem.encode("ascii"))
        assert isinstance(key, rsa.RSAPublicKey)
        self.merchant_keys[serial] = key

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()
            self._current = ""

    def reset(self) -> None:
        with self.lock:
            for q in self.faults.values():
                q.clear()
            self.accepted.clear()
            self.requests.clear()
            self.token_calls.clear()
            self._coupons.clear()

    def env(self, private_pem: str | None = None) -> dict[str, str]:
        """The environment variables the example engine.yaml names, holding this fake's secrets."""
        return {"WECHAT_APPSECRET": APPSECRET, "WECOM_SECRET": WECOM_SECRET,
                "SMS_API_KEY": SMS_KEY, "WEBHOOK_SECRET": WEBHOOK_SECRET,
                "WECHATPAY_KEY": private_pem or merchant_key()[0],
                "WECHATPAY_SERIAL": MERCHANT_SERIAL}

    def options(self, kind: str) -> dict[str, Any]:
        """`channels:` options for a channel of `kind` pointing at this server."""
        return {
            "console": {},
            "webhook": {"url": f"{self.url}/webhook", "secret_env": "WEBHOOK_SECRET"},
            "wechat_subscribe": {"appid": APPID, "secret_env": "WECHAT_APPSECRET",
                                 "base_url": self.url},
            "wechat_coupon": {"mchid": MCHID, "appid": APPID, "key_env": "WECHATPAY_KEY",
                              "serial_env": "WECHATPAY_SERIAL", "base_url": self.url},
            "sms": {"base_url": self.url, "secret_env": "SMS_API_KEY", "sign_name": "再来小店"},
            "wecom": {"base_url": self.url, "corpid": CORPID, "agentid": AGENTID,
                      "secret_env": "WECOM_SECRET"},
        }[kind]

    # -- what a test asserts ---------------------------------------------------------------------

    def accepted_for(self, endpoint: str) -> list[Accepted]:
        with self.lock:
            return [a for a in self.accepted if a.endpoint == endpoint]

    def requests_to(self, endpoint: str) -> list[Seen]:
        with self.lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    def duplicates(self) -> dict[tuple[str, str], int]:
        """(endpoint, item id) accepted more than once: must be empty."""
        with self.lock:
            return self._duplicates()

    def _duplicates(self) -> dict[tuple[str, str], int]:
        counts = Counter((a.endpoint, a.item_id) for a in self.accepted if a.item_id)
        return {k: n for k, n in counts.items() if n > 1}

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"accepted": [asdict(a) for a in self.accepted],
                    "requests": [asdict(r) for r in self.requests],
                    "token_calls": dict(self.token_calls),
                    "duplicates": [[e, i, n] for (e, i), n in self._duplicates().items()]}

    # -- internals used by the handler -----------------------------------------------------------

    def next_fault(self, endpoint: str) -> str:
        with self.lock:
            q = self.faults[endpoint]
            return q.popleft() if q else ""

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}"

    def accept(self, record: Accepted) -> None:
        with self.lock:
            self.accepted.append(record)


def _delay_of(fault: str, default: float) -> float | None:
    if fault == "delay":
        return default
    if fault.startswith("delay:"):
        return float(fault.split(":", 1)[1])
    return None


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 drops SYNs when many clients connect at once
    daemon_threads = True


class _Headers(dict[str, str]):
    """Request headers by lower-cased name (all the fake reads)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeWeChat/1"

    def parse_request(self) -> bool:
        """A lean replacement for the stdlib's (which runs the email parser on every request):
        the request line and header lines, nothing else. Keeps the fake cheap in benchmarks."""
        words = self.raw_requestline.decode("iso-8859-1").rstrip("\r\n").split()
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            self.close_connection = True
            return False
        self.command, self.path, self.request_version = words
        headers = _Headers()
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("iso-8859-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = headers  # type: ignore[assignment]
        self.close_connection = (self.request_version != "HTTP/1.1"
                                 or headers.get("connection", "").lower() == "close")
        return True

    @property
    def fake(self) -> FakeWeChat:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.fake.lock:
            self.fake._connections.add(self.connection)
            self.fake.connections_opened += 1

    def finish(self) -> None:
        with self.fake.lock:
            self.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # -- plumbing --------------------------------------------------------------------------------

    _raw: bytes = b""  # the request body as received (signatures are over these bytes)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(length) if length else b""
        return self._raw

    def _reply(self, status: int, data: Any, delay: float | None = None) -> None:
        body = json.dumps(data, ensure_ascii=False).encode("utf-8")
        if delay:
            time.sleep(delay)
        head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Status'}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        try:
            self.wfile.write(head.encode("ascii") + body)
        except OSError:
            self.close_connection = True

    def _log(self, endpoint: str, status: int, fault: str, item_id: str = "") -> None:
        with self.fake.lock:
            self.fake.requests.append(Seen(endpoint, self.command, self.path, status, fault,
                                           item_id))

    def _route(self) -> str:
        path = urlsplit(self.path).path
        if path == "/cgi-bin/stable_token":
            return "stable_token"
        if path == "/cgi-bin/message/subscribe/send":
            return "subscribe"
        if _COUPON_PATH.match(path):
            return "coupon"
        if path == "/cgi-bin/gettoken":
            return "wecom_token"
        if path == "/cgi-bin/message/send":
            return "wecom"
        if path == "/v1/sms/send":
            return "sms"
        if path == "/webhook":
            return "webhook"
        if path.startswith("/_fake/"):
            return "control"
        return ""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        body = self._body()
        endpoint = self._route()
        if endpoint == "control":
            self._control(urlsplit(self.path).path, body)
            return
        if not endpoint:
            self._log("unknown", 404, "")
            self._reply(404, {"errcode": 404, "errmsg": "no such endpoint"})
            return
        fault = self.fake.next_fault(endpoint)
        item_id = self.headers.get("X-Zailai-Item-Id", "")
        if fault.startswith("http_"):
            status = int(fault[5:])
            self._log(endpoint, status, fault, item_id)
            self._reply(status, {"code": "SYSTEM_ERROR", "message": "fault", "errcode": -1})
            return
        if fault == "drop":
            self._log(endpoint, 0, fault, item_id)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        delay = _delay_of(fault, self.fake.delay)
        fault_code = "" if delay is not None else fault
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            self._log(endpoint, 200, fault, item_id)
            self._reply(200, {"errcode": 47001, "errmsg": "data format error"})
            return
        handler = getattr(self, "_" + endpoint)
        status, reply = handler(data, fault_code, item_id)
        self._log(endpoint, status, fault, item_id)
        self._reply(status, reply, delay)

    # -- WeChat ----------------------------------------------------------------------------------

    def _token(self) -> str:
        return parse_qs(urlsplit(self.path).query).get("access_token", [""])[0]

    def _errcode(self, fault: str) -> int | None:
        if fault.lstrip("-").isdigit():
            code = int(fault)
            if code in (40001, 40014, 42001):
                self.fake.expire_tokens()
            return code
        return None

    def _stable_token(self, data: dict[str, Any], fault: str, item_id: str) -> tuple[int, Any]:
        fake = self.fake
        force = bool(data.get("force_refresh"))
        with fake.lock:
            fake.token_calls["stable_token_forced" if force else "stable_token"] += 1
        code = self._errcode(fault)
        if code is not None:
            return 200, {"errcode": code, "errmsg": "fault"}
        if data.get("grant_type") != "client_credential":
            return 200, {"errcode": 40002, "errmsg": "invalid grant_type"}
        if data.get("appid") != APPID:
            return 200, {"errcode": 40013, "errmsg": "invalid appid"}
        if data.get("secret") != APPSECRET:
            return 200, {"errcode": 40125, "errmsg": "invalid appsecret"}
        with fake.lock:
            now = time.monotonic()
            if force or not fake._current or fake._current_expiry <= now:
                if force and fake._current:
                    fake.tokens.discard(fake._current)  # a forced refresh invalidates the old
                fake._current = "ACCESS_" + hashlib.sha256(
                    f"{now}-{next(fake._ids)}".encode()).hexdigest()[:40]
                fake._current_expiry = now + fake.token_expires_in
                fake.tokens.add(fake._current)
                fake.issued.append(fake._current)
            left = max(1, int(fake._current_expiry - now))
            return 200, {"access_token": fake._current, "expires_in": left}

    def _subscribe(self, data: dict[str, Any], fault: str, item_id: str) -> tuple[int, Any]:
        fake = self.fake
        code = self._errcode(fault)
        if code is not None:
            return 200, {"errcode": code, "errmsg": f"fault {code}"}
        with fake.lock:
            valid = self._token() in fake.tokens
        if not valid:
            return 200, {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
        touser, template = data.get("touser"), data.get("template_id")
        if not touser or not isinstance(touser, str):
            return 200, {"errcode": 40003, "errmsg": "invalid openid"}
        if template not in fake.templates:
            return 200, {"errcode": 40037, "errmsg": "invalid template_id"}
        values = data.get("data")
        if not isinstance(values, dict) or not values:
            return 200, {"errcode": 47003, "errmsg": "argument invalid! data is empty"}
        for key, item in values.items():
            if key not in fake.templates[template] or not isinstance(item, dict) \
                    or not isinstance(item.get("value"), str):
                return 200, {"errcode": 47003, "errmsg": f"argument invalid! data.{key} invalid"}
            m = _KEYWORD.match(key)
            rule = _LIMITS.get(m.group(1)) if m else None
            if rule is not None and not rule.match(item["value"]):
                return 200, {"errcode": 47003,
                             "errmsg": f"argument invalid! data.{key}.value invalid"}
        if data.get("miniprogram_state", "formal") not in ("developer", "trial", "formal"):
            return 200, {"errcode": 47003, "errmsg": "argument invalid! miniprogram_state"}
        msgid = fake.new_id("9")
        fake.accept(Accepted("subscribe", item_id, touser, msgid, data))
        return 200, {"errcode": 0, "errmsg": "ok", "msgid": int(msgid)}

    # -- WeChat Pay v3 ---------------------------------------------------------------------------

    def _verify(self, raw_body: str) -> str:
        """'' when the Authorization header is a valid APIv3 signature, else why not."""
        header = self.headers.get("Authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme != "WECHATPAY2-SHA256-RSA2048":
            return "missing or unknown authorization scheme"
        parts = dict(_AUTH.findall(rest))
        if parts.get("mchid") != MCHID:
            return "mchid does not match"
        key = self.fake.merchant_keys.get(parts.get("serial_no", ""))
        if key is None:
            return "unknown certificate serial_no"
        try:
            ts = int(parts.get("timestamp", ""))
        except ValueError:
            return "bad timestamp"
        if abs(time.time() - ts) > 300:
            return "timestamp too old"
        message = f"{self.command}\n{self.path}\n{ts}\n{parts.get('nonce_str', '')}\n{raw_body}\n"
        try:
            key.verify(base64.b64decode(parts.get("signature", "")), message.encode("utf-8"),
                       padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return "signature does not verify"
        return ""

    def _coupon(self, data: dict[str, Any], fault: str, item_id: str) -> tuple[int, Any]:
        fake = self.fake
        if fault:
            return COUPON_ERRORS.get(fault, 400), {"code": fault, "message": f"fault {fault}"}
        problem = self._verify(self._raw.decode("utf-8"))
        if problem:
            return 401, {"code": "SIGN_ERROR", "message": f"签名错误: {problem}"}
        m = _COUPON_PATH.match(urlsplit(self.path).path)
        openid = unquote(m.group(1)) if m else ""
        number = str(data.get("out_request_no") or "")
        if not _REQUEST_NO.match(number) or not data.get("stock_id"):
            return 400, {"code": "PARAM_ERROR", "message": "out_request_no or stock_id invalid"}
        if data.get("appid") != APPID:
            return 400, {"code": "PARAM_ERROR", "message": "商户号和APPID不匹配"}
        if data.get("stock_creator_mchid") != MCHID:
            return 400, {"code": "PARAM_ERROR", "message": "stock_creator_mchid 错误"}
        stock = str(data["stock_id"])
        with fake.lock:
            if number in fake._coupons:  # idempotent re-entry: the same coupon, recorded once
                return 200, {"coupon_id": fake._coupons[number].provider_id}
            if stock not in fake.stocks:
                return 404, {"code": "RESOURCE_NOT_EXISTS", "message": "批次不存在"}
            left = fake.stocks[stock]
            if left is not None and left <= 0:
                return 400, {"code": "NOT_ENOUGH", "message": "批次预算不足"}
            if left is not None:
                fake.stocks[stock] = left - 1
            record = Accepted("coupon", number, openid, fake.new_id("1"), data)
            fake._coupons[number] = record
            fake.accepted.append(record)
        return 200, {"coupon_id": record.provider_id}

    # -- WeCom, SMS, webhook ---------------------------------------------------------------------

    def _wecom_token(self, data: dict[str, Any], fault: str, item_id: str) -> tuple[int, Any]:
        fake = self.fake
        with fake.lock:
            fake.token_calls["wecom"] += 1
        code = self._errcode(fault)
        if code is not None:
            return 200, {"errcode": code, "errmsg": "fault"}
        q = parse_qs(urlsplit(self.path).query)
        if q.get("corpid", [""])[0] != CORPID or q.get("corpsecret", [""])[0] != WECOM_SECRET:
            return 200, {"errcode": 40001, "errmsg": "invalid credential"}
        token = "WECOM_" + fake.new_id("")
        with fake.lock:
            fake.tokens.add(token)
            fake.issued.append(token)
        return 200, {"errcode": 0, "errmsg": "ok", "access_token": token,
                     "expires_in": fake.token_expires_in}

    def _wecom(self, data: dict[str, Any], fault: str, item_id: str) -> tuple[int, Any]:
        fake = self.fake
        code = self._errcode(fault)
        if code == 40001:
            code = 42001  # WeCom's "token expired"
        if code is not None:
            return 200, {"errcode": code, "errmsg": f"fault {code}"}
        with fake.lock:
            valid = self._token() in fake.tokens
        if not valid:
            return 200, {"errcode": 40014, "errmsg": "invalid access_token"}
        if data.get("agentid") != AGENTID or data.get("msgtype") != "text" \
                or not (data.get("text") or {}).get("content"):
            return 200, {"errcode": 40008, "errmsg": "invalid message"}
        touser = str(data.get("touser") or "")
        if touser.startswith("nobody"):
            return 200, {"errcode": 0, "errmsg": "ok", "invaliduser": touser}
        msgid = fake.new_id("w")
        fake.accept(Accepted("wecom", item_id, touser, msgid, data))
        return 200, {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": msgid}

    def _sms(self, data: dict[str, Any], fault: str, item_id: str) -> tuple[int, Any]:
        fake = self.fake
        if fault:
            return SMS_ERRORS.get(fault, 400), {"code": fault, "message": f"fault {fault}"}
        if self.headers.get("Authorization") != f"Bearer {SMS_KEY}":
            return 401, {"code": "UNAUTHORIZED", "message": "bad API key"}
        phone = str(data.get("phone") or "")
        if not re.match(r"^\+?\d{6,15}$", phone):
            return 400, {"code": "INVALID_PHONE", "message": "not a phone number"}
        if not data.get("text"):
            return 400, {"code": "EMPTY_TEXT", "message": "no text"}
        mid = fake.new_id("s")
        fake.accept(Accepted("sms", item_id or str(data.get("client_ref") or ""), phone, mid,
                             data))
        return 200, {"code": "OK", "message_id": mid}

    def _webhook(self, data: dict[str, Any], fault: str, item_id: str) -> tuple[int, Any]:
        fake = self.fake
        if fault:
            status = int(fault) if fault.isdigit() else 400
            return status, {"error": fault}
        ts = self.headers.get("X-Zailai-Timestamp", "")
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), ts.encode() + self._raw,
                                        hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.headers.get("X-Zailai-Signature", "")):
            return 401, {"error": "bad signature"}
        if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
            return 401, {"error": "stale timestamp"}
        wid = fake.new_id("h")
        fake.accept(Accepted("webhook", str(data.get("item_id") or item_id),
                             str(data.get("recipient") or ""), wid, data))
        return 200, {"id": wid}

    # -- control API (for the fake running as a separate process) --------------------------------

    def _control(self, path: str, body: bytes) -> None:
        fake = self.fake
        data = json.loads(body) if body else {}
        if path == "/_fake/state":
            self._reply(200, fake.state())
        elif path == "/_fake/faults":
            fake.fault(str(data["endpoint"]), *data.get("faults", []))
            self._reply(200, {"ok": True})
        elif path == "/_fake/reset":
            fake.reset()
            self._reply(200, {"ok": True})
        elif path == "/_fake/config":
            if "token_expires_in" in data:
                fake.token_expires_in = int(data["token_expires_in"])
            if "delay" in data:
                fake.delay = float(data["delay"])
            if "merchant_public_key" in data:
                fake.trust_merchant_key(str(data["merchant_public_key"]),
                                        str(data.get("serial", MERCHANT_SERIAL)))
            for sid, n in (data.get("stocks") or {}).items():
                fake.stocks[str(sid)] = None if n is None else int(n)
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"error": "no such control endpoint"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_wechat",
                                     description="A fake WeChat server on 127.0.0.1 for tests.")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument("--templates", help="a templates.yaml whose template ids to accept")
    parser.add_argument("--merchant-key-out", help="write a fresh merchant private key (PEM) "
                        "here; the server trusts its public key")
    parser.add_argument("--token-expires-in", type=int, default=7200)
    args = parser.parse_args(argv)
    fake = FakeWeChat(port=args.port,
                      templates=load_templates(args.templates) if args.templates else None)
    fake.token_expires_in = args.token_expires_in
    private, public = merchant_key()
    fake.trust_merchant_key(public)
    if args.merchant_key_out:
        Path(args.merchant_key_out).write_text(private, "utf-8")
    fake.start()
    env = fake.env(private)
    env.pop("WECHATPAY_KEY")  # multi-line; read it from --merchant-key-out
    print(json.dumps({"url": fake.url, "port": fake.port, "env": env}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
