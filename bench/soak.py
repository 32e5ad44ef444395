"""Soak test (not CI): the real daemon for N minutes under a steady load of events and ticks.

Usage: python bench/soak.py [--minutes 30] [--users 2000] [--rate 20] [--out bench/out/soak]

Builds a project in --out with --users users (openid, tier, 100 consents each), starts the
fake WeChat server (tests/fake_wechat.py) in this process and `engine daemon --http` as a
subprocess, then for --minutes POSTs --rate events a second (checkins, orders, cart adds, in
batches of one second) while three rules run: an event rule that messages on every checkin,
an event rule that tags order payers, and a scheduled rule every 30 s that tags gold users.
Every 10 s it samples the daemon's resident memory and open file descriptors (/proc) and the
tick and POST latencies, and at the end prints a table and a summary (Markdown) for
docs/benchmarks.md: memory and descriptors should be flat, tick latency stable, and no item
accepted twice by the fake server.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from engine.ingest import ingest  # noqa: E402
from engine.project import load_project  # noqa: E402
from engine.resources import example_project  # noqa: E402
from fake_wechat import FakeWeChat, load_templates  # noqa: E402

TOKEN = "soak-token"
RULES = {
    "checkin.yaml": """id: checkin-thanks
category: transactional
trigger: {event: checkin}
fire: every_time
actions:
  - message:
      channel: wechat_subscribe
      template: checkin_reward
      data: {thing1: 签到成功, number2: "1"}
""",
    "payer.yaml": """id: payer-tag
category: transactional
trigger: {event: order_paid}
fire: every_time
actions:
  - tag: {add: payer}
""",
    "gold.yaml": """id: gold-sweep
category: transactional
trigger: {every: 30s}
fire: every_time
audience: user.tier == "gold" and exists(order_paid, 1d)
actions:
  - tag: {add: recent_gold}
