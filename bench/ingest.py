"""Where the time of `engine ingest events` goes, and the writer's floor (issue 3).

    python bench/ingest.py                       # bench/data/gen/events.jsonl (10M events)
    python bench/ingest.py --lines 1000000       # the first 1M lines only (a quicker run)
    python bench/ingest.py --workers 0           # check in the writer's process

Runs the real ingest (`engine.ingest.ingest`, the code behind the command) into a fresh
database, with the project of `bench/data/gen` (its datamodel.yaml, the example engine.yaml),
and times every SQL statement the writer process runs. Prints wall and CPU seconds (this
process and its worker processes), then the writer's statements, summed by kind, with both
their wall time and the CPU time of the writer's thread.

The writer is the part that cannot be spread over cores: one SQLite connection writes the
database from one thread. The sum of its statements' CPU time is therefore a floor: whatever
checking costs, and however many cores check, a load cannot be faster than
events / (writer CPU seconds). The last line prints that ceiling.

`engine generate bench/data/gen --users 1000000 --days 95 --seed 42` makes the data (or run
`python bench/store.py` once).
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import ingest as ingest_module  # noqa: E402
from engine.dataproject import load_data_project  # noqa: E402
from engine.scaffold import init_project  # noqa: E402
from engine.store import db as store_db  # noqa: E402


class TimedConnection:
    """A sqlite3 connection whose `execute`/`executemany` are timed per statement kind."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def _timed(self, method: Any, sql: str, *args: Any) -> Any:
        w, c = time.perf_counter(), time.thread_time()
        try:
            return method(sql, *args)
        finally:
            key = " ".join(sql.split())[:72]
            self.wall[key] = self.wall.get(key, 0.0) + time.perf_counter() - w
            self.cpu[key] = self.cpu.get(key, 0.0) + time.thread_time() - c

    def execute(self, sql: str, *args: Any) -> Any:
        return self._timed(self.conn.execute, sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        return self._timed(self.conn.executemany, sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT / "bench" / "data" / "gen"))
    ap.add_argument("--lines", type=int, default=0, help="only the first N lines (0: all)")
    ap.add_argument("--workers", type=int, default=None, help="checking processes (default: "
                    "one per core; 0: in the writer)")
    ap.add_argument("--keep", help="leave the database at this path")
    args = ap.parse_args()
    data = Path(args.data)
    events = data / "events.jsonl"
    if not events.is_file():
        raise SystemExit(f"no {events}: run `engine generate {data} --users 1000000 --days 95 "
                         "--seed 42` first")
    work = Path(tempfile.mkdtemp(prefix="zl-ingest-bench-"))
    try:
        init_project(str(work / "proj"), force=True)
        shutil.copyfile(data / "datamodel.yaml", work / "proj" / "datamodel.yaml")
        source = events
        if args.lines:
            source = work / "events.jsonl"
            with open(events, "rb") as src, open(source, "wb") as out:
                out.writelines(itertools.islice(src, args.lines))
        project = load_data_project(work / "proj")
        db = Path(args.keep) if args.keep else work / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        timed: list[TimedConnection] = []
        real_open = store_db.open_store

        def open_store(*a: Any, **k: Any) -> Any:
            store = real_open(*a, **k)
            timed.append(TimedConnection(store.conn))
            store.conn = timed[-1]  # type: ignore[assignment]
            return store

        store_db.open_store = open_store  # type: ignore[assignment]
        import engine.store as store_pkg
        store_pkg.open_store = open_store  # type: ignore[assignment]
        load = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        result = ingest_module.ingest(project, "events", [str(source)], db=str(db),
                                      workers=args.workers)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, kids.ru_maxrss) / 1024
        n = result.total("read")
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}; load {load:.1f} "
              "at the start")
        print(f"{n:,} events ({result.total('accepted'):,} accepted, "
              f"{result.users_created:,} users created) in {wall:.1f} s: {n / wall:,.0f} "
              f"events/s; CPU {cpu:.1f} s writer + {kids.ru_utime + kids.ru_stime:.1f} s "
              f"workers; peak resident memory {peak:,.0f} MB (largest process)")
        conn = timed[0]
        total_cpu = sum(conn.cpu.values())
        print(f"\nwriter statements (wall s, writer-thread CPU s, CPU µs/event):")
        for key, seconds in sorted(conn.wall.items(), key=lambda kv: -kv[1])[:12]:
            print(f"  {seconds:7.2f} {conn.cpu[key]:7.2f} {conn.cpu[key] / n * 1e6:6.2f}  {key}")
        print(f"  {sum(conn.wall.values()):7.2f} {total_cpu:7.2f} {total_cpu / n * 1e6:6.2f}  "
              "all statements")
        print(f"\nthe writer's floor: {n / total_cpu:,.0f} events/s at most on this machine, "
              "whatever checking costs (events / writer CPU seconds)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
