"""The `engine` command: a thin click layer over the `engine` library.

Each command parses its flags, calls one library function and renders the result. One error
boundary (`main`) maps errors to exit codes: 0 fine, 1 the input had problems, 2 could not
run. No Python traceback reaches the user (set ENGINE_DEBUG=1 to see one).
"""
from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import Any, Callable

import click

from engine.errors import EngineError, InputProblems

F = Callable[..., Any]


def project_option(f: F) -> F:
    return click.option("--project", "project", type=click.Path(file_okay=False),
                        default=None, envvar="ENGINE_PROJECT",
                        help="Project directory holding engine.yaml (default: current directory).")(f)


def db_option(f: F) -> F:
    return click.option("--db", "db", default=None, envvar="ENGINE_DB",
                        help="Database path or URL (default: engine.yaml `database:`, "
                             "else engine.db in the project).")(f)


def at_option(f: F) -> F:
    return click.option("--at", "at", default=None, metavar="TIMESTAMP",
                        help="Evaluate as of this time (ISO 8601; without an offset it is read "
                             "in the project timezone). Default: now.")(f)


def format_option(*choices: str) -> Callable[[F], F]:
    def deco(f: F) -> F:
        return click.option("--format", "fmt", type=click.Choice(choices), default=choices[0],
                            show_default=True, help="Output format.")(f)
    return deco


def now() -> datetime:
    """The only place the CLI reads the clock; the library always takes time as an argument."""
    return datetime.now().astimezone()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="zailai", prog_name="engine")
def cli() -> None:
    """Zailai (再来): retention playbooks as YAML rules for WeChat mini-programs.

    Start with `engine init DIR`, then `engine validate` in that directory.
    """


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Write into a directory that is not empty.")
def init(directory: str, force: bool) -> None:
    """Scaffold a working project with the example playbook in DIRECTORY."""
    from engine.scaffold import init_project

    written = init_project(directory, force=force)
    click.echo(f"wrote {len(written)} files to {directory}")
    click.echo(f"next: cd {directory} && engine validate")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@project_option
@format_option("text", "json", "github")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def validate(paths: tuple[str, ...], project: str | None, fmt: str, strict: bool) -> None:
    """Check rule files and project config: YAML, schema, conditions, references, compliance.

    PATHS are rule files or directories inside the project (default: the whole project), or a
    project directory. Exit 0 clean (warnings allowed), 1 errors, 2 could not run.
    """
    from engine import validate as v

    result = v.validate(project, paths)
    if fmt == "json":
        click.echo(v.format_json(result, strict))
    elif fmt == "github":
        out = v.format_github(result, strict)
        if out:
            click.echo(out)
    else:
        click.echo(v.format_text(result, strict, color=sys.stdout.isatty()
                                 and "NO_COLOR" not in os.environ))
    sys.exit(1 if result.failed(strict) else 0)


@cli.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
@project_option
@click.option("--run", "pattern", default=None, metavar="REGEX",
              help="Run only the tests whose name or path matches REGEX.")
@click.option("--junit", "junit", default=None, type=click.Path(dir_okay=False),
              metavar="FILE", help="Also write the results as JUnit XML to FILE.")
@format_option("text", "json")
@click.option("-v", "--verbose", is_flag=True, help="Show passing tests' details too.")
def test_cmd(paths: tuple[str, ...], project: str | None, pattern: str | None,
             junit: str | None, fmt: str, verbose: bool) -> None:
    """Run rule tests: given users and events, at T, expect fires, actions and reasons.

    PATHS are test files or directories (default: the project's tests/*.yaml). Each test runs
    in its own fresh database through the real planner. Exit 0 when every test passed, 1 when
    one failed or a test file has problems (or there were no tests), 2 could not run.
    """
    import re

    from engine.project import load_project
    from engine.ruletests import files, output, runner
    from engine.validate import Result, format_text

    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise click.BadParameter(f"not a regular expression: {exc}", param_hint="--run")
    proj = load_project(project)
    tests, problems, docs = files.load_tests(proj, paths)
    if problems:
        click.echo(format_text(Result(problems, docs)), err=True)
    suite = runner.run_tests(proj, tests, pattern)
    if junit:
        with open(junit, "w", encoding="utf-8") as out:
            out.write(output.junit_xml(suite))
    if fmt == "json":
        click.echo(_json({**suite.as_json(), "problems": len(problems)}))
    else:
        click.echo(output.format_text(suite, docs, verbose))
    if not suite.results and not problems:
        where = "matching --run" if pattern else "(write tests/*.yaml: see docs/testing-rules.md)"
        click.echo(f"no rule tests found {where}", err=True)
    sys.exit(1 if problems or suite.exit_code else 0)


