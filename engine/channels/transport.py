"""HTTP plumbing shared by the channels.

- secrets come only from the environment variables that `engine.yaml` names (`*_env` options);
  a missing one is a `CannotRun` that names the variable, never the value;
- every request has bounded timeouts, connect and read separately (`connect_timeout`,
  `timeout`);
- one pooled `httpx.Client` per channel, shared by every thread that sends through it;
- transport failures map to send statuses by what they prove: a request that never left
  (connect refused or timed out, write failed) is `retry`; one that left but got no answer
  (read timeout, connection dropped) is `unknown`, or `retry` for idempotent channels.

Access tokens travel in query strings (`access_token=`, WeCom's `corpsecret=`); a filter on
the `httpx` logger masks them, so turning on request logging never writes a secret.
"""
from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping

import httpx
import orjson

from ..config import Channel as ChannelConfig
from ..durations import BadLiteral, parse_duration
from ..errors import CannotRun
from .base import FAILED, RETRY, UNKNOWN, SendResult

DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_CONCURRENCY = 16
USER_AGENT = "zailai/0.1"

_SECRET_QUERY = re.compile(r"((?:access_token|corpsecret|secret)=)[^&\s\"']+", re.I)


class _MaskQuerySecrets(logging.Filter):
    """Masks `access_token=...` and similar in records of the httpx logger (it logs URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _SECRET_QUERY.sub(r"\1***", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_MASK = _MaskQuerySecrets()
for _name in ("httpx", "httpcore"):
    if _MASK not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_MASK)


@dataclass(frozen=True)
class Timeouts:
    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT

    def httpx(self) -> httpx.Timeout:
        # write: the request body is small; pool: waiting for a free connection of our own pool
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.read,
                             pool=max(self.read, 30.0))


def _seconds(config: ChannelConfig, key: str, default: float) -> float:
    raw = config.options.get(key)
    if raw is None:
        return default
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw > 0:
        return float(raw)
    try:
        return parse_duration(str(raw)).total_seconds()
    except BadLiteral as exc:
        raise CannotRun(f"channel `{config.name}`: `{key}`: {exc}") from None


def timeouts(config: ChannelConfig, kw: Mapping[str, Any]) -> Timeouts:
    """From the options `connect_timeout` and `timeout` (read), overridable by keyword
    (`connect_timeout=`, `read_timeout=`, in seconds; tests use fractions of a second)."""
    connect = kw.get("connect_timeout") or _seconds(config, "connect_timeout",
                                                    DEFAULT_CONNECT_TIMEOUT)
    read = kw.get("read_timeout") or _seconds(config, "timeout", DEFAULT_READ_TIMEOUT)
    return Timeouts(float(connect), float(read))


def env_secret(config: ChannelConfig, env: Mapping[str, str], option: str,
               what: str = "its secret") -> str:
    """The value of the environment variable named by option `option`; CannotRun if unset."""
    var = config.options.get(option)
    if not var:
        raise CannotRun(f"channel `{config.name}` ({config.kind}) needs `{option}`: the name of "
                        f"the environment variable holding {what}")
    value = env.get(str(var), "")
    if not value.strip():
        raise CannotRun(f"channel `{config.name}` ({config.kind}): environment variable {var} "
                        f"is not set (`{option}` names it; it must hold {what})",
                        hint=f"export {var}=... before starting the engine")
    return value


def required(config: ChannelConfig, option: str, what: str) -> str:
    value = config.options.get(option)
    if value is None or str(value).strip() == "":
        raise CannotRun(f"channel `{config.name}` ({config.kind}) needs `{option}`: {what}")
    return str(value)


def base_url(config: ChannelConfig, default: str) -> str:
    return str(config.options.get("base_url") or default).rstrip("/")


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every channel (loading the CA bundle costs ~0.1 s)."""
    return httpx.create_ssl_context()


def make_client(config: ChannelConfig, kw: Mapping[str, Any]) -> httpx.Client:
    """One connection pool per channel, sized by `concurrency` (or keyword `concurrency=`)."""
    size = int(kw.get("concurrency") or config.options.get("concurrency") or DEFAULT_CONCURRENCY)
    return httpx.Client(
        verify=_tls(),
        timeout=timeouts(config, kw).httpx(),
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size,
                            keepalive_expiry=5.0),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        transport=kw.get("transport"),
    )


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and every `access_token=` value) replaced by ***."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return _SECRET_QUERY.sub(r"\1***", text)[:300]


@dataclass(frozen=True)
class Reply:
    """A response that arrived: status, body and the headers the channels read."""

    status: int
    body: bytes
    retry_after: float | None = None

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def text(self, limit: int = 200) -> str:
        return self.body[:limit].decode("utf-8", "replace")


def not_answered(idempotent: bool, code: str, detail: str) -> SendResult:
    """The request may have reached the provider and we do not know the outcome."""
    if idempotent:
        return SendResult(RETRY, code, detail + "; safe to resend (idempotent)")
    return SendResult(UNKNOWN, code, detail + "; not resent (at most once)")


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None


def post(client: httpx.Client, url: str, *, content: bytes, headers: Mapping[str, str],
         idempotent: bool, secrets: Iterable[str] = (),
         params: Mapping[str, str] | None = None) -> Reply | SendResult:
    """POST and return the reply, or the SendResult a transport failure means."""
    return call(client, "POST", url, content=content, headers=headers, idempotent=idempotent,
                secrets=secrets, params=params)


def call(client: httpx.Client, method: str, url: str, *, content: bytes | None = None,
         headers: Mapping[str, str] | None = None, idempotent: bool,
         secrets: Iterable[str] = (), params: Mapping[str, str] | None = None) -> Reply | SendResult:
    """One request; the reply, or the SendResult that a transport failure means."""
    host = httpx.URL(url).host
    try:
        response = client.request(method, url, content=content, headers=headers, params=params)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        return SendResult(RETRY, "connect", f"could not connect to {host}: "
                          f"{type(exc).__name__}")
    except (httpx.WriteError, httpx.WriteTimeout) as exc:
        # the request was not completely written, so the provider cannot have acted on it
        return SendResult(RETRY, "write", f"request to {host} not fully sent: "
                          f"{type(exc).__name__}")
    except httpx.ReadTimeout:
        return not_answered(idempotent, "timeout", f"no response from {host} in time after the "
                            "request was sent")
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.TimeoutException) as exc:
        return not_answered(idempotent, "connection_lost", f"{host} dropped the connection after "
                            f"the request was sent ({type(exc).__name__})")
    except httpx.HTTPError as exc:
        return SendResult(FAILED, "http_error", f"{type(exc).__name__}: "
                          f"{mask(str(exc), secrets)}")
    return Reply(response.status_code, response.content, _retry_after(response))


def http_status_result(reply: Reply, idempotent: bool, secrets: Iterable[str] = ()) -> SendResult:
    """The result for a non-2xx HTTP status that carries no provider code we understand."""
    code = f"http_{reply.status}"
    detail = mask(f"HTTP {reply.status}: {reply.text(120)}", secrets)
    if reply.status >= 500 or reply.status in (408, 429):
        return SendResult(RETRY, code, detail, retry_after=reply.retry_after)
    return SendResult(FAILED, code, detail)
