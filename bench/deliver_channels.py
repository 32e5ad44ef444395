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
import os
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
from tests.fake_wechat import APPID, TEMPLATE_ID, FakeWeChat, load_templates  # noqa: E402,E501


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_fake(in_process: bool, templates: Path | None = None
               ) -> tuple[str, dict[str, str], Any]:
    """(url, env, handle) of the fake: a separate process, or a server in this one."""
    if in_process:
        fake = FakeWeChat(templates=load_templates(templates) if templates else None).start()
        return fake.url, fake.env(), fake
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_wechat", "--port", "0"]
                            + (["--templates", str(templates)] if templates else []),
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return info["url"], info["env"], proc


def fake_cpu(handle: Any) -> float:
    """CPU seconds the fake's process has used (0 when it runs in this process)."""
    return 0.0 if isinstance(handle, FakeWeChat) else process_cpu(handle.pid)


def fake_sends(url: str, handle: Any) -> tuple[int, int]:
    """(subscription messages accepted, duplicates) as the fake saw them."""
    if isinstance(handle, FakeWeChat):
        return len(handle.accepted_for("subscribe")), len(handle.duplicates())
    state = httpx.get(f"{url}/_fake/state", timeout=60).json()
    return (sum(a["endpoint"] == "subscribe" for a in state["accepted"]),
            len(state["duplicates"]))


def stop_fake(handle: Any) -> None:
    if isinstance(handle, FakeWeChat):
        handle.stop()
    else:
        handle.terminate()
        handle.wait(timeout=10)


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
        fake_start = fake_cpu(handle)
        with ThreadPoolExecutor(args.workers) as pool:
            cpu, start = time.process_time(), time.perf_counter()
            results = list(pool.map(channel.send, requests))
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        fake_used = fake_cpu(handle) - fake_start
        channel.close()
        sent = sum(r.status == SENT for r in results)
        others = sorted({f"{r.status}:{r.code}" for r in results if r.status != SENT})
        accepted, dupes = fake_sends(url, handle)
        accepted -= 1  # the warm-up
    finally:
        stop_fake(handle)
    print(f"{args.messages} wechat_subscribe messages, {args.workers} workers, one channel: "
          f"{elapsed:.2f} s, {args.messages / elapsed:,.0f} messages/s; channel CPU {cpu:.2f} s "
          f"({cpu / args.messages * 1e3:.2f} ms/message), fake server CPU {fake_used:.2f} s; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"sent {sent}, accepted by the fake {accepted}, duplicates {dupes}"
          + (f", other results {others}" if others else ""))
    ok = sent == accepted == args.messages and dupes == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
