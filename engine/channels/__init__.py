"""Delivery channels: one module per provider behind the `Channel` protocol (base.py).

`build_channel(config, env)` makes the channel an `engine.yaml` entry describes. Secrets are
read from `env` (the environment variables named by the `*_env` options) and nothing else; a
missing variable is a `CannotRun` naming it. Keyword arguments are passed to the channel:
`stream=` (console), `connect_timeout=` / `read_timeout=` seconds, `concurrency=`, `clock=`.
Provider modules are imported on first use, so commands that never send load none of them.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from ..config import Channel as ChannelConfig
from ..errors import CannotRun
from .base import FAILED, RETRY, SENT, UNKNOWN, Channel, SendRequest, SendResult

__all__ = ["FAILED", "RETRY", "SENT", "UNKNOWN", "Channel", "SendRequest", "SendResult",
           "build_channel"]


def _factory(kind: str) -> Callable[..., Channel] | None:
    if kind == "console":
        from .console import ConsoleChannel
        return ConsoleChannel
    if kind == "webhook":
        from .webhook import WebhookChannel
        return WebhookChannel
    if kind == "wechat_subscribe":
        from .wechat_subscribe import WeChatSubscribeChannel
        return WeChatSubscribeChannel
    if kind == "wechat_coupon":
        from .wechat_coupon import WeChatCouponChannel
        return WeChatCouponChannel
    if kind == "sms":
        from .sms import SmsChannel
        return SmsChannel
    if kind == "wecom":
        from .wecom import WeComChannel
        return WeComChannel
    return None


def build_channel(config: ChannelConfig, env: Mapping[str, str], **kw: Any) -> Channel:
    """The channel for one `channels:` entry; CannotRun when it cannot be made (a missing
    option, an unset environment variable, an unreadable key), naming what is missing."""
    factory = _factory(config.kind)
    if factory is None:
        raise CannotRun(f"channel `{config.name}` has unknown type `{config.kind}`")
    return factory(config, env, **kw)
