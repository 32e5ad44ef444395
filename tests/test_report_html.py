"""The HTML report: one self-contained page whose charts a real browser draws.

The unit tests read the page as text (escaping, no external resources, the embedded JSON). The
browser tests open it in Debian's headless Chromium, read back the DOM the page's script built
and count the marks of every chart, and take a screenshot that must not be blank.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from engine.report_html import render_html
from report_sample import empty_report, expected_marks, sample_report

CHARTS = ("daily", "funnel", "conversion", "cohorts", "activity")
INSTALL = "sudo apt-get install -y --no-install-recommends chromium"


@dataclass
class Chart:
    drawn: str | None = None
    error: str | None = None
    marks: Counter[str] = field(default_factory=Counter)
    attrs: list[dict[str, str]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(self.marks.values())


class PageScan(HTMLParser):
    """What a page holds: script elements, the report JSON, every chart's marks and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[dict[str, str]] = []
        self.payload: list[str] = []
        self.charts: dict[str, Chart] = {}
        self.urls: list[str] = []
        self._in_payload = False
        self._chart: Chart | None = None
        self._svg_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.urls += [v for k, v in a.items() if k in ("src", "href", "action", "poster")]
        if tag == "script":
            self.scripts.append(a)
            self._in_payload = a.get("id") == "report-data"
        if tag == "svg" and "data-chart" in a and self._chart is None:
            self._chart = self.charts.setdefault(a["data-chart"], Chart())
            self._chart.drawn, self._chart.error = a.get("data-drawn"), a.get("data-error")
            self._svg_depth = 0
        if self._chart is not None:
            self._svg_depth += tag == "svg"
            classes = a.get("class", "").split()
            if "mark" in classes:
                kind = next(c for c in classes if c != "mark") if len(classes) > 1 else tag
                self._chart.marks[kind] += 1
                self._chart.attrs.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_payload = False
        if tag == "svg" and self._chart is not None:
            self._svg_depth -= 1
            if self._svg_depth == 0:
                self._chart = None

    def handle_data(self, data: str) -> None:
        if self._in_payload:
            self.payload.append(data)
        if self._chart is not None and data.strip():
            self._chart.text.append(data.strip())


def scan(html: str) -> PageScan:
    page = PageScan()
    page.feed(html)
    page.close()
    return page


def named(data: dict[str, Any], name: str) -> dict[str, Any]:
    data["rules"][0]["name"] = name
    return data


# ---- the page as text ------------------------------------------------------------------------

def test_the_page_is_one_html5_document_with_every_chart() -> None:
    html = render_html(sample_report())
    assert html.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in html
    page = scan(html)
    assert set(page.charts) == set(CHARTS)
    assert all(c.drawn is None for c in page.charts.values())  # drawn by the browser, not here


def test_the_page_needs_no_network() -> None:
    html = render_html(sample_report())
    assert "http://" not in html and "https://" not in html, "an external reference"
    page = scan(html)
    assert not page.urls, page.urls  # no src=, no href=: nothing to fetch
    assert [s.get("src") for s in page.scripts] == [None, None]  # both scripts inline
    assert "<link" not in html and "@import" not in html and "@font-face" not in html
    assert html.count("url(") == html.count("url(#")  # only references inside the page


def test_the_embedded_json_round_trips() -> None:
    data = sample_report()
    page = scan(render_html(data))
    assert json.loads("".join(page.payload)) == data


@pytest.mark.parametrize("name", [
    "</script><script>alert(1)</script>", "<!-- 注释 <script>", "a\u2028b\u2029c & <b>粗</b>",
    "</SCRIPT >",
], ids=["close-script", "comment", "separators", "upper-case"])
def test_hostile_text_cannot_leave_the_json(name: str) -> None:
    data = named(sample_report(), name)
    html = render_html(data)
    page = scan(html)
    assert [s.get("type") for s in page.scripts] == ["application/json", None]
    assert json.loads("".join(page.payload)) == data
    payload = html.split('id="report-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in payload and "\u2028" not in payload


def test_operator_text_is_escaped_in_the_tables() -> None:
    name = '<script>alert("再来")</script>'
    html = render_html(named(sample_report(), name))
    assert len(scan(html).scripts) == 2  # ours only
    assert "&lt;script&gt;alert(&#34;再来&#34;)&lt;/script&gt;" in html


def test_the_tables_carry_the_figures() -> None:
    data = sample_report()
    html = render_html(data)
    for r in data["rules"]:
        assert r["name"] in html and r["id"] in html
    assert "no goal" in html  # checkin-streak-7 has none
    ab = data["rules"][0]
    assert ab["uplift"][1]["significant"] and ab["winner"] == "urgent"
    assert "+8.2 pp" in html and "[+2.5 pp, +12.2 pp]" in html and "0.007" in html
    reasons = ("capped_global", "capped_rule", "holdout", "no_consent", "opted_out")
    positions = [html.index(f"<code>{r}</code>") for r in reasons]
    assert positions == sorted(positions)  # largest first: 250, 160, 148, 62, 20
    assert f"{data['totals']['matched']:,}" == "8,078" and "8,078" in html  # separators


def test_a_report_without_data_says_so_in_the_tables() -> None:
    html = render_html(empty_report())
    assert "No suppressions in this period." in html
    assert "No rule with a holdout has conversions to compare yet." in html


def test_a_sparse_dict_still_renders() -> None:
    page = scan(render_html({"at": "2026-11-20T10:00:00+08:00"}))
    assert set(page.charts) == set(CHARTS)


# ---- the page in a real browser -------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run should have installed it "
                        f"({INSTALL})")
        pytest.skip(f"Debian's chromium is not installed; install it with `{INSTALL}`")
    return path


