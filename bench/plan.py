"""Benchmark: audience selection and `engine plan` on the 1M users / 10M events data set.

Usage: python bench/plan.py --db bench/out/plan.db [--at 2026-11-19T10:00:00+08:00]
The database comes from bench/store.py (engine generate --users 1000000 ... then ingest).
Times, in one process with a warm OS cache:
  1. audience selection for one typical rule (winback-7d: days_since(last(order_paid)) >= 7
     and an RFM segment) as `plan` selects it: the per-user order summary as of T (from the
     stored event summary when it is fresh), RFM as of T from it (only its means when no rule
     reads rfm.r/f/m: the query computes the segment), then the audience query;
     with the older stand-alone path (RFM with scores from the events) next to it;
  2. `plan` of the whole example playbook (16 rules, policy included), as `engine plan` runs it.
Goals (issue 4): 1. <= 1 s; 2. <= 10 s.
Each figure is wall time, with this process's CPU time and the load average next to it: on a
machine shared with other jobs the wall time mostly measures the others, the CPU time much less.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import rfm as rfmlib  # noqa: E402
from engine.plan import Snapshot, plan, scheduled_matches  # noqa: E402
from engine.project import load_project  # noqa: E402
from engine.store import open_project_store  # noqa: E402
from engine.store.audience import Env, select_users  # noqa: E402
from engine.timeutil import parse_timestamp, to_micros  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=str(ROOT / "bench" / "out" / "plan.db"))
    ap.add_argument("--at", default="2026-11-19T10:00:00+08:00")
    args = ap.parse_args()
    proj = load_project(ROOT)
    at = parse_timestamp(args.at, proj.config.tz)
    store = open_project_store(proj, args.db, create=False)
    users = store.count_users()
    rule = proj.rule("winback-7d")
    assert rule is not None and rule.audience is not None
    snap = Snapshot(proj, store, to_micros(at))
    fresh = snap.stored_summary  # (its check is part of the plan's time below)
    c0, t0 = time.process_time(), time.perf_counter()
    # the order summary as of T, then RFM from it: the means only, when no rule reads the
    # scores (the segment is then computed in the audience query), else the RFM table
    inline = snap.rfm_inline
    snap.rfm_means() if inline is not None else snap.rfm_table()
    c1, t1 = time.process_time(), time.perf_counter()
    matched = scheduled_matches(snap, rule, snap.T)
    c2, t2 = time.process_time(), time.perf_counter()
    print(f"{users:,} users; winback-7d audience as plan selects it (stored summary "
          f"{'fresh' if fresh else 'not fresh: events read'}; RFM "
          f"{'means, segment in the query' if inline is not None else 'table'}): "
          f"{len(matched):,} users in "
          f"{t2 - t1:.2f} s (CPU {c2 - c1:.2f}) + order summary and RFM as of T {t1 - t0:.2f} s "
          f"(CPU {c1 - c0:.2f}) = {t2 - t0:.2f} s (CPU {c2 - c0:.2f})")
    snap.drop_tables()
    t0 = time.perf_counter()
    rfm_table = rfmlib.materialise(store, at, proj.config.purchase_event)
    t1 = time.perf_counter()
    env = Env(to_micros(at), proj.config.tz, store.type_ids, rfm_table=rfm_table)
    alone = select_users(store.conn, rule.audience.expr, env, has_signup=True)
    t2 = time.perf_counter()
    assert alone == [m.user_id for m in matched]
    print(f"  stand-alone path (RFM with scores from the events, aggregates by GROUP BY): "
          f"{t2 - t1:.2f} s + RFM {t1 - t0:.2f} s = {t2 - t0:.2f} s")
    store.conn.execute(f"DROP TABLE IF EXISTS {rfm_table}")
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    result = plan(proj, store, at)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"plan of the whole playbook ({len(result.rules)} rules, policy included): {took:.2f} s "
          f"(CPU {cpu:.2f} s; load average {load:.1f} -> {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores)")
    for r in result.rules:
        print(f"  {r.rule_id:<30} matched {r.matched:>8,}  fire {r.count('fire'):>8,}  "
              f"{r.suppressed()}")
    store.close()


if __name__ == "__main__":
    main()
