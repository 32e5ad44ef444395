"""Benchmark: `engine backtest` of the whole example playbook on the 1M users / 10M events data.

Usage: python bench/backtest.py [--db bench/out/backtest.db] [--days 30] [--step 1h]
       python bench/backtest.py --days 1 --profile      # cProfile of one day, in-process

The database is a copy of bench/data/bench.db (bench/store.py builds it; it is never modified):
the script copies it to --db when that file does not exist and migrates the copy (`engine plan`
migrates on open). The span is the last --days days of the events: (T2 - days, T2] with T2
the local midnight after the last event. Runs the real `engine backtest ... --format json` in
a subprocess and reports wall time, peak resident memory of the process (getrusage of the
children) and the cost per simulated day; `uptime` before and after says whether the machine
was loaded.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.project import load_project  # noqa: E402
from engine.store import open_project_store  # noqa: E402
from engine.timeutil import from_micros  # noqa: E402


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def span_of(db: Path, days: int) -> tuple[datetime, datetime, int, int]:
    proj = load_project(ROOT)
    with open_project_store(proj, str(db), create=False) as store:  # migrates the copy
        lo, hi = store.conn.execute("SELECT MIN(ts), MAX(ts) FROM events").fetchone()
        users = store.count_users()
    tz = proj.config.tz
    last = from_micros(hi, tz)
    end = datetime(last.year, last.month, last.day, tzinfo=tz) + timedelta(days=1)
    print(f"events from {from_micros(lo, tz).isoformat()} to {last.isoformat()}; {users:,} users")
    return end - timedelta(days=days), end, lo, hi


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=str(ROOT / "bench" / "out" / "backtest.db"))
    ap.add_argument("--source", default=str(ROOT / "bench" / "data" / "bench.db"))
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--step", default="1h")
    ap.add_argument("--end", default=None, help="T2 (default: midnight after the last event)")
    ap.add_argument("--profile", action="store_true", help="cProfile in-process instead")
    ap.add_argument("--out", default=None, help="write the JSON report here")
    args = ap.parse_args()
    db = Path(args.db)
    if not db.exists():
        t = time.perf_counter()
        shutil.copyfile(args.source, db)
        print(f"copied {args.source} to {db} in {time.perf_counter() - t:.1f} s")
    start, end, _, _ = span_of(db, args.days)
    if args.end:
        from engine.timeutil import parse_timestamp
        end = parse_timestamp(args.end, start.tzinfo)  # type: ignore[arg-type]
        start = end - timedelta(days=args.days)
    print(f"backtest ({start.isoformat()}, {end.isoformat()}], step {args.step}")
    print("before:", uptime())
    if args.profile:
        profile(db, start, end, args.step)
        return
    cmd = [sys.executable, "-c", "import cli; cli.main()", "backtest", "--project", str(ROOT),
           "--db", str(db), "--from", start.isoformat(), "--to", end.isoformat(),
           "--step", args.step, "--format", "json"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    print("after: ", uptime())
    if proc.returncode != 0:
        print(err.decode(), file=sys.stderr)
        sys.exit(1)
    report = json.loads(out)
    if args.out:
        Path(args.out).write_text(out.decode(), encoding="utf-8")
    peak = _peak_mb()
    print(f"wall {wall:.1f} s for {args.days} day(s), {report['ticks']} ticks: "
          f"{wall / args.days:.1f} s per simulated day; peak RSS {peak}")
    tot = report["total"]
    print(f"total: matched {tot['matched']:,}, fire {tot['fire']:,}, deferred "
          f"{tot['deferred']:,}, cap hits {tot['cap_hits']:,}, suppressed {tot['suppressed']}")
    for r in report["rules"]:
        print(f"  {r['id']:<30} ticks {r['ticks']:>4}  matched {r['matched']:>8,}  "
              f"fire {r['fire']:>7,}  deferred {r['deferred']:>7,}  cap hits {r['cap_hits']:>7,}")


def _peak_mb() -> str:
    """Largest resident set of the reaped children (the backtest process; `uptime` is tiny)."""
    import resource

    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return f"{kb / 1024:.0f} MB"


def profile(db: Path, start: datetime, end: datetime, step: str) -> None:
    import cProfile
    import pstats

    from engine.backtest import backtest, choose_rules, parse_span

    proj = load_project(ROOT)
    span = parse_span(proj, start.isoformat(), end.isoformat(), step)
    rules = choose_rules(proj, [])
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    report = backtest(proj, db, rules, span)
    prof.disable()
    print(f"wall {time.perf_counter() - t0:.1f} s, {report.ticks} ticks")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(35)


if __name__ == "__main__":
    main()
