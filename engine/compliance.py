"""Compliance: WeChat platform rules, the advertising law and PIPL, as checks with codes.

Two kinds of use share the tables here:
- validate time: copy in rules and coupons is scanned for forced-share, false-claim and
  absolute-term phrases; rewards conditioned on sharing are checked; PII must not reach a
  message; marketing SMS must carry an opt-out;
- send time: every rendered value is checked again (`phrase_hits`, `keyword_problem`), so a
  template that renders a bad value fails that item instead of sending it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from .lang.typed import TAgg, TCompare, TExpr, TIn, TList, TLit, TNot, TRowField, TEventField

# Built-in phrase lists; engine.yaml `compliance.phrases` extends them per industry.
PHRASES: Mapping[str, tuple[str, ...]] = {
    "forced_share": ("分享后才能", "转发后才能", "不分享无法", "分享到群获得", "邀请好友才能",
                     "分享后解锁", "转发后解锁", "分享给好友才能", "转发到群才能", "分享到3个群",
                     "分享到5个群", "转发三个群", "集赞"),
    "false_claim": ("100%中奖", "百分百中奖", "稳赚", "包赚", "必中大奖", "零风险",
                    "百元现金天天领", "点一下就有钱"),
    "absolute_term": ("最佳", "最低价", "第一", "唯一", "国家级", "顶级", "全网最", "最高级",
                      "最便宜", "史上最", "极品", "首个", "独一无二", "万能"),
    "opt_out": ("回T退订", "回TD退订", "退订回T", "退订请回", "拒收请回复", "回复TD退订"),
}
PHRASE_CODES = {"forced_share": "FORCED_SHARE", "false_claim": "FALSE_CLAIM",
                "absolute_term": "ABSOLUTE_TERM"}
PHRASE_MESSAGES = {
    "forced_share": "forces or induces sharing (WeChat 平台运营规范 5.1 滥用分享)",
    "false_claim": "is a false or guaranteed-win claim (反不正当竞争法, 广告法)",
    "absolute_term": "is an absolute term the advertising law forbids (广告法 第九条)",
}
MOMENTS_VALUES = ("moments", "timeline", "朋友圈")


def phrase_lists(extra: Mapping[str, Iterable[str]] | None = None) -> dict[str, tuple[str, ...]]:
    out = {k: tuple(v) for k, v in PHRASES.items()}
    for k, v in (extra or {}).items():
        out[k] = out.get(k, ()) + tuple(v)
    return out


@dataclass(frozen=True)
class Hit:
    list_name: str
    code: str
    phrase: str
    offset: int


def phrase_hits(text: str, lists: Mapping[str, tuple[str, ...]]) -> list[Hit]:
    """Every forced-share, false-claim and absolute-term phrase in `text`, with its offset."""
    hits = []
    folded = text.casefold()
    for name, code in PHRASE_CODES.items():
        for phrase in lists.get(name, ()):
            start = folded.find(phrase.casefold())
            if start >= 0:
                hits.append(Hit(name, code, phrase, start))
    hits.sort(key=lambda h: (h.offset, -len(h.phrase)))
    kept: list[Hit] = []
    for h in hits:  # 稳赚不赔 also contains 稳赚: report the longest phrase once
        if kept and h.offset < kept[-1].offset + len(kept[-1].phrase):
            continue
        kept.append(h)
    return kept


def has_opt_out(text: str, lists: Mapping[str, tuple[str, ...]]) -> bool:
    return any(p in text for p in lists.get("opt_out", ())) or bool(re.search(r"退订", text))


# -- WeChat subscription-message keyword limits (WECHAT.md §1) ----------------------------------
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_DATE_PART = (r"(?:\d{4}年\d{1,2}月\d{1,2}日|\d{4}年\d{1,2}月|\d{1,2}月\d{1,2}日"
              r"|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{4}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2})")
_TIME_PART = r"\d{1,2}:\d{2}(?::\d{2})?"
_DATE_RE = re.compile(rf"^{_DATE_PART}(?:\s*{_TIME_PART})?(?:\s*~\s*{_DATE_PART}(?:\s*{_TIME_PART})?)?$")
_TIME_RE = re.compile(rf"^(?:{_DATE_PART}\s*)?{_TIME_PART}(?:\s*~\s*(?:{_DATE_PART}\s*)?{_TIME_PART})?$")
_AMOUNT_RE = re.compile(r"^[¥￥$€£]?\d{1,10}(?:\.\d{1,2})?元?$")


def keyword_problem(kind: str, value: str) -> str | None:
    """Why `value` breaks WeChat's limit for keyword type `kind`, or None if it fits."""
    v = str(value)
    if "\n" in v or "\r" in v:
        return "control characters such as newlines are not allowed"
    n = len(v)
    if not v.strip():
        return "a keyword value may not be empty"
    if kind == "thing":
        return None if n <= 20 else f"`thing` values are at most 20 characters; this has {n}"
    if kind == "number":
        return None if re.fullmatch(r"\d+(?:\.\d+)?", v) and len(v.replace(".", "")) <= 32 \
            else "`number` values are at most 32 digits, with an optional decimal point"
    if kind == "letter":
        return None if re.fullmatch(r"[A-Za-z]{1,32}", v) else "`letter` values are 1-32 letters"
    if kind == "symbol":
        return None if n <= 5 and not re.search(rf"[A-Za-z0-9{_CJK}]", v) \
            else "`symbol` values are at most 5 symbols"
    if kind == "character_string":
        return None if n <= 32 and not re.search(rf"[{_CJK}]", v) \
            else "`character_string` values are at most 32 digits, letters or symbols, no Chinese"
    if kind == "phrase":
        return None if re.fullmatch(rf"[{_CJK}]{{1,5}}", v) \
            else f"`phrase` values are at most 5 Chinese characters, nothing else; this is `{v}`"
    if kind == "time":
        return None if _TIME_RE.match(v) else "`time` values are a 24-hour time such as 15:01, " \
                                              "optionally after a date"
    if kind == "date":
        return None if _DATE_RE.match(v) else "`date` values are a date such as 2026-11-20 or " \
                                              "2026年11月20日, optionally with a time"
    if kind == "amount":
        return None if _AMOUNT_RE.match(v) else "`amount` values are a currency symbol and at " \
                                                "most 10 digits, e.g. ¥10.00 or 10元"
    if kind == "phone_number":
        return None if n <= 17 and re.fullmatch(r"[\d+\-() ]+", v) \
            else "`phone_number` values are at most 17 digits and symbols"
    if kind == "car_number":
        return None if n <= 8 else "`car_number` values are at most 8 characters"
    if kind == "name":
        if re.search(rf"[{_CJK}]", v):
            return None if n <= 10 else "`name` values with Chinese are at most 10 characters"
        return None if n <= 20 else "`name` values are at most 20 letters or symbols"
    return None  # enum: values come from the template's own list, checked by WeChat