def browse(chromium: str, html: str, where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    page = where / "report.html"
    page.write_text(html, "utf-8")
    cmd = [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
           f"--user-data-dir={where / 'profile'}", "--virtual-time-budget=5000", *args,
           page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def dom(chromium: str, html: str, where: Path) -> PageScan:
    return scan(browse(chromium, html, where, "--window-size=1280,2400", "--dump-dom").stdout)


@pytest.fixture(scope="module")
def drawn(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> PageScan:
    return dom(chromium, render_html(sample_report()), tmp_path_factory.mktemp("sample"))


@pytest.mark.parametrize("name", CHARTS)
def test_every_chart_is_drawn_with_one_mark_per_datum(drawn: PageScan, name: str) -> None:
    chart = drawn.charts[name]
    expected = expected_marks(sample_report())[name]
    assert chart.error is None, chart.error
    assert chart.drawn == str(expected) and expected > 0
    assert chart.count == expected, chart.marks


def test_the_daily_chart_has_one_bar_group_per_day(drawn: PageScan) -> None:
    data = sample_report()
    chart = drawn.charts["daily"]
    assert chart.marks == Counter({"bar-group": len(data["daily"])})
    assert [a["data-date"] for a in chart.attrs] == [d["date"] for d in data["daily"]]


def test_the_funnel_draws_each_stage_a_rule_has(drawn: PageScan) -> None:
    stages = Counter(a["data-stage"] for a in drawn.charts["funnel"].attrs)
    active = [r for r in sample_report()["rules"] if r["matched"] > 0]
    assert stages == {"matched": len(active), "acted": len(active), "sent": len(active),
                      "conversions": sum(r["conversions"] is not None for r in active)}


def test_the_conversion_chart_has_an_interval_per_group(drawn: PageScan) -> None:
    chart = drawn.charts["conversion"]
    groups = [g["name"] for r in sample_report()["rules"] if r["goal"] for g in r["groups"]
              if g["users"]]
    assert [a["data-group"] for a in chart.attrs] == groups
    assert "no users in this group" in chart.text  # the empty holdout of new-user-first-order
    assert "★ urgent" in chart.text  # the winner is marked


def test_the_heatmap_has_a_cell_per_cohort_and_day(drawn: PageScan) -> None:
    cohorts = sample_report()["cohorts"]
    chart = drawn.charts["cohorts"]
    cells = {(a["data-week"], a["data-day"]): "is-empty" in a["class"] for a in chart.attrs}
    assert cells == {(c["week"], d): c[d] is None for c in cohorts for d in ("d1", "d7", "d30")}
    assert sum(cells.values()) == 8  # d30 of W43..W47, d7 of W46..W47, d1 of W47: hatched
    assert "44.1%" in chart.text and "次日 d1" in chart.text


def test_a_report_without_data_draws_the_messages(chromium: str, tmp_path: Path) -> None:
    page = dom(chromium, render_html(empty_report()), tmp_path)
    for name in CHARTS:
        chart = page.charts[name]
        assert chart.error is None and chart.drawn == "0" and chart.count == 0, name
        assert any(t.startswith("No ") for t in chart.text), (name, chart.text)


def test_a_broken_datum_shows_in_its_chart_not_as_a_blank_page(chromium: str,
                                                                 tmp_path: Path) -> None:
    data = sample_report()
    data["cohorts"] = "not a list"  # a bad report must not take the other charts down
    page = dom(chromium, render_html(data), tmp_path)
    assert page.charts["cohorts"].error and page.charts["cohorts"].drawn == "0"
    assert page.charts["daily"].drawn == str(len(data["daily"]))


def png_pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the unfiltered RGB(A) rows of an 8-bit, non-interlaced PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (size,), kind = struct.unpack(">I", png[pos:pos + 4]), png[pos + 4:pos + 8]
        chunk = png[pos + 8:pos + 8 + size]
        header = chunk if kind == b"IHDR" else header
        idat += chunk if kind == b"IDAT" else b""
        pos += size + 12
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp + 1
    rows, prev = [], bytearray(width * bpp)
    for y in range(height):
        kind, line = raw[y * stride], bytearray(raw[y * stride + 1:(y + 1) * stride])
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc
                                      else corner)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def test_a_screenshot_of_the_page_is_not_blank(chromium: str, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    browse(chromium, render_html(sample_report()), tmp_path, "--window-size=1280,900",
           f"--screenshot={shot}")
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 900)
    bpp = len(rows[0]) // width
    pixels = Counter(row[x:x + 3] for row in rows[::3] for x in range(0, len(row), bpp * 3))
    background, most = pixels.most_common(1)[0]
    assert most < 0.9 * sum(pixels.values()), "the page is one colour"
    assert len(pixels) > 50  # text, cards and charts, not a flat fill
    assert pixels[bytes.fromhex("2f7d5b")] > 200  # the daily chart's green "sent" bars
