"""`engine generate OUT_DIR --users N --days D --seed S`: realistic synthetic data.

Writes `users.jsonl`, `events.jsonl` (the ingest formats) and the matching `datamodel.yaml`
(the example project's), for the `days` days before `end`. The end is an argument with a fixed
default, never the clock, so the same arguments always give the same bytes.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import CannotRun
from ..resources import example_project
from ..timeutil import to_micros
from . import sim, write

DEFAULT_END = "2026-11-20T00:00:00+08:00"
MAX_USERS = 50_000_000
MAX_DAYS = 3650


@dataclass(frozen=True)
class Generated:
    out_dir: Path
    users: int
    events: int
    files: tuple[Path, ...]
    events_by_type: tuple[tuple[str, int], ...]


def generate(out_dir: str | Path, *, users: int, days: int, seed: int,
             end: datetime) -> Generated:
    if not 1 <= users <= MAX_USERS:
        raise CannotRun(f"--users must be between 1 and {MAX_USERS}, got {users}")
    if not 1 <= days <= MAX_DAYS:
        raise CannotRun(f"--days must be between 1 and {MAX_DAYS}, got {days}")
    if seed < 0:
        raise CannotRun(f"--seed must be 0 or more, got {seed}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CannotRun(f"cannot create {out}: {exc.strerror}") from None
    end_us = to_micros(end)
    start_us = end_us - days * sim.DAY
    rng = np.random.default_rng(np.random.PCG64(seed))
    population = sim.simulate_users(rng, users, start_us, end_us)
    ids = write.user_ids(users)
    paths = (out / "users.jsonl", out / "events.jsonl", out / "datamodel.yaml")
    try:
        with open(paths[0], "w", encoding="utf-8", newline="\n") as f:
            write.write_users(f, rng, population, ids, end_us)
        events = sim.simulate_events(rng, population, start_us, end_us)
        counts = np.bincount(events.type, minlength=len(sim.TYPES)).tolist()
        with open(paths[1], "w", encoding="utf-8", newline="\n") as f:
            n_events = write.write_events(f, events, ids)
        shutil.copyfile(example_project() / "datamodel.yaml", paths[2])
    except OSError as exc:
        raise CannotRun(f"cannot write to {out}: {exc.strerror}") from None
    return Generated(out, users, n_events, paths,
                     tuple((t, int(c)) for t, c in zip(sim.TYPES, counts)))
