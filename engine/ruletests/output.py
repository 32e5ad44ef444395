"""What `engine test` prints: text with diffs, and JUnit XML."""
from __future__ import annotations

from typing import Mapping
from xml.etree import ElementTree as ET

from ..errors import Position
from ..yaml12 import Document
from .files import Suite

# -- output -----------------------------------------------------------------------------------

def format_text(suite: Suite, docs: Mapping[str, Document] | None = None,
                verbose: bool = False) -> str:
    """PASS/FAIL per test; for a failure, per step, the expectation's source line and an
    expected/got diff; then a summary line."""
    lines: list[str] = []
    for r in suite.results:
        label = {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}[r.status]
        lines.append(f"{label}  {r.test.path}  {r.test.name}")
        if r.status == "pass":
            if verbose:
                lines.append(f"      {len(r.test.steps)} step(s), {r.test.expectations} "
                             f"expectation(s), {r.seconds * 1000:.0f} ms")
            continue
        for d in r.errors:
            lines.append(f"  {d.pos}: error[{d.code}]: {d.message}")
            lines += _source(docs, d.pos, "    ")
        step = 0
        for f in r.failures:
            if f.step != step:
                step = f.step
                lines.append(f"  step {f.step} at {f.at.isoformat()}")
            lines += ["    " + x for x in f.lines()]
            if f.expected is not None:
                lines += _source(docs, f.pos, "      ")
    word = "test" if len(suite.results) == 1 else "tests"
    summary = (f"{len(suite.results)} {word}: {suite.count('pass')} passed, "
               f"{suite.count('fail')} failed")
    if suite.count("error"):
        summary += f", {suite.count('error')} could not run"
    lines.append(summary + f" ({suite.seconds:.2f} s)")
    return "\n".join(lines)


def _source(docs: Mapping[str, Document] | None, pos: Position, indent: str) -> list[str]:
    doc = (docs or {}).get(pos.path)
    text = doc.line_text(pos.line).rstrip() if doc is not None else ""
    return [f"{indent}{pos.line:>4} | {text}"] if text else []


def junit_xml(suite: Suite) -> str:
    """JUnit XML: one test suite per file, one test case per rule test."""
    root = ET.Element("testsuites", name="engine test", tests=str(len(suite.results)),
                      failures=str(suite.count("fail")), errors=str(suite.count("error")),
                      time=f"{suite.seconds:.3f}")
    for r in suite.results:
        ts = ET.SubElement(root, "testsuite", name=r.test.path, tests="1",
                           failures=str(int(r.status == "fail")),
                           errors=str(int(r.status == "error")), time=f"{r.seconds:.3f}")
        case = ET.SubElement(ts, "testcase", classname=r.test.path, name=r.test.name,
                             time=f"{r.seconds:.3f}")
        if r.failures:
            body = []
            for f in r.failures:
                body.append(f"step {f.step} at {f.at.isoformat()}")
                body += ["  " + x for x in f.lines()]
            el = ET.SubElement(case, "failure", type="expectation",
                               message=f"{len(r.failures)} expectation(s) not met")
            el.text = "\n".join(body)
        for d in r.errors:
            el = ET.SubElement(case, "error", type=d.code, message=d.message)
            el.text = f"{d.pos}: {d.message}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
