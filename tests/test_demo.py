"""`engine demo`: the README's first command, end to end as a subprocess."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end_and_delivers_to_the_console(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "demo", "--dir",
                          str(tmp_path / "demo"), "--users", "1500"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Traceback" not in out.stderr
    assert "engine validate: " in text and "0 error(s)" in text
    assert "engine plan at 2026-11-19T10:00:00+08:00" in text
    assert "winback-7d" in text
    sent = [line for line in text.splitlines() if line.startswith("delivered: sent ")]
    assert sent and int(sent[0].split()[2]) > 0
    # the console printed real rendered messages (the coupon's name reached the template)
    assert "thing1=回归专享10元券" in text
    assert (tmp_path / "demo" / "engine.db").is_file()