# -- rewards conditioned on sharing ------------------------------------------------------------

@dataclass(frozen=True)
class SocialUse:
    """A reference to a social event that makes the rule's reward depend on sharing."""

    event: str
    filter: TExpr | None  # the where-filter on that event, if any


def social_uses(expr: TExpr | None, social: set[str], negated: bool = False) -> list[SocialUse]:
    """Positive references to social events in a condition (not `== 0`, not under `not`)."""
    if expr is None:
        return []
    out: list[SocialUse] = []
    if isinstance(expr, TNot):
        return social_uses(expr.operand, social, not negated)
    if isinstance(expr, TCompare):
        sides = [expr.left, expr.right]
        aggs = [s for s in sides if isinstance(s, TAgg) and s.event in social]
        if aggs:
            other = expr.right if aggs[0] is expr.left else expr.left
            zero = isinstance(other, TLit) and other.value == 0
            op = expr.op if aggs[0] is expr.left else _flip(expr.op)
            absent = (zero and op in ("==", "<=")) or (op == "<" and isinstance(other, TLit)
                                                         and other.value == 1)
            if not negated and not absent:
                out.extend(SocialUse(a.event, a.where) for a in aggs)
            return out
    if isinstance(expr, TAgg) and expr.event in social and not negated:
        return [SocialUse(expr.event, expr.where)]
    from .lang.typed import tchildren
    for child in tchildren(expr):
        out.extend(social_uses(child, social, negated))
    return out


def _flip(op: str) -> str:
    return {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)


def moments_status(filter_expr: TExpr | None, moment_fields: set[str]) -> str:
    """`included` when the filter names moments, `excluded` when it rules them out,
    `open` when nothing restricts the share target."""
    if filter_expr is None or not moment_fields:
        return "open" if moment_fields else "excluded"
    from .lang.typed import walk
    restricted = False
    for node in walk(filter_expr):
        if isinstance(node, TCompare) and node.op in ("==", "!="):
            field_side = next((s for s in (node.left, node.right) if _is_field(s, moment_fields)),
                              None)
            lit = next((s for s in (node.left, node.right) if isinstance(s, TLit)), None)
            if field_side is None or lit is None:
                continue
            is_moments = str(lit.value) in MOMENTS_VALUES
            if node.op == "==" and is_moments:
                return "included"
            if (node.op == "==") or (node.op == "!=" and is_moments):
                restricted = True
        if isinstance(node, TIn) and _is_field(node.item, moment_fields) \
                and isinstance(node.container, TList):
            values = [str(getattr(i, "value", "")) for i in node.container.items]
            has_moments = any(v in MOMENTS_VALUES for v in values)
            if not node.negated and has_moments:
                return "included"
            if node.negated == has_moments:
                restricted = True
    return "excluded" if restricted else "open"


def _is_field(node: TExpr, names: set[str]) -> bool:
    return isinstance(node, (TRowField, TEventField)) and node.name in names