""",
}


def build(out: Path, url: str, users: int) -> Path:
    if out.exists():
        shutil.rmtree(out)
    root = out / "shop"
    (root / "rules").mkdir(parents=True)
    for name in ("datamodel.yaml", "templates.yaml", "coupons.yaml"):
        shutil.copyfile(example_project() / name, root / name)
    (root / "engine.yaml").write_text(
        "timezone: Asia/Shanghai\ndatabase: engine.db\npurchase_event: order_paid\n"
        "channels:\n  wechat_subscribe: {appid: wx0123456789abcdef, secret_env: "
        f'WECHAT_APPSECRET, openid_field: openid, base_url: "{url}"}}\n', "utf-8")
    for name, text in RULES.items():
        (root / "rules" / name).write_text(text, "utf-8")
    rng = random.Random(1)
    day_ago = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    with open(out / "users.jsonl", "w", encoding="utf-8") as f:
        for i in range(users):
            f.write(json.dumps({"user_id": f"u{i}", "openid": f"oSoak{i:023d}",
                                "tier": rng.choice(["silver", "gold", "black_gold"])}) + "\n")
    with open(out / "events.jsonl", "w", encoding="utf-8") as f:
        for i in range(users):
            for k in range(100):
                f.write(json.dumps({"event_id": f"c{i}-{k}", "user_id": f"u{i}",
                                    "type": "subscribe_authorized", "ts": day_ago,
                                    "props": {"template": "checkin_reward"}}) + "\n")
    project = load_project(root)
    ingest(project, "users", [str(out / "users.jsonl")], workers=0)
    ingest(project, "events", [str(out / "events.jsonl")], workers=0)
    return root


def proc_stats(pid: int) -> tuple[float, int]:
    rss = 0.0
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class LogReader(threading.Thread):
    """Reads the daemon's JSON log lines; keeps tick latencies and counts, not the lines."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lock = threading.Lock()
        self.ticks: list[tuple[float, str, float]] = []  # (wall time, kind, seconds)
        self.port = 0
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}

    def run(self) -> None:
        for line in self.stream:
            try:
                rec = json.loads(line)
            except ValueError:
                self.errors.append(line.strip())
                continue
            event = rec.get("event", "")
            with self.lock:
                self.counts[event] = self.counts.get(event, 0) + 1
                if event == "tick":
                    self.ticks.append((time.time(), rec["kind"], float(rec["seconds"])))
                elif event == "http_listening":
                    self.port = int(rec["port"])
                elif rec.get("level") == "error":
                    self.errors.append(line.strip())


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--rate", type=int, default=20, help="events per second")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "soak"))
    args = ap.parse_args()
    out = Path(args.out)
    rng = random.Random(2)
    with FakeWeChat(templates=load_templates(ROOT / "templates.yaml")) as fake:
        root = build(out, fake.url, args.users)
        env = {**os.environ, **fake.env(), "ENGINE_HTTP_TOKEN": TOKEN}
        daemon = subprocess.Popen(
            [sys.executable, "-c", "import cli; cli.main()", "daemon", "--project", str(root),
             "--http", "127.0.0.1:0", "--event-interval", "2s", "--deliver-interval", "2s"],
            cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, encoding="utf-8")
        logs = LogReader(daemon.stderr)
        logs.start()
        deadline = time.monotonic() + 30
        while not logs.port:
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit("the daemon did not start: " + "\n".join(logs.errors))
            time.sleep(0.1)
        http = httpx.Client(base_url=f"http://127.0.0.1:{logs.port}", timeout=30,
                            headers={"Authorization": f"Bearer {TOKEN}"})
        samples: list[dict[str, float]] = []
        post_ms: list[float] = []
        posted = 0
        started = time.monotonic()
        end = started + args.minutes * 60
        next_sample = started
        seq = 0
        window_start = time.time()
        while time.monotonic() < end:
            second = time.monotonic()
            now = datetime.now(timezone.utc).isoformat()
            batch = []
            for _ in range(args.rate):
                seq += 1
                user = f"u{rng.randrange(args.users)}"
                kind = rng.choices(["checkin", "order_paid", "cart_add"], [2, 1, 3])[0]
                ev: dict[str, Any] = {"event_id": f"s{seq}", "user_id": user, "type": kind,
                                      "ts": now}
                if kind == "order_paid":
                    ev["amount"] = rng.choice([19.9, 59, 128])
                elif kind == "cart_add":
                    ev["props"] = {"item_id": f"i{rng.randrange(500)}"}
                batch.append(ev)
            t0 = time.perf_counter()
            r = http.post("/events", json=batch)
            post_ms.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                print("POST failed:", r.status_code, r.text[:200], file=sys.stderr)
            posted += len(batch)
            if time.monotonic() >= next_sample:
                rss, fds = proc_stats(daemon.pid)
                with logs.lock:
                    recent = [s for t, k, s in logs.ticks if t >= window_start]
                window_start = time.time()
                samples.append({"t": time.monotonic() - started, "rss": rss, "fds": fds,
                                "tick_p50": pct(recent, 0.5) * 1000,
                                "tick_p95": pct(recent, 0.95) * 1000,
                                "tick_max": max(recent, default=0) * 1000,
                                "post_p50": pct(post_ms[-10:], 0.5),
                                "accepted": len(fake.accepted_for("subscribe"))})
                s = samples[-1]
                print(f"{s['t']:7.0f}s rss {s['rss']:6.1f} MiB fds {s['fds']:3.0f} "
                      f"tick p50 {s['tick_p50']:6.1f} ms p95 {s['tick_p95']:6.1f} ms "
                      f"max {s['tick_max']:6.1f} ms post {s['post_p50']:5.1f} ms "
                      f"sends {s['accepted']}", flush=True)
                next_sample += 10
            time.sleep(max(0.0, 1.0 - (time.monotonic() - second)))
        metrics = http.get("/metrics").text
        http.close()
        time.sleep(3)  # let the last events tick and deliver
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        logs.join(10)
        dups = fake.duplicates()
        sends = len(fake.accepted_for("subscribe"))
    depth = [line for line in metrics.splitlines() if line.startswith("zailai_outbox_depth")]
    first = samples[: max(1, len(samples) // 6)]
    last = samples[-max(1, len(samples) // 6):]

    def avg(rows: list[dict[str, float]], key: str) -> float:
        return statistics.mean(r[key] for r in rows)
    print()
    print(f"| what | first {len(first) * 10} s | last {len(last) * 10} s |")
    print("| --- | --- | --- |")
    for key, label, unit in (("rss", "resident memory", "MiB"), ("fds", "open files", ""),
                             ("tick_p50", "tick latency p50", "ms"),
                             ("tick_p95", "tick latency p95", "ms"),
                             ("post_p50", "POST /events (20 events) p50", "ms")):
        print(f"| {label} | {avg(first, key):.1f} {unit} | {avg(last, key):.1f} {unit} |")
    print()
    print(f"minutes {args.minutes:g}, users {args.users}, events posted {posted} "
          f"({args.rate}/s), ticks {len(logs.ticks)}, messages accepted by the fake {sends}, "
          f"duplicates {len(dups)}, max rss {max(s['rss'] for s in samples):.1f} MiB, "
          f"max fds {max(s['fds'] for s in samples):.0f}, {depth[0] if depth else ''}, "
          f"exit code {code}, error log lines {len(logs.errors)}")
    for line in logs.errors[:5]:
        print("  ", line[:300])


if __name__ == "__main__":
    main()
