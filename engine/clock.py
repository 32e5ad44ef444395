"""The one place below the CLI that reads a clock, for protocol needs only.

Rule evaluation never reads the clock: its time T is an argument (`--at`, or the daemon's
tick). What does need a real clock is the plumbing around a send: the timestamp in a WeChat Pay
or webhook signature, an access token's remaining lifetime, a pooled connection's idle time, a
measured duration for metrics and log lines. Those callers take a clock argument defaulting to
the functions here, so tests can inject one and a reader can find every clock read in one file.
"""
from __future__ import annotations

import time


def wall() -> float:
    """Seconds since the epoch (signature timestamps, log lines)."""
    return time.time()


def monotonic() -> float:
    """A clock that never goes back (token lifetimes, idle connections, durations)."""
    return time.monotonic()
