"""`engine demo`: the whole path on a fresh machine, in a temporary project, in about a minute.

1. `engine init` a project into a temporary directory (the example playbook and its tests);
2. `engine test`: the playbook's rule tests, with the shipped channel configuration;
3. generate realistic data (a few thousand users, 60 days) and ingest it;
4. `engine validate`;
5. `engine backtest` of the whole playbook over the last two weeks (nothing sent);
6. the playbook "in production" over those two weeks: a tick every hour, as the daemon would
   run it, every channel being the console (printed to a buffer instead of sent);
7. `engine plan` at a fixed time, then one `engine run --once` at that time, whose messages are
   shown;
8. `engine report` over the two weeks (text), and the HTML report written into the project.
"""
from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import yaml

from .backtest import BacktestReport, backtest, choose_rules, parse_span
from .channels import build_channel
from .checks import check_loaded
from .generate import generate
from .ingest import ingest
from .plan import plan
from .project import Project, load, load_project
from .report import build_report
from .report_html import render_html
from .report_text import plan_text, report_text, run_text
from .ruletests.files import load_tests
from .ruletests.output import format_text as format_tests
from .ruletests.runner import run_tests
from .run import run_once
from .scaffold import init_project
from .store import Store, open_project_store, resolve_db_path
from .validate import Result, format_text

AT = datetime(2026, 11, 19, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
END = datetime(2026, 11, 19, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
HISTORY = timedelta(days=14)


@dataclass
class Demo:
    directory: Path
    html: Path | None = None
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


def _indent(text: str, prefix: str = "   ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _backtest_summary(report: BacktestReport) -> str:
    """One line a day, then the whole span per rule."""
    data = report.as_json()
    lines = [f"{len(data['days'])} day(s), {report.ticks} tick(s), nothing sent"]
    for day in data["days"]:
        t = day["total"]
        lines.append(f"  {day['date']}  matched {t['matched']:>5}  fire {t['fire']:>5}  "
                     f"deferred {t['deferred']:>4}  cap hits {t['cap_hits']:>5}")
    width = max(len(r["id"]) for r in data["rules"])
    lines.append(f"  {'rule':<{width}}  {'matched':>7}  {'fire':>6}  {'cap hits':>8}")
    for r in data["rules"]:
        if r["matched"]:
            lines.append(f"  {r['id']:<{width}}  {r['matched']:>7}  {r['fire']:>6}  "
                         f"{r['cap_hits']:>8}")
    return "\n".join(lines)


def _live(proj: Project, store: Store, channels: dict[str, Any], start: datetime,
          end: datetime) -> tuple[int, int]:
    """Hourly ticks in [start, end), as the daemon would run them: (fires, sent items)."""
    fires = sent = 0
    t = start
    while t < end:
        report = run_once(proj, store, t, channels)
        fires += report.commit.new_fires if report.commit else 0
        sent += report.delivery.as_json().get("sent", 0)
        t += timedelta(hours=1)
    return fires, sent


def run_demo(directory: str | None = None, users: int = 3000, seed: int = 7,
             say: Callable[[str], None] = print) -> Demo:
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="zailai-demo-"))
    init_project(str(root), force=True)
    demo = Demo(root)
    say(f"1. a project from `engine init` in {root}")

    shipped = load_project(root)
    tests, problems, docs = load_tests(shipped)
    suite = run_tests(shipped, tests)
    say("2. engine test: the playbook's rule tests")
    say(_indent(format_tests(suite, docs).splitlines()[-1]))
    if problems or suite.exit_code:
        say(format_tests(suite, docs))

    _console_everywhere(root)
    gen = generate(root / "data", users=users, days=60, seed=seed, end=END)
    proj = load_project(root)
    for kind, name in (("users", "users.jsonl"), ("events", "events.jsonl")):
        ingest(proj, kind, [str(root / "data" / name)], workers=0)
    say(f"3. generated and ingested {gen.users} users and {gen.events} events (60 days)")

    loaded = load(root)
    check_loaded(loaded)
    result = Result(loaded.diagnostics, loaded.docs, loaded.files, len(loaded.rules))
    say("4. engine validate: " + format_text(result).splitlines()[-1])

    start = AT - HISTORY
    span = parse_span(proj, start.isoformat(), AT.isoformat(), "1h")
    db_path = resolve_db_path(proj.root, proj.config.database)
    bt = backtest(proj, db_path, choose_rules(proj, []), span)
    say(f"5. engine backtest --from {start.isoformat()} --to {AT.isoformat()}:")
    say(_indent(_backtest_summary(bt)))

    with open_project_store(proj) as store:
        channels = {name: build_channel(cfg, {}, stream=demo.console)
                    for name, cfg in proj.config.channels.items()}
        fires, sent = _live(proj, store, channels, start, AT)
        say(f"6. the playbook live over the same two weeks (a tick an hour, delivering to the "
            f"console): {fires} fires, {sent} items sent")
        demo.console.seek(0)
        demo.console.truncate()

        say("7. engine plan at " + AT.isoformat() + " (no side effects)")
        say(_indent(plan_text(plan(proj, store, AT))))
        report = run_once(proj, store, AT, channels)
        say("   engine run --once at the same time, delivering to the console:")
        say(_indent(run_text(report)))
        lines = demo.console.getvalue().splitlines()
        for line in lines[:6]:
            say("     " + line)
        if len(lines) > 6:
            say(f"     ... {len(lines) - 6} more console messages")

        rep = build_report(proj, store, AT + timedelta(minutes=1), HISTORY)
        say(f"8. engine report --since {HISTORY.days}d:")
        say(_indent(report_text(rep)))
        demo.html = root / "report.html"
        demo.html.write_text(render_html(rep.as_json()), "utf-8")
        say(f"   the HTML report: {demo.html}")
    say(f"the demo project stays in {root}: try `engine explain winback-7d USER "
        f"--at {AT.isoformat()} --project {root}`")
    return demo
