"""Benchmark: `engine validate` over a generated project of 500 rule files, whole process.

Usage: python bench/validate_500.py [--rules 500] [--runs 5]
Writes the project to bench/out/validate-500 (gitignored), then times `engine validate`
as a subprocess (interpreter start-up, imports, parsing, checks and output included) and
prints the median, min and max wall time. Goal (issue 2): median <= 1.0 s on 2 cores.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "validate-500"


def make_project(n_rules: int) -> Path:
    if OUT.exists():
        shutil.rmtree(OUT)
    sys.path.insert(0, str(ROOT))
    from engine.scaffold import init_project

    init_project(str(OUT))
    examples = sorted((OUT / "rules").glob("*.yaml"))
    texts = [p.read_text(encoding="utf-8") for p in examples]
    for p in examples:
        p.unlink()
    for i in range(n_rules):
        text = texts[i % len(texts)]
        # every rule id must be unique: suffix each `id:` value with the file number
        text = re.sub(r"(^\s*-?\s*id: )([a-z0-9-]+)", rf"\g<1>\g<2>-{i}", text, flags=re.M)
        (OUT / "rules" / f"rule-{i:04d}.yaml").write_text(text, encoding="utf-8")
    return OUT


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    project = make_project(args.rules)
    engine = shutil.which("engine") or sys.exit("install first: pip install -e .")
    times = []
    for _ in range(args.runs + 1):  # the first run warms the OS file cache and is dropped
        start = time.perf_counter()
        proc = subprocess.run([engine, "validate"], cwd=project, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"validate failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr}")
    times = times[1:]
    print(proc.stdout.strip().splitlines()[-1])
    print(f"engine validate, {args.rules} rule files: median {statistics.median(times):.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f}, {args.runs} runs)")


if __name__ == "__main__":
    main()
