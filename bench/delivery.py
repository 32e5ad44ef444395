"""Benchmark: the whole delivery loop (render, guard, send, record) to the local fake server.

Usage: python bench/delivery.py [--messages 3000] [--in-process]
Starts the fake WeChat server (tests/fake_wechat.py) as a separate process on 127.0.0.1 (as
bench/deliver_channels.py does; `--in-process` runs it in this process, where it shares the
GIL with the engine), builds a project whose rule sends one subscription message to N users
with consent, commits the tick, then times `deliver()`: every item rendered in the sandbox,
checked against the keyword limits and phrase lists, sent through the real wechat_subscribe
channel over HTTP and recorded in the outbox. Checks with the fake that every message was
accepted exactly once. Goal (issue 5): >= 2,000 messages/s. (bench/deliver_channels.py
measures the channel alone.)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.deliver_channels import fake_cpu, fake_sends, start_fake, stop_fake  # noqa: E402
from engine.channels import build_channel  # noqa: E402
from engine.commit import tick  # noqa: E402
from engine.outbox import deliver  # noqa: E402
from engine.project import load_project  # noqa: E402
from engine.resources import PROJECT_FILES, example_project, schemas_dir  # noqa: E402
from engine.store import open_project_store  # noqa: E402
from engine.timeutil import to_micros  # noqa: E402
from tests.fake_wechat import APPID  # noqa: E402

OUT = ROOT / "bench" / "out" / "deliver"
T = datetime(2026, 11, 20, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
RULE = """
id: notice
category: transactional
trigger: {schedule: "0 10 * * *"}
actions:
  - message:
      channel: wechat_subscribe
      template: cart_reminder
      data: {thing1: "{{ user.nickname }}，购物车里的商品还在", thing2: 库存有限请尽快下单}
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16,
                    help="the channel's `concurrency` (worker threads and connections)")
    ap.add_argument("--in-process", action="store_true",
                    help="run the fake in this process (shares the GIL: slower)")
    args = ap.parse_args()
    n = args.messages
    url, env, handle = start_fake(args.in_process, ROOT / "templates.yaml")
    try:
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True)
        for name in PROJECT_FILES:
            shutil.copyfile(example_project() / name, OUT / name)
        cfg = yaml.safe_load((OUT / "engine.yaml").read_text("utf-8"))
        cfg["policy"] = {}
        cfg["channels"] = {"wechat_subscribe": {"appid": APPID, "secret_env": "WECHAT_APPSECRET",
                                                "base_url": url, "concurrency": args.concurrency}}
        (OUT / "engine.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), "utf-8")
        shutil.copytree(schemas_dir(), OUT / "schemas")
        (OUT / "rules").mkdir()
        (OUT / "rules" / "notice.yaml").write_text(RULE, "utf-8")
        proj = load_project(OUT)
        store = open_project_store(proj)
        with store.transaction():
            store.upsert_users(("openid", "nickname"),
                               [(f"u{i:06d}", f"o{i}", f"用户{i}") for i in range(n)])
            auth = store.type_ids["subscribe_authorized"]
            store.insert_events([(f"a{i}", f"u{i:06d}", auth, to_micros(T - timedelta(days=1)),
                                  None, json.dumps({"template": "cart_reminder"}))
                                 for i in range(n)])
        tick(proj, store, T, ["notice"], {"notice": to_micros(T)})
        channels = {"wechat_subscribe": build_channel(proj.config.channels["wechat_subscribe"],
                                                      env)}
        fake_start = fake_cpu(handle)
        cpu, main, start = time.process_time(), time.thread_time(), time.perf_counter()
        report = deliver(proj, store, channels, T)
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        main = time.thread_time() - main
        fake_used = fake_cpu(handle) - fake_start
        store.close()
        sent = report.as_json().get("sent", 0)
        got, dupes = fake_sends(url, handle)
    finally:
        stop_fake(handle)
    where = "in process" if args.in_process else f"out of process, its CPU {fake_used:.2f} s"
    per = 1e3 / max(1, sent)
    print(f"delivered {sent} messages in {took:.2f} s: {sent / took:,.0f} messages/s "
          f"(engine CPU {cpu:.2f} s = {cpu * per:.2f} ms/message, of which the main thread "
          f"{main * per:.2f} and the sending threads {(cpu - main) * per:.2f}; fake {where}; "
          f"load average {os.getloadavg()[0]:.1f}); fake accepted {got}, duplicates {dupes}")
    return 0 if sent == got == n and dupes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
