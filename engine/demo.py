"""`engine demo`: the whole path on a fresh machine, in a temporary project, in a minute.

1. `engine init` a project into a temporary directory (the example playbook);
2. generate realistic data (a few thousand users) and ingest it;
3. run the playbook's rule tests, then validate the project;
4. plan the playbook at a fixed time (no side effects), then run one tick at that time:
   fires are committed with the outbox and delivered — every channel of the demo project is
   the console, so the messages are printed instead of sent.
The rule tests, backtest and HTML report join the demo as they are built.
"""
from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

import yaml

from .channels import build_channel
from .checks import check_loaded
from .generate import generate
from .ingest import ingest
from .plan import plan
from .project import load, load_project
from .report_text import plan_text, run_text
from .ruletests.files import load_tests
from .ruletests.output import format_text as format_tests
from .ruletests.runner import run_tests
from .run import run_once
from .scaffold import init_project
from .store import open_project_store
from .validate import Result, format_text

AT = datetime(2026, 11, 19, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
END = datetime(2026, 11, 19, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@dataclass
class Demo:
    directory: Path
    sections: list[tuple[str, str]] = field(default_factory=list)
    console: io.StringIO = field(default_factory=io.StringIO)


def _console_everywhere(root: Path) -> None:
    """The demo delivers to the console: every configured channel becomes a console channel
    (same names, so the rules and the policy are exactly the shipped ones)."""
    path = root / "engine.yaml"
    cfg = yaml.safe_load(path.read_text("utf-8"))
    cfg["channels"] = {name: {"type": "console"} for name in cfg.get("channels", {})}
    path.write_text("# yaml-language-server: $schema=schemas/engine.schema.json\n"
                    + yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), "utf-8")


def run_demo(directory: str | None = None, users: int = 3000, seed: int = 7,
             say: Callable[[str], None] = print) -> Demo:
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="zailai-demo-"))
    init_project(str(root), force=True)
    say(f"1. a project from `engine init` in {root}")
    shipped = load_project(root)
    tests, problems, docs = load_tests(shipped)
    suite = run_tests(shipped, tests)
    say("2. engine test (the playbook's rule tests, with the shipped channels):")
    say("\n".join("   " + line for line in format_tests(suite, docs).splitlines()[-1:]))
    if problems or suite.exit_code:
        say(format_tests(suite, docs))
    _console_everywhere(root)
    gen = generate(root / "data", users=users, days=60, seed=seed, end=END)
    proj = load_project(root)
    for kind, name in (("users", "users.jsonl"), ("events", "events.jsonl")):
        ingest(proj, kind, [str(root / "data" / name)], workers=0)
    say(f"3. generated and ingested {gen.users} users and {gen.events} events")
    loaded = load(root)
    check_loaded(loaded)
    result = Result(loaded.diagnostics, loaded.docs, loaded.files, len(loaded.rules))
    say("4. engine validate: " + format_text(result).splitlines()[-1])
    store = open_project_store(proj)
    demo = Demo(root)
    with store:
        say("5. engine plan at " + AT.isoformat() + " (no side effects)")
        say(plan_text(plan(proj, store, AT)))
        channels = {name: build_channel(cfg, {}, stream=demo.console)
                    for name, cfg in proj.config.channels.items()}
        report = run_once(proj, store, AT, channels)
        say("6. engine run --once at the same time, delivering to the console:")
        say(run_text(report))
    lines = demo.console.getvalue().splitlines()
    for line in lines[:8]:
        say("   " + line)
    if len(lines) > 8:
        say(f"   ... {len(lines) - 8} more console messages")
    say(f"the demo project stays in {root}: try `engine explain winback-7d USER "
        f"--at {AT.isoformat()} --project {root}`")
    return demo