@cli.command()
@click.argument("kind", type=click.Choice(["users", "events"]))
@click.argument("files", nargs=-1, required=True)
@project_option
@db_option
@click.option("--rejects", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write rejected rows here (JSONL: file, line, reason, row).")
@format_option("text", "json")
def ingest(kind: str, files: tuple[str, ...], project: str | None, db: str | None,
           rejects: str | None, fmt: str) -> None:
    """Load users or events from JSONL or CSV FILES (- = JSONL on standard input).

    Every row is checked against datamodel.yaml; bad rows are counted, shown and written to
    --rejects, good rows are kept. Exit 0 all rows good, 1 some rejected, 2 could not run.
    """
    from engine.dataproject import load_data_project
    from engine.ingest import ingest as run

    proj = load_data_project(project)
    size = sum(os.path.getsize(f) for f in files if f != "-" and os.path.isfile(f))
    show = sys.stderr.isatty() and size > 0 and "-" not in files
    with click.progressbar(length=size, file=sys.stderr, label=f"ingest {kind}",
                           show_eta=True) if show else _NoBar() as bar:
        result = run(proj, kind, list(files), db=db, rejects=rejects,
                     stdin=click.get_binary_stream("stdin"), progress=bar.update)
    for line in result.reject_lines():
        click.echo(line, err=True)
    click.echo(_json(result.as_json()) if fmt == "json" else result.format_text())
    sys.exit(result.exit_code)


@cli.command()
@project_option
@db_option
@at_option
@format_option("text", "json")
def rfm(project: str | None, db: str | None, at: str | None, fmt: str) -> None:
    """RFM segment table as of --at: users per segment, score distributions, the means.

    Counts only purchase events (engine.yaml `purchase_event`) strictly before --at.
    """
    from engine import rfm as rfm_lib
    from engine.dataproject import load_data_project
    from engine.store import open_project_store
    from engine.timeutil import parse_timestamp

    proj = load_data_project(project)
    when = parse_timestamp(at, proj.config.tz) if at else now().astimezone(proj.config.tz)
    with open_project_store(proj, db, create=False) as store:
        report = rfm_lib.compute(store, when, proj.config.purchase_event)
    click.echo(_json(report.as_json()) if fmt == "json" else report.format_text())


@cli.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--users", "n_users", type=int, default=1000, show_default=True,
              help="Number of users.")
@click.option("--days", type=int, default=90, show_default=True,
              help="Days of history before --end.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed.")
@click.option("--end", default=None, metavar="TIMESTAMP",
              help="End of the history (default: a fixed 2026-11-20T00:00:00+08:00, so the "
                   "same seed gives the same bytes).")
def generate(out_dir: str, n_users: int, days: int, seed: int, end: str | None) -> None:
    """Write realistic synthetic users.jsonl, events.jsonl and datamodel.yaml to OUT_DIR."""
    from zoneinfo import ZoneInfo

    from engine.generate import DEFAULT_END, generate as run
    from engine.timeutil import parse_timestamp

    stop = parse_timestamp(end or DEFAULT_END, ZoneInfo("Asia/Shanghai"))
    result = run(out_dir, users=n_users, days=days, seed=seed, end=stop)
    click.echo(f"wrote {result.users} users and {result.events} events to {out_dir}")
    click.echo("  " + ", ".join(f"{t} {c}" for t, c in result.events_by_type))
    click.echo(f"next: engine ingest users {out_dir}/users.jsonl && "
               f"engine ingest events {out_dir}/events.jsonl")


