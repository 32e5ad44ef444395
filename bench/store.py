"""Benchmark of the store (issue 3): generate, ingest users and events, re-ingest, rfm.

    python bench/store.py                      # 1M users, ~10M events, into bench/data/
    python bench/store.py --users 100000       # a quicker run
    python bench/store.py --skip-generate      # reuse bench/data/gen
    python bench/store.py --skip-generate --db bench/out/me.db   # leave bench/data/bench.db alone

Each step runs the real `engine` command in a subprocess; wall time and the peak resident
memory of the step's largest process (os.wait4 rusage, like /usr/bin/time -v) are reported
as a Markdown table for docs/benchmarks.md, with the CPU seconds of the step (user + system,
all its processes: steadier than wall time on a shared machine) and the load average when it
started.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AT = "2026-11-20T00:00:00+08:00"


def run(label: str, args: list[str], rows: list[dict[str, object]]) -> str:
    cmd = [sys.executable, "-c", "import cli; cli.main()", *args]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{label} failed ({code}): {err.decode()[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    rows.append({"step": label, "seconds": round(seconds, 1), "cpu": round(cpu, 1),
                 "peak_mb": round(usage.ru_maxrss / 1024), "load": round(load, 1)})
    print(f"{label}: {seconds:.1f} s, {cpu:.1f} s CPU, peak {usage.ru_maxrss / 1024:.0f} MB, "
          f"load {load:.1f} at the start", flush=True)
    return out.decode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=95)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data", type=Path, default=ROOT / "bench" / "data")
    ap.add_argument("--skip-generate", action="store_true")
    ap.add_argument("--db", type=Path, default=None,
                    help="the database to build (default: DATA/bench.db); it is recreated")
    opts = ap.parse_args()
    gen, db = opts.data / "gen", (opts.db or opts.data / "bench.db").resolve()
    opts.data.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    if not opts.skip_generate:
        shutil.rmtree(gen, ignore_errors=True)
        run("generate", ["generate", str(gen), "--users", str(opts.users), "--days",
                         str(opts.days), "--seed", str(opts.seed)], rows)
    n_events = sum(1 for _ in open(gen / "events.jsonl", "rb"))
    n_users = sum(1 for _ in open(gen / "users.jsonl", "rb"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    common = ["--project", str(ROOT), "--db", str(db)]
    run("ingest users", ["ingest", "users", str(gen / "users.jsonl"), *common], rows)
    run("ingest events", ["ingest", "events", str(gen / "events.jsonl"), *common], rows)
    run("re-ingest events (all duplicates)",
        ["ingest", "events", str(gen / "events.jsonl"), *common], rows)
    out = run("rfm", ["rfm", "--at", AT, "--format", "json", *common], rows)
    buyers = json.loads(out)["users"]
    run("rfm at another T", ["rfm", "--at", "2026-10-01T00:00:00+08:00", "--format", "json",
                             *common], rows)
    print()
    print(f"{n_users} users, {n_events} events, {buyers} buyers at {AT}; database "
          f"{db.stat().st_size / 2**30:.2f} GiB")
    print(f"load average after the run: {os.getloadavg()[0]:.2f} (other jobs on the machine "
          "slow every step; see docs/benchmarks.md)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, SQLite {__import__('sqlite3').sqlite_version}")
    print()
    print("| step | seconds | rows/s | CPU s | peak RSS (MB) | load at start |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        n = {"ingest users": n_users}.get(str(r["step"]), n_events if "events" in str(r["step"])
                                          else 0)
        rate = f"{n / float(r['seconds']):,.0f}" if n and r["seconds"] else ""  # type: ignore[arg-type]
        print(f"| {r['step']} | {r['seconds']} | {rate} | {r['cpu']} | {r['peak_mb']} | "
              f"{r['load']} |")


if __name__ == "__main__":
    main()
