"""The channel interface: one small protocol every delivery channel implements.

The outbox hands a channel one `SendRequest` at a time and records the `SendResult`. The
result's status is the whole contract with the delivery loop:

- `sent`: the provider accepted it (provider_id: msgid, coupon_id ...);
- `retry`: known NOT to have been delivered (connect failure, HTTP 5xx before acceptance,
  WeChat -1 system busy, 45009 rate limit): try again later with backoff;
- `failed`: permanent (user refused, template invalid, bad parameter): never retried;
- `unknown`: the request may have reached the provider but the outcome is not known (a read
  timeout after the request was sent). For non-idempotent channels (messages) the item is
  never re-sent automatically; idempotent channels (coupons, with out_request_no) report
  `retry` instead, because resending with the same request number is safe.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

SENT, RETRY, FAILED, UNKNOWN = "sent", "retry", "failed", "unknown"


@dataclass(frozen=True)
class SendRequest:
    item_id: str  # the outbox item id: unique, stable across retries (out_request_no)
    channel: str  # the configured channel name (engine.yaml `channels:` key)
    kind: str  # "message" | "coupon" | "webhook"
    user_id: str
    recipient: str  # openid, phone number or WeCom user id, as the channel needs
    payload: Mapping[str, Any] = field(default_factory=dict)
    # message to wechat_subscribe: {"template_id", "page", "data": {keyword: value}}
    # message to sms / wecom / console: {"text"}; webhook: {"body"}
    # coupon to wechat_coupon: {"stock_id", "stock_creator_mchid"}


@dataclass(frozen=True)
class SendResult:
    status: str  # sent | retry | failed | unknown
    code: str = ""  # the provider's code ("0", "43101", "PARAM_ERROR", "timeout", "http_503")
    detail: str = ""  # a short human-readable reason; never contains secrets
    provider_id: str | None = None  # msgid, coupon_id ...
    consent_exhausted: bool = False  # WeChat 43101: zero the consent ledger, do not retry
    retry_after: float | None = None  # seconds, when the provider says so


class Channel(Protocol):
    name: str
    kind: str  # console | webhook | wechat_subscribe | wechat_coupon | sms | wecom
    idempotent: bool  # safe to resend after an unknown outcome

    def send(self, request: SendRequest) -> SendResult:
        ...

    def close(self) -> None:
        ...
