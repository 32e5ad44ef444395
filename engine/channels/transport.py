"""What every HTTP channel shares: secrets, timeouts, the connection pool, result mapping.

- secrets come only from the environment variables that `engine.yaml` names (`*_env` options);
  a missing one is a `CannotRun` that names the variable, never the value;
- every request has bounded timeouts, connect and read separately (`connect_timeout`,
  `timeout`);
- one pool of keep-alive connections per channel (`wire.Http`), shared by the sending threads;
- transport failures map to send statuses by what they prove: a request that never left
  (connect refused or timed out, write failed) is `retry`; one that left but got no answer
  (read timeout, connection dropped, an unreadable reply) is `unknown`, or `retry` for
  idempotent channels.

Nothing here logs. Result details are passed through `mask`, which removes the channel's
secrets and any `access_token=` value, before they leave a channel.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import orjson

from ..config import Channel as ChannelConfig
from ..durations import BadLiteral, parse_duration
from ..errors import CannotRun
from .base import FAILED, RETRY, UNKNOWN, SendResult
from .wire import BadEndpoint, BadRequest, Endpoint, Http, NoAnswer, NotSent

DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_CONCURRENCY = 16

_SECRET_QUERY = re.compile(r"((?:access_token|corpsecret|secret)=)[^&\s\"']+", re.I)


@dataclass(frozen=True)
class Timeouts:
    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT


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


def make_http(config: ChannelConfig, kw: Mapping[str, Any], url: str,
              option: str = "base_url") -> Http:
    """The channel's connection pool to `url`, sized by `concurrency` (or `concurrency=`)."""
    try:
        endpoint = Endpoint.parse(url)
    except BadEndpoint as exc:
        raise CannotRun(f"channel `{config.name}`: `{option}`: {exc}") from None
    size = int(kw.get("concurrency") or config.options.get("concurrency") or DEFAULT_CONCURRENCY)
    t = timeouts(config, kw)
    return Http(endpoint, connect_timeout=t.connect, read_timeout=t.read, size=max(1, size))


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and every `access_token=` value) replaced by ***."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return _SECRET_QUERY.sub(r"\1***", text)[:300]


@dataclass(frozen=True)
class Reply:
    """A response that arrived: its status and body, and Retry-After when given."""

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


def post(http: Http, path: str, *, content: bytes, headers: Mapping[str, str],
         idempotent: bool, secrets: Iterable[str] = (),
         params: Mapping[str, str] | None = None) -> Reply | SendResult:
    """POST and return the reply, or the SendResult a transport failure means."""
    return call(http, "POST", path, content=content, headers=headers, idempotent=idempotent,
                secrets=secrets, params=params)


def call(http: Http, method: str, path: str, *, content: bytes | None = None,
         headers: Mapping[str, str] | None = None, idempotent: bool,
         secrets: Iterable[str] = (),
         params: Mapping[str, str] | None = None) -> Reply | SendResult:
    """One request; the reply, or the SendResult that a transport failure means."""
    host = http.endpoint.host
    try:
        status, body, retry_after = http.request(method, path, params=params, body=content,
                                                 headers=headers)
    except NotSent as exc:  # connecting or writing failed: the provider cannot have acted
        what = "could not connect to" if exc.kind in ("connect", "pool") else "could not send to"
        return SendResult(RETRY, exc.kind, mask(f"{what} {host}: {exc}", secrets))
    except NoAnswer as exc:
        if exc.kind == "timeout":
            detail = f"no reply from {host} within {http.read_timeout:g} s after the request"
        elif exc.kind == "bad_reply":
            detail = f"{host} sent a reply that is not HTTP/1.1 as expected ({exc})"
        else:
            detail = f"{host} dropped the connection after the request was sent ({exc})"
        return not_answered(idempotent, exc.kind, mask(detail, secrets))
    except BadRequest as exc:
        return SendResult(FAILED, exc.kind, mask(f"cannot send this request: {exc}", secrets))
    return Reply(status, body, _seconds_or_none(retry_after))


def _seconds_or_none(raw: str | None) -> float | None:
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None  # an HTTP date: ignore, the loop's backoff applies


def http_status_result(reply: Reply, idempotent: bool, secrets: Iterable[str] = ()) -> SendResult:
    """The result for a non-2xx HTTP status that carries no provider code we understand."""
    code = f"http_{reply.status}"
    detail = mask(f"HTTP {reply.status}: {reply.text(120)}", secrets)
    if reply.status >= 500 or reply.status in (408, 429):
        return SendResult(RETRY, code, detail, retry_after=reply.retry_after)
    return SendResult(FAILED, code, detail)
