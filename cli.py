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
