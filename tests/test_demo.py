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
    tests = [line for line in text.splitlines() if " tests: " in line]
    assert tests and " 0 failed" in tests[0] and " 0 passed" not in tests[0]
    assert "engine backtest --from 2026-11-05T10:00:00+08:00 --to 2026-11-19T10:00:00+08:00" in text
    assert "15 day(s)" in text and "nothing sent" in text
    assert "the playbook live over the same two weeks" in text
    assert "engine plan at 2026-11-19T10:00:00+08:00" in text
    # the report: per-rule figures, a goal with its interval, activity and cohorts, the HTML
    assert "engine report --since 14d:" in text
    assert "goal of winback-7d: order_paid within 7d" in text
    assert "activity at " in text and "retention by signup week" in text
    html = tmp_path / "demo" / "report.html"
    assert f"the HTML report: {html}" in text
    assert 'id="report-data"' in html.read_text("utf-8")
    assert "winback-7d" in text
    sent = [line.strip() for line in text.splitlines()
            if line.strip().startswith("delivered: sent ")]
    assert sent and int(sent[0].split()[2]) > 0
    # the console printed real rendered messages (the coupon's name reached the template)
    assert "thing1=回归专享10元券" in text
    assert (tmp_path / "demo" / "engine.db").is_file()
