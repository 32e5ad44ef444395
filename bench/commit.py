"""Benchmark: committing 100k fires (plan with policy + the one-transaction commit).

Usage: python bench/commit.py [--users 100000]
Builds a project in bench/out/commit with N users who all match a marketing rule (coupon +
subscription message with consent, so caps, consent and budget checks all run), then times
`tick()` (plan with policy and commit in one transaction), split into the plan part and the
commit (write) part, then the same tick again (idempotent: nothing written). Wall-clock and
CPU seconds are both printed: other processes share the machine, and CPU time shows what the
tick itself costs. Goal (issue 5): <= 5 s for the whole tick.
The seeded database (users and events) is kept in bench/out/commit-seed-N.db and reused.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import engine.commit  # noqa: E402
from engine.commit import tick  # noqa: E402
from engine.project import load_project  # noqa: E402
from engine.resources import PROJECT_FILES, example_project, schemas_dir  # noqa: E402
from engine.store import open_project_store  # noqa: E402
from engine.timeutil import to_micros  # noqa: E402

OUT = ROOT / "bench" / "out" / "commit"
T = datetime(2026, 11, 20, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
RULE = """
id: everyone
trigger: {schedule: "0 10 * * *"}
audience: count(order_paid) >= 1
actions:
  - coupon: {stock: BIG}
  - message:
      channel: wechat_subscribe
      template: coupon_arrival
      data: {thing1: "{{ coupon.name }}", amount2: "{{ coupon.value }}元", date3: "{{ coupon.expires_at | date }}", thing4: 期待你回来}
limits: {max: 1, per: 30d}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    n = ap.parse_args().users
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for name in PROJECT_FILES:
        shutil.copyfile(example_project() / name, OUT / name)
    (OUT / "coupons.yaml").write_text(
        "BIG: {name: 大额券, kind: cash, value: 10.00, valid_for: 7d, budget: {max_count: 10000000}}\n",
        encoding="utf-8")
    shutil.copytree(schemas_dir(), OUT / "schemas")
    (OUT / "rules").mkdir()
    (OUT / "rules" / "everyone.yaml").write_text(RULE, encoding="utf-8")
    seed = OUT.parent / f"commit-seed-{n}.db"
    if seed.exists():
        shutil.copyfile(seed, OUT / "engine.db")
    proj = load_project(OUT)
    store = open_project_store(proj)
    if not seed.exists():
        ts = to_micros(T - timedelta(days=3))
        with store.transaction():
            store.upsert_users(("openid",), [(f"u{i:07d}", f"o{i}") for i in range(n)])
            paid, auth = store.type_ids["order_paid"], store.type_ids["subscribe_authorized"]
            store.insert_events([(f"p{i}", f"u{i:07d}", paid, ts, 1000, None) for i in range(n)])
            props = json.dumps({"template": "coupon_arrival"})
            store.insert_events([(f"a{i}", f"u{i:07d}", auth, ts, None, props)
                                 for i in range(n)])
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copyfile(OUT / "engine.db", seed)
    planned: list[tuple[float, float]] = []  # (wall, CPU) seconds of each plan
    real_plan = engine.commit.plan

    def timed_plan(*args: Any, **kwargs: Any) -> Any:
        cpu, start = time.process_time(), time.perf_counter()
        try:
            return real_plan(*args, **kwargs)
        finally:
            planned.append((time.perf_counter() - start, time.process_time() - cpu))

    engine.commit.plan = timed_plan  # type: ignore[assignment]
    for label in ("tick", "again"):
        cpu, start = time.process_time(), time.perf_counter()
        result = tick(proj, store, T, ["everyone"], {"everyone": to_micros(T)})
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        (pw, pc), load = planned[-1], os.getloadavg()[0]
        split = (f"plan {pw:.2f} s + commit {took - pw:.2f} s; CPU {cpu:.2f} s (plan {pc:.2f} + "
                 f"commit {cpu - pc:.2f}); load average {load:.1f}")
        if label == "tick":
            items = store.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            print(f"tick (plan with policy + commit) of {result.new_fires} fires, {items} outbox "
                  f"items: {took:.2f} s ({result.new_fires / took:,.0f} fires/s): {split}")
        else:
            print(f"the same tick again (idempotent, {result.repeated} repeated): {took:.2f} s: "
                  f"{split}")
    store.close()


if __name__ == "__main__":
    main()
