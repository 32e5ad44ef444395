"""Metrics in the Prometheus text exposition format (version 0.0.4), without a dependency.

A `Registry` holds counters, gauges and histograms keyed by label values; `render()` writes
them out, with `# HELP` and `# TYPE` lines, for `GET /metrics`. `MeteredChannel` wraps a
delivery channel and counts its sends by channel and result.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from .channels.base import UNKNOWN, Channel, SendRequest, SendResult
from . import clock

Labels = tuple[tuple[str, str], ...]
ResultHook = Callable[[str, SendRequest, SendResult, float], None]
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def observe(self, v: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
        self.total += v
        self.n += 1


class Registry:
    """Thread-safe metric families. Names follow Prometheus conventions (`_total` counters,
    `_seconds` units)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.help: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self.values: dict[str, dict[Labels, float]] = {}
        self.hists: dict[str, dict[Labels, _Histogram]] = {}
        self.bucket_bounds: dict[str, tuple[float, ...]] = {}

    def describe(self, name: str, kind: str, text: str,
                 buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        with self.lock:
            self.help[name] = (kind, text)
            if kind == "histogram":
                self.hists.setdefault(name, {})
                self.bucket_bounds[name] = buckets
            else:
                self.values.setdefault(name, {})

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self.lock:
            family = self.values.setdefault(name, {})
            family[key] = family.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self.lock:
            self.values.setdefault(name, {})[tuple(sorted(labels.items()))] = float(value)

    def replace(self, name: str, samples: Iterable[tuple[Mapping[str, str], float]]) -> None:
        """Set a gauge family to exactly these samples (label sets not given disappear)."""
        fresh = {tuple(sorted(dict(lb).items())): float(v) for lb, v in samples}
        with self.lock:
            self.values[name] = fresh

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self.lock:
            family = self.hists.setdefault(name, {})
            h = family.get(key)
            if h is None:
                h = family[key] = _Histogram(self.bucket_bounds.get(name, DEFAULT_BUCKETS))
            h.observe(value)

    def get(self, name: str, **labels: str) -> float:
        with self.lock:
            return self.values.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        out: list[str] = []
        with self.lock:
            for name in sorted(set(self.values) | set(self.hists)):
                kind, text = self.help.get(name, ("untyped", ""))
                out.append(f"# HELP {name} {text}")
                out.append(f"# TYPE {name} {kind}")
                if kind == "histogram":
                    for key, h in sorted(self.hists.get(name, {}).items()):
                        counts = h.counts or [0] * len(h.buckets)
                        for bound, c in zip(h.buckets, counts):
                            out.append(f"{name}_bucket{_labels(key, (('le', _num(bound)),))} {c}")
                        out.append(f"{name}_bucket{_labels(key, (('le', '+Inf'),))} {h.n}")
                        out.append(f"{name}_sum{_labels(key)} {_num(h.total)}")
                        out.append(f"{name}_count{_labels(key)} {h.n}")
                    continue
                for key, v in sorted(self.values.get(name, {}).items()):
                    out.append(f"{name}{_labels(key)} {_num(v)}")
        return "\n".join(out) + "\n"


def process_stats() -> dict[str, float]:
    """Resident memory (bytes) and open file descriptors of this process, where the OS says."""
    stats: dict[str, float] = {}
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            stats["rss"] = float(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        try:
            import resource
            stats["rss"] = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        except (ImportError, OSError):
            pass
    try:
        stats["fds"] = float(len(os.listdir("/proc/self/fd")))
    except OSError:
        pass
    return stats


class MeteredChannel:
    """A channel that counts sends (`zailai_sends_total{channel,status}`) and their latency,
    and reports each result to `on_result` (the daemon logs it)."""

    def __init__(self, inner: Channel, registry: Registry,
                 on_result: ResultHook | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.kind = inner.kind
        self.idempotent = inner.idempotent
        self.registry = registry
        self.on_result = on_result

    def send(self, request: SendRequest) -> SendResult:
        started = clock.monotonic()
        try:
            result = self.inner.send(request)
        except Exception:
            self.registry.inc("zailai_sends_total", channel=self.name, status=UNKNOWN)
            raise
        elapsed = clock.monotonic() - started
        self.registry.inc("zailai_sends_total", channel=self.name, status=result.status)
        self.registry.observe("zailai_send_duration_seconds", elapsed, channel=self.name)
        if self.on_result is not None:
            self.on_result(self.name, request, result, elapsed)
        return result

    def close(self) -> None:
        self.inner.close()
