"""Structured logs: one JSON object a line, personal data and secrets masked.

Every line has `ts`, `level` and `event`; the daemon adds `rule`, `user`, `run`, `decision`,
`reason` and the like. Values are masked before they are written:

- a field whose name is personal (`openid`, `phone`, `recipient`, or a data model field marked
  `pii: true`) is masked wherever it appears, nested included;
- inside any text, mainland mobile numbers and WeChat openids are masked (`138****5678`);
- the values of secrets (the environment variables the channels and the HTTP API read) are
  replaced by `***` wherever they appear.
"""
from __future__ import annotations

import re
import sys
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, TextIO

import orjson
from . import clock

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
ALWAYS_PII = frozenset({"openid", "unionid", "phone", "mobile", "recipient", "touser",
                        "phone_number", "wecom_userid"})
_PHONE = re.compile(r"(?<!\d)(?:\+?86)?1[3-9]\d{9}(?!\d)")
_OPENID = re.compile(r"(?<![0-9A-Za-z_-])o[0-9A-Za-z_-]{27}(?![0-9A-Za-z_-])")


def mask_value(value: str) -> str:
    """Keep enough to tell two values apart in a log, not enough to contact anyone."""
    if len(value) >= 11:
        return value[:3] + "****" + value[-4:]
    if len(value) >= 6:
        return value[:1] + "****" + value[-2:]
    return "****"


class Masker:
    def __init__(self, pii_fields: Iterable[str] = (), secrets: Iterable[str] = ()) -> None:
        self.pii = ALWAYS_PII | frozenset(pii_fields)
        self.secrets = tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len,
                                    reverse=True))

    def text(self, s: str) -> str:
        for secret in self.secrets:
            if secret in s:
                s = s.replace(secret, "***")
        s = _PHONE.sub(lambda m: mask_value(m.group()), s)
        return _OPENID.sub(lambda m: mask_value(m.group()), s)

    def value(self, v: Any, key: str = "") -> Any:
        if key in self.pii and v is not None and not isinstance(v, (dict, list, tuple)):
            return mask_value(str(v))
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, dict):
            return {str(k): self.value(x, str(k)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [self.value(x, key) for x in v]
        return v


class JsonLog:
    """A thread-safe JSON-lines logger (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, level: str = "info",
                 masker: Masker | None = None, clock: Callable[[], float] = clock.wall,
                 **static: Any) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock  # wall-clock seconds, for the `ts` of each line
        self.threshold = LEVELS.get(level, 20)
        self.masker = masker or Masker()
        self.static = static
        self.lock = threading.RLock()  # signal handlers never log (see daemon._on_stop_signal)

    def enabled(self, level: str) -> bool:
        return LEVELS.get(level, 20) >= self.threshold

    def log(self, level: str, event: str, **fields: Any) -> None:
        if not self.enabled(level):
            return
        ts = datetime.fromtimestamp(self.clock(), timezone.utc).isoformat(timespec="milliseconds")
        record: dict[str, Any] = {"ts": ts, "level": level, "event": event, **self.static}
        record.update({k: self.masker.value(v, k) for k, v in fields.items() if v is not None})
        line = orjson.dumps(record, default=str).decode() + "\n"
        with self.lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not take the daemon down

    def debug(self, event: str, **fields: Any) -> None:
        self.log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log("error", event, **fields)
