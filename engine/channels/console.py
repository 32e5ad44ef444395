"""`console`: one readable line per message on a text stream (stdout by default).

For trying rules out: `[console] item-1 -> u1 (openid): 优惠券已到账`. A failed write is `retry`
(nothing reached the stream); a failed flush after the write is `unknown` (the line may have
been printed). No options. Not idempotent.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Mapping, TextIO

from ..config import Channel as ChannelConfig
from .base import FAILED, RETRY, SENT, UNKNOWN, SendRequest, SendResult


def describe(payload: Mapping[str, Any]) -> str:
    """The human-readable content of a payload: text, template and data, or webhook body."""
    if payload.get("text"):
        return str(payload["text"])
    if payload.get("template_id"):
        data = payload.get("data") or {}
        values = " ".join(f"{k}={v}" for k, v in dict(data).items())
        return f"template {payload['template_id']}: {values}".rstrip(": ")
    if payload.get("stock_id"):
        return f"coupon from stock {payload['stock_id']}"
    if payload.get("body") is not None:
        return f"body {payload['body']}"
    return ""


class ConsoleChannel:
    kind = "console"
    idempotent = False

    def __init__(self, config: ChannelConfig, env: Mapping[str, str] | None = None, *,
                 stream: TextIO | None = None, **kw: Any) -> None:
        self.name = config.name
        self._stream = stream  # None: sys.stdout at send time (so redirection is honoured)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ConsoleChannel(name={self.name!r})"

    def send(self, request: SendRequest) -> SendResult:
        content = describe(request.payload)
        if not content:
            return SendResult(FAILED, "bad_payload", "nothing to print: the payload has no "
                              "text, template, coupon or body")
        to = f" ({request.recipient})" if request.recipient and \
            request.recipient != request.user_id else ""
        line = f"[{self.name}] {request.item_id} -> {request.user_id}{to}: " + \
            content.replace("\n", " ") + "\n"
        stream = self._stream or sys.stdout
        with self._lock:
            try:
                stream.write(line)
            except (OSError, ValueError) as exc:
                return SendResult(RETRY, "write_error", f"could not write: {type(exc).__name__}")
            try:
                stream.flush()
            except (OSError, ValueError) as exc:
                return SendResult(UNKNOWN, "flush_error", "written but not flushed "
                                  f"({type(exc).__name__}); not resent (at most once)")
        return SendResult(SENT, "ok", "printed", provider_id=request.item_id)

    def close(self) -> None:
        """Nothing to release: the stream belongs to the caller."""
