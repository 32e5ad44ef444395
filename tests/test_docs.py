"""The documentation is tested like code: it must cover what exists and its examples must work.

- docs/validate.md has a `### CODE` section, with the right severity, for every diagnostic code
  in engine.codes.CODES, and no section for a code that does not exist;
- every ```condition block in docs/language.md parses and type-checks against the example
  project's datamodel.yaml, and every ```condition-error block fails (with the code it names);
- every function and every operator of the language has at least one checked example;
- docs/rules.md names every key of every JSON Schema under schemas/;
- README.md opens with the two commands and mentions every top-level CLI command.

Info strings of condition blocks: ```condition [event=E | where=E] and
```condition-error [CODE] [event=E | where=E]. `event=E`: the condition sits in a rule triggered
by events of type E (so `event.x` resolves). `where=E`: the condition is a `where:` filter on
E events (their fields are also bare names).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine import yaml12
from engine.codes import CODES
from engine.config import DataModel, build_datamodel
from engine.lang import syntax
from engine.lang.checker import AGGREGATES, FUNCTIONS, Scope, check_all

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def fenced(text: str) -> list[tuple[str, str, int]]:
    """(info string, body, 1-based line of the opening fence) of every fenced block."""
    return [(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1)
            for m in FENCE.finditer(text)]


# -- docs/validate.md: one section per diagnostic code -------------------------------------------

def code_sections() -> dict[str, str]:
    """`### HEADING` -> the section's text up to the next heading of level 1-3."""
    text = read(DOCS / "validate.md")
    parts = re.split(r"^(#{1,3}) +(.+?)[ \t]*$", text, flags=re.M)
    out: dict[str, str] = {}
    for i in range(1, len(parts), 3):
        level, title, body = parts[i], parts[i + 1], parts[i + 2]
        if level == "###":
            assert title not in out, f"validate.md has two `### {title}` sections"
            out[title] = body
    return out


def test_every_code_has_a_section() -> None:
    missing = [c for c in CODES if c not in code_sections()]
    assert not missing, f"docs/validate.md lacks a `### CODE` section for: {missing}"


def test_every_section_names_a_real_code() -> None:
    unknown = [t for t in code_sections() if t not in CODES]
    assert not unknown, (f"docs/validate.md has `###` sections for codes engine/codes.py does not "
                         f"have (level-3 headings there are reserved for codes): {unknown}")


@pytest.mark.parametrize("code", list(CODES))
def test_section_states_severity_and_fix(code: str) -> None:
    body = code_sections().get(code)
    assert body is not None, f"docs/validate.md has no `### {code}` section"
    first = next(line for line in body.splitlines() if line.strip())
    m = re.match(r"\*\*(error|warning)\*\*", first)
    assert m, f"### {code}: the first line must start with **error** or **warning**: {first!r}"
    want = CODES[code][0]
    assert m.group(1) == want.value, f"### {code} says {m.group(1)}, engine/codes.py says {want.value}"
    assert "**Fix:**" in body, f"### {code} does not say how to fix it (a **Fix:** paragraph)"


# -- docs/language.md: examples parse and type-check ----------------------------------------------

@lru_cache(maxsize=None)
def example_model() -> DataModel:
    """The repository's own datamodel.yaml: the data model every example is written against."""
    doc = yaml12.load(read(ROOT / "datamodel.yaml"), "datamodel.yaml")
    assert not doc.problems, doc.problems
    built = build_datamodel(doc.data)
    assert not built.problems, built.problems
    model: DataModel = built.value
    return model


TZ = ZoneInfo("Asia/Shanghai")


def condition_blocks() -> list[tuple[str, str, int]]:
    return [(info, body, line) for info, body, line in fenced(read(DOCS / "language.md"))
            if info.split()[:1] in (["condition"], ["condition-error"])]


def scope_for(options: list[str]) -> Scope:
    model = example_model()
    event = where = None
    for opt in options:
        key, _, value = opt.partition("=")
        if key == "event":
            event = value
        elif key == "where":
            where = value
        else:
            raise AssertionError(f"unknown option {opt!r} on a condition block")
    if where is not None:
        assert where in model.events, f"where={where}: no such event type in datamodel.yaml"
        return Scope(model, TZ, trigger_event=where, bare_event=where)
    if event is not None:
        assert event in model.events, f"event={event}: no such event type in datamodel.yaml"
    return Scope(model, TZ, trigger_event=event)


def block_id(block: tuple[str, str, int]) -> str:
    info, body, line = block
    return f"L{line}:{' '.join(body.split())[:50]}"


BLOCKS = condition_blocks()
GOOD = [b for b in BLOCKS if b[0].split()[0] == "condition"]
BAD = [b for b in BLOCKS if b[0].split()[0] == "condition-error"]


def test_language_doc_has_examples() -> None:
    assert len(GOOD) >= 60 and len(BAD) >= 10, (len(GOOD), len(BAD))


@pytest.mark.parametrize("block", GOOD, ids=[block_id(b) for b in GOOD])
def test_condition_example_checks(block: tuple[str, str, int]) -> None:
    info, body, _ = block
    node, errors = check_all(body.strip(), scope_for(info.split()[1:]))
    assert not errors, "; ".join(f"[{e.code}] {e.message} {e.hint}" for e in errors)
    assert node is not None and node.type == "bool"