def _open(project: str | None, db: str | None, at: str | None) -> tuple[Any, Any, datetime]:
    """A valid project, its database and the evaluation time (--at, default now)."""
    from engine.project import load_project
    from engine.store import open_project_store
    from engine.timeutil import parse_timestamp

    proj = load_project(project)
    when = parse_timestamp(at, proj.config.tz) if at else now().astimezone(proj.config.tz)
    return proj, open_project_store(proj, db, create=False), when


@cli.command()
@click.argument("rules", nargs=-1)
@project_option
@db_option
@at_option
@format_option("text", "json")
@click.option("--users", "show_users", is_flag=True, help="List the matched and fired user ids.")
def plan(rules: tuple[str, ...], project: str | None, db: str | None, at: str | None, fmt: str,
         show_users: bool) -> None:
    """Who each rule matches at --at and what would happen to them; no side effects.

    RULES are rule ids (default: every enabled rule), evaluated as if due at --at.
    """
    from engine.plan import plan as run_plan
    from engine.report_text import plan_text

    proj, store, when = _open(project, db, at)
    with store:
        result = run_plan(proj, store, when, rules)
    click.echo(_json(result.as_json(show_users)) if fmt == "json"
               else plan_text(result, show_users))


@cli.command()
@click.argument("rule")
@click.argument("user")
@project_option
@db_option
@at_option
@format_option("text", "json")
def explain(rule: str, user: str, project: str | None, db: str | None, at: str | None,
            fmt: str) -> None:
    """Every part of RULE evaluated for USER at --at: sub-conditions, trigger, decision."""
    from engine.explain import explain as run_explain

    proj, store, when = _open(project, db, at)
    with store:
        result = run_explain(proj, store, rule, user, when)
    click.echo(_json(result.as_json()) if fmt == "json" else result.format_text())


@cli.command()
@click.option("--once", is_flag=True, help="Run one tick and exit (the daemon runs them for "
              "months: `engine daemon`).")
@project_option
@db_option
@at_option
@format_option("text", "json")
def run(once: bool, project: str | None, db: str | None, at: str | None, fmt: str) -> None:
    """One tick: evaluate the due rules, commit fires and the outbox, then deliver."""
    from engine.errors import CannotRun
    from engine.report_text import run_text
    from engine.run import build_channels, run_once

    if not once:
        raise CannotRun("`engine run` needs --once", hint="for continuous running use "
                        "`engine daemon`")
    from engine.lease import refuse_if_running

    proj, store, when = _open(project, db, at)
    channels, missing = build_channels(proj)
    with store:
        refuse_if_running(store, now())
        report = run_once(proj, store, when, channels, proj.git_commit(), missing)
    click.echo(_json(report.as_json()) if fmt == "json" else run_text(report))


@cli.command()
@click.argument("rules", nargs=-1)
@click.option("--from", "start", required=True, metavar="TIMESTAMP",
              help="Start of the replay (exclusive; ISO 8601, project timezone by default).")
@click.option("--to", "end", required=True, metavar="TIMESTAMP",
              help="End of the replay (inclusive).")
@click.option("--step", default="1h", show_default=True, metavar="DURATION",
              help="How often event, date and coupon_expiring rules tick (scheduled rules "
                   "tick at each of their own slots).")
@project_option
@db_option
@format_option("text", "json")
def backtest(rules: tuple[str, ...], start: str, end: str, step: str, project: str | None,
             db: str | None, fmt: str) -> None:
    """Replay history through RULES (default: every enabled rule) tick by tick, with caps and
    state, sending nothing: fires, suppressions and cap hits per day.

    The database is only read: the engine's tables live in a scratch file and start empty at
    --from. Exit 0 done, 1 bad flags or rules, 2 could not run (e.g. no database).
    """
    from engine import backtest as bt
    from engine.project import load_project
    from engine.store import resolve_db_path

    proj = load_project(project)
    span = bt.parse_span(proj, start, end, step)
    chosen = bt.choose_rules(proj, rules)
    ticks = bt.timeline(proj, chosen, span)
    path = resolve_db_path(proj.root, proj.config.database, db)
    show = sys.stderr.isatty() and len(ticks) > 1
    with click.progressbar(length=len(ticks), file=sys.stderr, label="backtest",
                           show_eta=True) if show else _NoBar() as bar:
        report = bt.backtest(proj, path, chosen, span, progress=bar.update, ticks=ticks)
    click.echo(_json(report.as_json()) if fmt == "json" else report.format_text())


