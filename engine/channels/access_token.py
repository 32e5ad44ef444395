"""One access token per channel, cached with its expiry and shared by every sending thread.

`get()` returns the cached token, fetching a new one when fewer than `margin` seconds (60) are
left. `refresh(stale)` is called after the provider rejected `stale` (40001/40014/42001): the
first caller forces a new token, callers that were rejected with the same stale token meanwhile
reuse it, so a burst of rejections costs one refresh (WeChat allows 20 forced refreshes a day,
30 s apart). Fetching happens under the lock: one request in flight, the other threads wait.
"""
from __future__ import annotations

import threading
from typing import Callable

from .base import SendResult
from .. import clock

FORCE_SPACING = 30.0  # WeChat rejects forced stable_token refreshes closer than this


class TokenUnavailable(Exception):
    """No token could be had; carries the SendResult that the send reports (never the secret)."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.detail)
        self.result = result


# fetch(force) -> (token, expires_in seconds); raises TokenUnavailable
Fetch = Callable[[bool], tuple[str, float]]


class TokenCache:
    def __init__(self, fetch: Fetch, *, margin: float = 60.0,
                 clock: Callable[[], float] = clock.monotonic) -> None:
        self._fetch = fetch
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._expires_at = 0.0
        self._last_forced = float("-inf")
        self.fetches = 0  # how many times a token was requested from the provider

    def __repr__(self) -> str:
        return f"TokenCache(cached={bool(self._token)}, fetches={self.fetches})"

    def _fresh(self, now: float) -> bool:
        return bool(self._token) and self._expires_at - now > self._margin

    def _load(self, force: bool) -> str:
        now = self._clock()
        if force and now - self._last_forced < FORCE_SPACING:
            force = False  # a forced refresh just happened: the provider would refuse another
        self.fetches += 1
        token, expires_in = self._fetch(force)
        if force:
            self._last_forced = now
        self._token, self._expires_at = token, now + expires_in
        return token

    def get(self) -> str:
        with self._lock:
            if self._fresh(self._clock()):
                return self._token
            return self._load(force=False)

    def refresh(self, stale: str) -> str:
        """A token other than `stale`: the one another thread already fetched, or a new one."""
        with self._lock:
            if self._token and self._token != stale and self._fresh(self._clock()):
                return self._token
            self._token = ""
            return self._load(force=True)

    def clear(self) -> None:
        with self._lock:
            self._token, self._expires_at = "", 0.0
