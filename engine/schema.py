"""JSON Schema validation with errors mapped back to YAML lines and columns.

Every error in a file is reported, not only the first; unknown keys name the key itself and
offer the nearest allowed key ("did you mean `audience`?").
"""
from __future__ import annotations

import difflib
import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterable

import fastjsonschema

from .errors import Diagnostic, Severity
from .resources import schemas_dir
from .yaml12 import Document

if TYPE_CHECKING:  # jsonschema is imported only when a document has errors (start-up time)
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SCHEMA_FILES = {
    "engine": "engine.schema.json",
    "datamodel": "datamodel.schema.json",
    "templates": "templates.schema.json",
    "coupons": "coupons.schema.json",
    "rule": "rule.schema.json",
    "ruletest": "ruletest.schema.json",
}


@lru_cache(maxsize=None)
def schema(kind: str) -> dict[str, Any]:
    with open(schemas_dir() / SCHEMA_FILES[kind], encoding="utf-8") as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


@lru_cache(maxsize=None)
def validator(kind: str, pointer: str = "") -> "Draft202012Validator":
    from jsonschema import Draft202012Validator

    root = schema(kind)
    sub = root
    if pointer:
        for part in pointer.strip("/").split("/"):
            sub = sub[part]
        sub = {**sub, "$defs": root.get("$defs", {})}
    return Draft202012Validator(sub)


@lru_cache(maxsize=None)
def fast_validator(kind: str, pointer: str = "") -> Any:
    """A compiled validator (fastjsonschema): ~20x faster on valid documents, which are most
    of them. Only when it rejects a document does the full jsonschema pass run, to report
    every error with a good message."""
    root = schema(kind)
    sub = root
    if pointer:
        for part in pointer.strip("/").split("/"):
            sub = sub[part]
        sub = {**sub, "$defs": root.get("$defs", {})}
    return fastjsonschema.compile(sub)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else ""


def _describe_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)) or type(value).__name__ == "Decimal":
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _field_name(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "the top level"


def check(doc: Document, kind: str, data: Any = None, base: tuple[Any, ...] = (),
          pointer: str = "") -> list[Diagnostic]:
    """Validate `data` (default: the whole document) and return positioned diagnostics."""
    instance = doc.data if data is None else data
    try:
        fast_validator(kind, pointer)(instance)
        return []
    except fastjsonschema.JsonSchemaException:
        pass
    out: list[Diagnostic] = []
    for err in sorted(validator(kind, pointer).iter_errors(instance),
                      key=lambda e: [str(p) for p in e.absolute_path]):
        out.extend(_to_diagnostics(doc, err, base, kind))
    return out


def _to_diagnostics(doc: Document, err: "ValidationError", base: tuple[Any, ...],
                    kind: str = "") -> list[Diagnostic]:
    path = base + tuple(err.absolute_path)
    where = _field_name(path)
    v = err.validator
    vv: Any = err.validator_value
    if v == "additionalProperties" and isinstance(err.instance, dict):
        allowed = list((err.schema.get("properties") or {}).keys())  # type: ignore[union-attr]
        diags = []
        for key in err.instance:
            if key in allowed:
                continue
            hint = did_you_mean(str(key), allowed)
            if not hint and allowed:
                hint = "allowed keys: " + ", ".join(allowed)
            diags.append(Diagnostic(Severity.ERROR, "SCHEMA_UNKNOWN_KEY",
                                    f"unknown key `{key}` in {where}",
                                    doc.pos(path + (key,), key=True), hint=hint,
                                    length=len(str(key))))
        if diags:
            return diags
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else str(vv)
        return [Diagnostic(Severity.ERROR, "SCHEMA_REQUIRED",
                           f"missing required key `{missing}` in {where}", doc.pos(path))]
    if v == "type":
        expected = vv
        exp = " or ".join(expected) if isinstance(expected, list) else expected
        names = {"object": "a mapping", "array": "a list", "string": "a string",
                 "integer": "a whole number", "number": "a number", "boolean": "true or false",
                 "null": "empty"}
        exp_words = " or ".join(names.get(e, e) for e in exp.split(" or "))
        return [Diagnostic(Severity.ERROR, "SCHEMA_TYPE",
                           f"{where} must be {exp_words}, not {_describe_type(err.instance)}",
                           doc.pos(path))]
    if v == "enum":
        options = ", ".join(json.dumps(o, ensure_ascii=False) for o in vv)
        hint = did_you_mean(str(err.instance), [str(o) for o in vv])
        return [Diagnostic(Severity.ERROR, "SCHEMA_ENUM",
                           f"{where} is `{err.instance}`; expected one of {options}",
                           doc.pos(path), hint=hint)]
    if v == "pattern" and path and path[-1] == "type" and kind == "datamodel":
        return [Diagnostic(Severity.ERROR, "BAD_TYPE",
                           f"`{err.instance}` is not a type; use string, number, bool, money, "
                           "timestamp, date or list<T> of one of them", doc.pos(path))]
    if v == "pattern":
        return [Diagnostic(Severity.ERROR, "SCHEMA_PATTERN",
                           f"{where} `{err.instance}` does not match the pattern "
                           f"{vv}", doc.pos(path), hint=_pattern_hint(path))]
    if v in ("maxProperties", "minProperties") and path and _field_name(path[-1:]).isdigit():
        return [Diagnostic(Severity.ERROR, "SCHEMA_SHAPE",
                           f"{where}: each action is a mapping with exactly one key "
                           "(coupon, message, points, tag or webhook)", doc.pos(path))]
    if v == "propertyNames":
        return [Diagnostic(Severity.ERROR, "SCHEMA_PATTERN",
                           f"{where}: name `{err.instance}` is not allowed "
                           f"({err.message})", doc.pos(path))]
    return [Diagnostic(Severity.ERROR, "SCHEMA_VALUE", f"{where}: {err.message}", doc.pos(path))]


def _pattern_hint(path: tuple[Any, ...]) -> str:
    last = str(path[-1]) if path else ""
    if last == "id":
        return "rule ids use lowercase letters, digits and single dashes, e.g. winback-7d"
    if last.endswith("_env"):
        return "name an environment variable, e.g. WECHAT_APPSECRET; never the secret itself"
    return ""