@cli.command()
@project_option
@db_option
@at_option
@click.option("--window", default="7d", show_default=True, metavar="DURATION",
              help="Backtest this span before --at to find starving rules (0: skip it).")
@click.option("--step", default="1h", show_default=True, metavar="DURATION",
              help="Tick interval of that backtest for event, date and coupon rules.")
@format_option("text", "json")
def pressure(project: str | None, db: str | None, at: str | None, window: str, step: str,
             fmt: str) -> None:
    """Across all enabled rules: the worst-case marketing messages per user per day and week
    before caps, which caps bind, which rules starve under them, which rules can never fire.

    Reads the database only. Findings carry stable codes (docs/backtest.md).
    """
    from engine.backtest import parse_flag_duration
    from engine.pressure import pressure as run_pressure
    from engine.project import load_project
    from engine.store import resolve_db_path
    from engine.timeutil import parse_timestamp

    proj = load_project(project)
    when = parse_timestamp(at, proj.config.tz) if at else now().astimezone(proj.config.tz)
    span = None if window.strip() == "0" else parse_flag_duration("--window", window)
    tick = parse_flag_duration("--step", step)
    path = resolve_db_path(proj.root, proj.config.database, db)
    bar = _LateBar("pressure backtest", show=sys.stderr.isatty())
    try:
        report = run_pressure(proj, path, when, span, tick, progress=bar.update,
                              on_ticks=bar.start)
    finally:
        bar.close()
    click.echo(_json(report.as_json()) if fmt == "json" else report.format_text())


@cli.command()
@project_option
@db_option
@at_option
@format_option("text", "json")
def deliver(project: str | None, db: str | None, at: str | None, fmt: str) -> None:
    """Process the outbox once: items whose time has come (deferred, retrying) at --at."""
    from engine.outbox import deliver as run_deliver
    from engine.run import build_channels

    from engine.lease import refuse_if_running

    proj, store, when = _open(project, db, at)
    channels, missing = build_channels(proj)
    with store:
        refuse_if_running(store, now())
        report = run_deliver(proj, store, channels, when)
    out = {"at": when.isoformat(), "delivery": report.as_json(), "unavailable_channels": missing}
    click.echo(_json(out) if fmt == "json" else
               "delivered: " + (", ".join(f"{k} {v}" for k, v in out["delivery"].items()) or
                                "nothing was due") +
               "".join(f"\nwaiting: channel {k} unavailable ({v})" for k, v in missing.items()))


@cli.command()
@project_option
@db_option
@click.option("--http", "http", default=None, metavar="HOST:PORT",
              help="Serve POST /events, GET /healthz and GET /metrics here (e.g. "
                   "127.0.0.1:8700; a bare port binds to loopback).")
@click.option("--event-interval", default="2s", show_default=True, metavar="DURATION",
              help="How often event, date and coupon_expiring rules tick.")
@click.option("--event-lag", default="2s", show_default=True, metavar="DURATION",
              help="Event ticks evaluate at now minus this, so events stored up to this late "
                   "still trigger rules.")
@click.option("--deliver-interval", default="2s", show_default=True, metavar="DURATION",
              help="How often the outbox is processed (also right after a tick queues items).")
@click.option("--reload-interval", default="2s", show_default=True, metavar="DURATION",
              help="How often the project files are checked for changes (0: only on SIGHUP).")
@click.option("--lease-timeout", default="30s", show_default=True, metavar="DURATION",
              help="A lease without a heartbeat this long is taken over by a new daemon.")
