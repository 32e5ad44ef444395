"""Benchmark: wechat_subscribe sends per second to the local fake WeChat server.

Usage: python bench/deliver_channels.py [--messages 5000] [--workers 16] [--in-process]
Starts tests/fake_wechat.py as a separate process (as the daemon tests will), builds ONE
`wechat_subscribe` channel (cached stable token, pooled keep-alive connections) and sends N
messages to distinct openids from a thread pool. Prints messages/s, then checks with the fake
that every message was accepted exactly once. Goal (issue 5): >= 2,000 messages/s.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from engine.channels import SENT, SendRequest, build_channel  # noqa: E402
from engine.config import Channel  # noqa: E402
from tests.fake_wechat import APPID, TEMPLATE_ID, FakeWeChat  # noqa: E402


def start_fake(in_process: bool) -> tuple[str, dict[str, str], Any]:
    if in_process:
        fake = FakeWeChat().start()
        return fake.url, fake.env(), fake
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_wechat", "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return info["url"], info["env"], proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--in-process", action="store_true",
                        help="run the fake in this process (shares the GIL: slower)")
    args = parser.parse_args()
    url, env, handle = start_fake(args.in_process)
    try:
        config = Channel("wechat_subscribe", "wechat_subscribe",
                         {"appid": APPID, "secret_env": "WECHAT_APPSECRET", "base_url": url,
                          "concurrency": args.workers})
        channel = build_channel(config, env)
        requests = [SendRequest(f"bench-{i}", "wechat_subscribe", "message", f"u{i}",
                                f"oBench{i:06d}",
                                {"template_id": TEMPLATE_ID, "page": "pages/index/index",
                                 "data": {"thing1": "满100减10元券", "amount2": "¥10.00",
                                          "date3": "2026-11-30", "thing4": "期待你回来"}})
                    for i in range(args.messages)]
        channel.send(SendRequest("warm-up", "wechat_subscribe", "message", "u", "oWarm",
                                 requests[0].payload))  # the token fetch and first connection
        with ThreadPoolExecutor(args.workers) as pool:
            start = time.perf_counter()
            results = list(pool.map(channel.send, requests))
            elapsed = time.perf_counter() - start
        channel.close()
        sent = sum(r.status == SENT for r in results)
        others = sorted({f"{r.status}:{r.code}" for r in results if r.status != SENT})
        if isinstance(handle, FakeWeChat):
            accepted = len(handle.accepted_for("subscribe")) - 1
            dupes = len(handle.duplicates())
        else:
            state = httpx.get(f"{url}/_fake/state", timeout=30).json()
            accepted = sum(a["endpoint"] == "subscribe" for a in state["accepted"]) - 1
            dupes = len(state["duplicates"])
    finally:
        if isinstance(handle, FakeWeChat):
            handle.stop()
        else:
            handle.terminate()
            handle.wait(timeout=10)
    print(f"{args.messages} wechat_subscribe messages, {args.workers} workers, one channel: "
          f"{elapsed:.2f} s, {args.messages / elapsed:,.0f} messages/s")
    print(f"sent {sent}, accepted by the fake {accepted}, duplicates {dupes}"
          + (f", other results {others}" if others else ""))
    ok = sent == accepted == args.messages and dupes == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
