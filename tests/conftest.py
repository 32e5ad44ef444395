"""Shared fixtures: a fresh example project on disk, the example data model, the CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

import pytest

from engine.config import DataModel
from engine.errors import Diagnostic
from engine.lang.checker import Scope
from engine.project import load
from engine.scaffold import init_project

REPO = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")


def show(d: Diagnostic) -> str:
    """A diagnostic as the expectation lines in tests/golden write it."""
    return f"{d.pos}: {d.severity.value}[{d.code}]" + (" accepted" if d.accepted else "")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the example project (what `engine init` writes), as the current directory,
    so diagnostics carry project-relative paths such as `rules/x.yaml`."""
    root = tmp_path / "project"
    init_project(str(root))
    monkeypatch.chdir(root)
    return root


@pytest.fixture(scope="session")
def example_model() -> DataModel:
    model: DataModel = load(str(REPO)).project.datamodel
    assert "order_paid" in model.events and "tier" in model.user  # the model the tests assume
    return model


@pytest.fixture(scope="session")
def scope(example_model: DataModel) -> Scope:
    """Names as an audience in a scheduled rule sees them."""
    return Scope(example_model, SHANGHAI)


@pytest.fixture(scope="session")
def event_scope(example_model: DataModel) -> Scope:
    """Names as an audience in a rule triggered by `share` sees them (`event.target`)."""
    return Scope(example_model, SHANGHAI, trigger_event="share")


Runner = Callable[..., subprocess.CompletedProcess[str]]


def engine_command() -> list[str]:
    """The installed `engine` console script next to this interpreter, else the same entry point."""
    script = Path(sys.executable).parent / ("engine.exe" if os.name == "nt" else "engine")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import cli; cli.main()"]


def run(*args: str, cwd: Path | str) -> subprocess.CompletedProcess[str]:
    """Run the real `engine` command in a subprocess, as an operator or CI would."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
    env.pop("ENGINE_DEBUG", None)
    env.pop("ENGINE_PROJECT", None)
    return subprocess.run([*engine_command(), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, encoding="utf-8", timeout=60, check=False)


@pytest.fixture(scope="session")
def run_engine() -> Runner:
    """run_engine("validate", "--format", "json", cwd=project)"""
    return run


# -- the fake WeChat server (tests/fake_wechat.py) -------------------------------------------------
from typing import Iterator  # noqa: E402  (kept with the fixture that uses it)

from fake_wechat import FakeWeChat, load_templates, merchant_key  # noqa: E402


@pytest.fixture
def fake_wechat() -> Iterator[FakeWeChat]:
    """A running fake WeChat / WeCom / SMS / webhook server on 127.0.0.1 (a random port) that
    knows the example project's templates and trusts `merchant_key()` for coupon signatures;
    `fake.env()` and `fake.options(kind)` configure channels against it. Stopped after the test."""
    with FakeWeChat(templates=load_templates(REPO / "templates.yaml")) as fake:
        fake.trust_merchant_key(merchant_key()[1])
        yield fake
