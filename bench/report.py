"""Benchmark: `engine report` on the 1M-user / 10M-event database after a real run.

Usage: python bench/report.py [--db bench/out/report.db] [--repeat 3]
The database must be a copy of bench/data/bench.db (never the original). The first time, the
example playbook runs once at RUN_AT (`run_once`: plan with policy, commit, delivery to console
channels writing to /dev/null), so the ledger holds real fires, outbox items and holdouts. Then
the real `engine report --format json` command is timed (a subprocess, as an operator runs it)
at REPORT_AT over 30 days, --repeat times.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.channels import build_channel  # noqa: E402
from engine.project import load_project  # noqa: E402
from engine.resources import PROJECT_FILES, example_project, schemas_dir  # noqa: E402
from engine.run import run_once  # noqa: E402
from engine.store import open_project_store  # noqa: E402

OUT = ROOT / "bench" / "out" / "report"
TZ = ZoneInfo("Asia/Shanghai")
RUN_AT = datetime(2026, 11, 18, 10, 0, tzinfo=TZ)
REPORT_AT = "2026-11-20T10:00:00+08:00"


def project() -> Path:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for name in PROJECT_FILES:
        shutil.copyfile(example_project() / name, OUT / name)
    shutil.copytree(schemas_dir(), OUT / "schemas")
    shutil.copytree(example_project() / "rules", OUT / "rules")
    cfg = yaml.safe_load((OUT / "engine.yaml").read_text("utf-8"))
    cfg["channels"] = {name: {"type": "console"} for name in cfg.get("channels", {})}
    (OUT / "engine.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False),
                                     "utf-8")
    return OUT


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=str(ROOT / "bench" / "out" / "report.db"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    db = Path(args.db).resolve()
    if db == (ROOT / "bench" / "data" / "bench.db").resolve() or not db.is_file():
        sys.exit("give --db a copy of bench/data/bench.db (cp bench/data/bench.db bench/out/...)")
    root = project()
    proj = load_project(root)
    with open_project_store(proj, str(db), create=False) as store:
        fires = store.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'fires'"
                                   ).fetchone()[0] and store.conn.execute(
            "SELECT COUNT(*) FROM fires").fetchone()[0]
        if not fires:
            with open(os.devnull, "w", encoding="utf-8") as sink:
                channels = {n: build_channel(c, {}, stream=sink)
                            for n, c in proj.config.channels.items()}
                start = time.perf_counter()
                rep = run_once(proj, store, RUN_AT, channels)
                took = time.perf_counter() - start
            new = rep.commit.new_fires if rep.commit else 0
            print(f"run --once at {RUN_AT.isoformat()}: {new} fires, delivery "
                  f"{rep.delivery.as_json()} in {took:.1f} s")
        counts = dict(store.conn.execute("SELECT outcome, COUNT(*) FROM fires GROUP BY 1"))
        print(f"ledger: fires by outcome {counts}")
    cmd = [sys.executable, "-c", "import cli; cli.main()", "report", "--project", str(root),
           "--db", str(db), "--at", REPORT_AT, "--since", "30d", "--format", "json"]
    for i in range(args.repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        took = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if out.returncode != 0:
            sys.exit(out.stderr)
        data = json.loads(out.stdout)
        print(f"engine report --since 30d --format json: {took:.2f} s, CPU {cpu:.2f} s "
              f"(run {i + 1}, load {os.getloadavg()[0]:.1f}); totals "
              f"{data['totals']}; {len(data['cohorts'])} cohorts, "
              f"DAU/WAU/MAU {data['activity']['dau']}/{data['activity']['wau']}/"
              f"{data['activity']['mau']}")


if __name__ == "__main__":
    main()
