"""Benchmark: one condition evaluated per record, closures vs the `rule-engine` package.

Usage: python bench/closures.py [--records 200000]
A 5-predicate audience condition (the shape ANCHORS.md measures) is compiled once by the
engine's checker and closure compiler, then evaluated on N prebuilt records; the same
condition is written in rule-engine's language and evaluated on the same records as dicts.
Prints µs per record for both and the ratio (goal: closures <= 1 µs, ratio >= 30x).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import yaml12  # noqa: E402
from engine.config import build_datamodel  # noqa: E402
from engine.lang.checker import Scope, check  # noqa: E402
from engine.lang.to_python import Ctx, EventRow, compile_condition  # noqa: E402
from engine.resources import example_project  # noqa: E402

CONDITION = ('user.tier in ["gold", "black_gold"] and user.city == "上海" '
             'and event.amount > 50 and has_tag("vip") and user.points >= 100')
RULE_ENGINE = ('tier in ["gold", "black_gold"] and city == "上海" and amount > 5000 '
               'and "vip" in tags and points >= 100')


@dataclass
class Facts:
    user_id: str
    attrs: Mapping[str, Any]
    rfm: Mapping[str, Any]

    def events(self, event_type: str) -> Sequence[EventRow]:
        return ()

    def activity_bounds(self, before: int) -> tuple[int | None, int | None]:
        return (None, None)


def records(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        out.append({"user_id": f"u{i}", "tier": rnd.choice(["silver", "gold", "black_gold"]),
                    "city": rnd.choice(["上海", "北京", "杭州"]),
                    "tags": tuple(rnd.sample(["vip", "new", "mom", "pet"], rnd.randint(0, 2))),
                    "points": rnd.randint(0, 300), "amount": rnd.randint(0, 20000)})
    return out


def best_of(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    args = ap.parse_args()
    dm = build_datamodel(yaml12.load((example_project() / "datamodel.yaml").read_text("utf-8"),
                                     "datamodel.yaml").data).value
    tz = ZoneInfo("Asia/Shanghai")
    expr = check(CONDITION, Scope(dm, tz, trigger_event="order_paid"))
    matches = compile_condition(expr)
    recs = records(args.records)
    ctxs = [Ctx(Facts(r["user_id"], r, {}), 0, tz, EventRow(0, r["amount"])) for r in recs]

    def run_closures() -> int:
        return sum(1 for c in ctxs if matches(c))

    import rule_engine  # benchmark-only dependency: pip install '.[bench]'

    rule = rule_engine.Rule(RULE_ENGINE)
    sample = recs[: max(1, args.records // 10)]  # rule-engine is slow: a tenth of the records

    def run_rule_engine() -> int:
        return sum(1 for r in sample if rule.matches(r))

    ours = best_of(run_closures, 5) / len(ctxs) * 1e6
    theirs = best_of(run_rule_engine, 3) / len(sample) * 1e6
    same = sum(1 for c in ctxs[: len(sample)] if matches(c)) == run_rule_engine()
    print(f"condition: {CONDITION}")
    print(f"closures:    {ours:.3f} µs/record ({len(ctxs)} records, best of 5)")
    print(f"rule-engine: {theirs:.3f} µs/record ({len(sample)} records, best of 3)")
    print(f"ratio: {theirs / ours:.1f}x; same matches: {same}")


if __name__ == "__main__":
    main()