@click.option("--shutdown-grace", default="10s", show_default=True, metavar="DURATION",
              help="On SIGTERM/SIGINT, how long in-flight work may take before it is abandoned.")
@click.option("--catch-up-grace", default="12h", show_default=True, metavar="DURATION",
              help="After downtime, a missed slot older than this is skipped, not caught up.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="Least severe JSON log lines to write.")
def daemon(project: str | None, db: str | None, http: str | None, event_interval: str,
           event_lag: str, deliver_interval: str, reload_interval: str, lease_timeout: str,
           shutdown_grace: str, catch_up_grace: str, log_level: str) -> None:
    """Run the rules continuously: schedules, events, delivery, reloads (see docs/daemon.md).

    Logs are JSON lines on standard error. SIGHUP reloads the rules, SIGTERM/SIGINT stop.
    Exit 0 after a clean stop, 1 the project has errors, 2 could not run (e.g. another daemon
    holds the database).
    """
    from engine.daemon import Daemon, DaemonOptions

    options = DaemonOptions.parse(http, event_interval, event_lag, deliver_interval,
                                  reload_interval, lease_timeout, shutdown_grace,
                                  catch_up_grace, log_level=log_level)
    sys.exit(Daemon(project, db, options).run())


@cli.command()
@project_option
@db_option
@at_option
@click.option("--since", "since", default="30d", show_default=True, metavar="DURATION",
              help="The window: fires ticked in [--at minus this, --at).")
@format_option("text", "json")
@click.option("--html", "html", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also write the report as one self-contained HTML page with charts.")
def report(project: str | None, db: str | None, at: str | None, since: str, fmt: str,
           html: str | None) -> None:
    """Per rule: matched, fired, sent, suppressed by reason, failed, conversions and uplift
    against the holdout; DAU/WAU/MAU and retention cohorts (see docs/report.md)."""
    from engine.report import build_report, parse_since
    from engine.report_text import report_text

    window = parse_since(since)
    proj, store, when = _open(project, db, at)
    with store:
        result = build_report(proj, store, when, window)
    data = result.as_json()
    if html:
        from engine.errors import CannotRun
        from engine.report_html import render_html

        page = render_html(data)
        try:
            with open(html, "w", encoding="utf-8") as f:
                f.write(page)
        except OSError as exc:
            raise CannotRun(f"cannot write {html}: {exc.strerror}") from None
    click.echo(_json(data) if fmt == "json" else report_text(result))
    if html:
        click.echo(f"wrote {html}", err=fmt == "json")


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Where to build the demo project (default: a new temporary directory).")
@click.option("--users", "n_users", type=int, default=3000, show_default=True,
              help="Generated users.")
def demo(directory: str | None, n_users: int) -> None:
    """One command, end to end: init, generated data, validate, plan, a run delivering to the
    console."""
    from engine.demo import run_demo

    run_demo(directory, users=n_users, say=click.echo)


class _NoBar:
    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


class _LateBar:
    """A progress bar on stderr whose length is known only once the work has started."""

    def __init__(self, label: str, show: bool) -> None:
        self.label, self.show, self.bar = label, show, None

    def start(self, n: int) -> None:
        if self.show and n > 1:
            self.bar = click.progressbar(length=n, file=sys.stderr, label=self.label,
                                         show_eta=True).__enter__()

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _json(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, indent=2)


def main(argv: list[str] | None = None) -> None:
    """Entry point with the single error boundary."""
    try:
        cli.main(args=argv, prog_name="engine", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except InputProblems as exc:
        for d in exc.diagnostics:
            click.echo(f"{d.pos}: {d.severity.value}[{d.code}]: {d.message}", err=True)
        click.echo("run `engine validate` for details", err=True)
        sys.exit(exc.exit_code)
    except EngineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the boundary: never show a traceback
        if os.environ.get("ENGINE_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (set ENGINE_DEBUG=1 for "
                   "details, and please report it)", err=True)
        sys.exit(2)
    sys.exit(0)


if __name__ == "__main__":
    main()