@pytest.mark.parametrize("block", BAD, ids=[block_id(b) for b in BAD])
def test_condition_error_example_fails(block: tuple[str, str, int]) -> None:
    info, body, _ = block
    words = info.split()[1:]
    codes = [w for w in words if "=" not in w]
    node, errors = check_all(body.strip(), scope_for([w for w in words if "=" in w]))
    assert errors, "this example is marked condition-error but checks clean"
    for code in codes:
        assert code in CODES, f"unknown code {code} on a condition-error block"
        assert code in [e.code for e in errors], (f"expected {code}, got "
                                                  f"{[e.code for e in errors]}")


def test_every_function_has_an_example() -> None:
    text = read(DOCS / "language.md")
    examples = "\n".join(body for _, body, _ in GOOD)
    for name in AGGREGATES + FUNCTIONS:
        assert name in text, f"docs/language.md does not mention {name}"
        assert re.search(rf"\b{name}\(", examples), f"no checked example calls {name}()"


OPERATORS = {"and", "or", "not", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains",
             "starts_with", "is null", "is not null", "+", "-", "*", "/", "neg"}


def operators_used(node: syntax.Node) -> set[str]:
    out: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (syntax.Binary, syntax.Logical)):
            out.add(n.op)
        elif isinstance(n, syntax.Unary):
            out.add("neg" if n.op == "-" else n.op)
        elif isinstance(n, syntax.IsNull):
            out.add("is not null" if n.negated else "is null")
        stack.extend(syntax.children(n))
    return out


def test_every_operator_has_an_example() -> None:
    used: set[str] = set()
    for _, body, _ in GOOD:
        used |= operators_used(syntax.parse(body.strip()))
    assert OPERATORS <= used, f"no checked example uses: {sorted(OPERATORS - used)}"


# -- docs/rules.md: every key of every file format ------------------------------------------------

def schema_keys(node: object) -> set[str]:
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                out |= set(value)
            out |= schema_keys(value)
    elif isinstance(node, list):
        for item in node:
            out |= schema_keys(item)
    return out


@pytest.mark.parametrize("schema", sorted(p.name for p in (ROOT / "schemas").glob("*.json")))
def test_rules_doc_names_every_key(schema: str) -> None:
    keys = schema_keys(json.loads(read(ROOT / "schemas" / schema)))
    text = read(DOCS / "rules.md")
    missing = sorted(k for k in keys if not re.search(rf"`{re.escape(k)}\b", text))
    assert not missing, f"docs/rules.md does not document these {schema} keys: {missing}"


MODELINE = re.compile(r"^# yaml-language-server: \$schema=(?:\.\./)?schemas/(\w+)\.schema\.json")
TARGETS = {"engine": "engine.yaml", "datamodel": "datamodel.yaml", "templates": "templates.yaml",
           "coupons": "coupons.yaml", "rule": "rules/doc-example-{n}.yaml",
           "ruletest": "tests/doc-example-{n}.yaml"}


def test_rules_doc_example_files_validate_clean(tmp_path: Path) -> None:
    """The complete example files in rules.md (those opening with a `$schema` modeline) form
    a project that `engine validate` passes without a single diagnostic."""
    from engine.scaffold import init_project
    from engine.validate import validate

    project = tmp_path / "shop"
    init_project(str(project))
    for old in [*(project / "rules").glob("*.yaml"), *(project / "tests").glob("*.yaml")]:
        old.unlink()  # the example's rule tests name the example's rules
    written = []
    for n, (info, body, line) in enumerate(fenced(read(DOCS / "rules.md"))):
        m = MODELINE.match(body)
        if info != "yaml" or not m or not body.split("\n", 1)[1].strip():
            continue
        target = project / TARGETS[m.group(1)].format(n=n)
        target.parent.mkdir(exist_ok=True)
        target.write_text(body, encoding="utf-8")
        written.append(m.group(1))
    assert {"engine", "datamodel", "templates", "coupons", "rule", "ruletest"} <= set(written)
    result = validate(str(project))
    problems = [f"{d.pos}: {d.code}: {d.message}" for d in result.diagnostics]
    assert not problems, problems
    assert result.rules >= 1


# -- README.md ------------------------------------------------------------------------------------

def test_readme_opens_with_the_two_commands() -> None:
    blocks = fenced(read(README))
    assert blocks, "README.md has no code block"
    commands = [line.strip() for line in blocks[0][1].splitlines()
                if line.strip() and not line.strip().startswith("#")]
    assert commands == ["pip install -e . && engine demo",
                        "pip install -e '.[test]' && pytest"], commands


def test_readme_mentions_every_command() -> None:
    from cli import cli

    text = read(README)
    missing = [name for name in cli.commands if not re.search(rf"`engine {name}\b", text)]
    assert not missing, f"README.md does not mention: {missing}"


def slugs(text: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    out: set[str] = set()
    body = FENCE.sub("", text)
    for title in re.findall(r"^#{1,6} +(.+?)[ \t]*$", body, flags=re.M):
        slug = "".join(ch for ch in title.lower() if ch.isalnum() or ch in "-_ ").replace(" ", "-")
        n, candidate = 0, slug
        while candidate in out:
            n += 1
            candidate = f"{slug}-{n}"
        out.add(candidate)
    return out


def test_docs_stand_alone() -> None:
    """The docs are for someone with only the repository: no links outside it, none broken."""
    for path in [README, *DOCS.glob("*.md")]:
        text = read(path)
        assert "../shared" not in text and "shared/design" not in text, path.name
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", FENCE.sub("", text)):
            if "://" in target:
                continue
            linked = (path.parent / target) if target else path
            assert linked.exists(), f"{path.name}: broken link {target}"
            if anchor and linked.suffix == ".md":
                assert anchor in slugs(read(linked)), f"{path.name}: no heading for #{anchor} in {linked.name}"
