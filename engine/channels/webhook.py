"""`webhook`: a signed JSON POST to your own endpoint.

Options: `url` (required), `secret_env` (required: the variable holding the signing secret),
`timeout`, `connect_timeout`, `concurrency`.

Body: {"item_id", "channel", "user_id", "recipient", "payload"} where payload is the action's
payload ({"body": ...} for `webhook:` actions, {"text": ...} for messages). Headers:

    X-Zailai-Timestamp: unix seconds
    X-Zailai-Signature: sha256=hex(HMAC-SHA256(secret, timestamp + body))
    X-Zailai-Item-Id: the outbox item id (stable across retries: deduplicate on it)

The receiver recomputes the HMAC over the timestamp header's bytes followed by the raw body and
should reject old timestamps. 2xx sent (provider_id = the reply's JSON `id` when it has one,
else `http_<status>`); 5xx, 408, 429 and connect errors retry; other 4xx failed. Not idempotent
as far as the engine knows: a read timeout after sending is `unknown`.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any, Callable, Mapping

import orjson

from ..config import Channel as ChannelConfig
from .base import SENT, SendRequest, SendResult
from .transport import env_secret, http_status_result, make_http, post, required
from .. import clock


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookChannel:
    kind = "webhook"
    idempotent = False

    def __init__(self, config: ChannelConfig, env: Mapping[str, str], **kw: Any) -> None:
        self.name = config.name
        self.url = required(config, "url", "where to POST")
        self._secret = env_secret(config, env, "secret_env", "the webhook signing secret")
        self._http = make_http(config, kw, self.url, "url")
        self._clock: Callable[[], float] = kw.get("clock") or clock.wall

    def __repr__(self) -> str:
        return f"WebhookChannel(name={self.name!r}, url={self.url!r})"

    def send(self, request: SendRequest) -> SendResult:
        body = orjson.dumps({"item_id": request.item_id, "channel": request.channel,
                             "user_id": request.user_id, "recipient": request.recipient,
                             "payload": dict(request.payload)},
                            default=str)
        timestamp = str(int(self._clock()))
        out = post(self._http, "", content=body, idempotent=False, secrets=(self._secret,),
                   headers={"Content-Type": "application/json",
                            "X-Zailai-Timestamp": timestamp,
                            "X-Zailai-Signature": signature(self._secret, timestamp, body),
                            "X-Zailai-Item-Id": request.item_id})
        if isinstance(out, SendResult):
            return out
        if 200 <= out.status < 300:
            data = out.json()
            ident = data.get("id") if isinstance(data, dict) else None
            return SendResult(SENT, str(out.status), "accepted",
                              provider_id=str(ident) if ident else f"http_{out.status}")
        return http_status_result(out, False, (self._secret,))

    def close(self) -> None:
        self._http.close()
