"""`sms`: text messages through an SMS gateway's JSON API.

Options: `base_url` (required), `secret_env` (required: the variable holding the API key),
`sign_name` (the SMS signature, 短信签名, e.g. 再来小店), `timeout`, `connect_timeout`,
`concurrency`.

Request (the shape the engine speaks; put a small adapter in front of a vendor that differs):

    POST {base_url}/v1/sms/send
    Authorization: Bearer <API key>
    X-Zailai-Item-Id: <outbox item id>
    {"phone": "+8613800000000", "sign_name": "再来小店", "text": "...", "client_ref": <item id>}

Reply: 200 {"code": "OK", "message_id": "..."} sent (provider_id = message_id). Errors are
{"code", "message"}: HTTP 5xx, 408, 429 and the codes RATE_LIMITED / SYSTEM_BUSY retry; every
other code (INVALID_PHONE, BLACKLISTED, UNAUTHORIZED ...) failed. Not idempotent: a read
timeout after sending is `unknown`, never resent.
"""
from __future__ import annotations

from typing import Any, Mapping

import orjson

from ..config import Channel as ChannelConfig
from .base import FAILED, RETRY, SENT, SendRequest, SendResult
from .transport import env_secret, http_status_result, make_http, mask, post, \
    required

TRANSIENT = frozenset({"RATE_LIMITED", "SYSTEM_BUSY"})


class SmsChannel:
    kind = "sms"
    idempotent = False

    def __init__(self, config: ChannelConfig, env: Mapping[str, str], **kw: Any) -> None:
        self.name = config.name
        self.base_url = required(config, "base_url", "the SMS gateway's URL").rstrip("/")
        self.sign_name = str(config.options.get("sign_name") or "")
        self._key = env_secret(config, env, "secret_env", "the SMS gateway API key")
        self._http = make_http(config, kw, self.base_url)

    def __repr__(self) -> str:
        return f"SmsChannel(name={self.name!r}, base_url={self.base_url!r})"

    def send(self, request: SendRequest) -> SendResult:
        text = request.payload.get("text")
        if not request.recipient:
            return SendResult(FAILED, "no_recipient", "the user has no phone number")
        if not text:
            return SendResult(FAILED, "bad_payload", "an SMS needs `text`")
        body = orjson.dumps({"phone": request.recipient, "sign_name": self.sign_name,
                             "text": str(text), "client_ref": request.item_id})
        out = post(self._http, "/v1/sms/send", content=body, idempotent=False, secrets=(self._key,),
                   headers={"Content-Type": "application/json",
                            "Authorization": f"Bearer {self._key}",
                            "X-Zailai-Item-Id": request.item_id})
        if isinstance(out, SendResult):
            return out
        data = out.json()
        code = str(data.get("code", "")) if isinstance(data, dict) else ""
        if 200 <= out.status < 300 and code in ("OK", ""):
            ident = data.get("message_id") if isinstance(data, dict) else None
            return SendResult(SENT, "OK", "accepted", provider_id=str(ident) if ident else None)
        if not code:
            return http_status_result(out, False, (self._key,))
        detail = mask(f"HTTP {out.status} {code}: {data.get('message', '')}", (self._key,))
        if code in TRANSIENT or out.status >= 500 or out.status in (408, 429):
            return SendResult(RETRY, code, detail, retry_after=out.retry_after)
        return SendResult(FAILED, code, detail)

    def close(self) -> None:
        self._http.close()
