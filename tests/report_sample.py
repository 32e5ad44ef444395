"""A realistic report dict in the shape `engine report --format json` prints, for the HTML tests.

Thirty-one days of sends and suppressions, seven rules of the example playbook (Chinese names,
one A/B test with a holdout, one rule whose holdout is empty, one without a goal, one that matched
nobody), eight signup cohorts of which the youngest are not yet complete. Figures are derived from a fixed seed and the statistics
(Wilson intervals, Newcombe differences, pooled z-tests) are computed here the way the contract
says, so the page is drawn from numbers that hang together.
"""
from __future__ import annotations

import math
import random
from datetime import date, timedelta
from typing import Any

AT = "2026-11-20T10:00:00+08:00"
SINCE = "2026-10-21T10:00:00+08:00"
FIRST_DAY = date(2026, 10, 21)
DAYS = 31  # 2026-10-21 .. 2026-11-20, local dates
COHORT_WEEKS = 8  # 2026-W40 .. 2026-W47
Z = 1.959963984540054


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def group(name: str, users: int, conversions: int) -> dict[str, Any]:
    if users == 0:  # an empty holdout: no rate, no interval
        return {"name": name, "users": 0, "conversions": 0, "rate": None, "low": None,
                "high": None}
    low, high = wilson(conversions, users)
    return {"name": name, "users": users, "conversions": conversions,
            "rate": round(conversions / users, 4), "low": round(low, 4), "high": round(high, 4)}


def uplift(variant: dict[str, Any], holdout: dict[str, Any]) -> dict[str, Any]:
    k1, n1, k2, n2 = variant["conversions"], variant["users"], holdout["conversions"], holdout["users"]
    if not n1 or not n2:
        return {"variant": variant["name"], "vs": "holdout", "difference": None, "low": None,
                "high": None, "p_value": None, "significant": False}
    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = wilson(k1, n1), wilson(k2, n2)
    d = p1 - p2
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = math.erfc(abs(d) / se / math.sqrt(2)) if se else 1.0
    return {"variant": variant["name"], "vs": "holdout", "difference": round(d, 4),
            "low": round(d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), 4),
            "high": round(d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2), 4),
            "p_value": round(p_value, 4), "significant": p_value < 0.05}


def rule(rid: str, name: str, matched: int, fired: int, deferred: int,
         suppressed: dict[str, int], failed: int, unknown: int, pending: int,
         goal: dict[str, str] | None, groups: list[dict[str, Any]],
         winner: str | None = None) -> dict[str, Any]:
    sent = fired + deferred - failed - unknown - pending
    holdout = next((g for g in groups if g["name"] == "holdout"), None)
    return {"id": rid, "name": name, "category": "marketing",
            "matched": matched, "fired": fired, "deferred": deferred, "suppressed": suppressed,
            "sent": sent, "failed": failed, "unknown": unknown, "pending": pending,
            "goal": goal,
            "conversions": sum(g["conversions"] for g in groups) if goal else None,
            "groups": groups if goal else [],
            "uplift": [uplift(g, holdout) for g in groups if holdout and g is not holdout],
            "winner": winner}


def sample_rules() -> list[dict[str, Any]]:
    week = {"event": "order_paid", "within": "7d"}
    return [
        rule("ab-sleeping-coupon-copy", "沉睡用户券文案 A/B", 1480, 1292, 18,
             {"holdout": 148, "capped_global": 22, "no_consent": 18}, 21, 3, 6, week,
             [group("holdout", 148, 9), group("gentle", 646, 58), group("urgent", 646, 92)],
             winner="urgent"),
        rule("winback-7d", "7 天未下单召回", 2210, 1905, 40,
             {"capped_global": 181, "capped_rule": 64, "opted_out": 20}, 35, 0, 12, week,
             [group("all", 1905, 204)]),
        rule("cart-abandon-2h", "加购 2 小时未支付提醒", 3120, 2980, 0,
             {"capped_rule": 96, "no_consent": 44}, 18, 2, 0,
             {"event": "order_paid", "within": "1d"}, [group("all", 2980, 611)]),
        rule("coupon-expiring-3d", "优惠券 3 天后过期提醒", 860, 801, 12,
             {"capped_global": 47}, 6, 0, 0, {"event": "coupon_used", "within": "3d"},
             [group("all", 801, 129)]),
        rule("new-user-first-order", "新人 3 天未首单", 96, 90, 0, {}, 1, 0, 0,
             {"event": "order_paid", "within": "3d"},
             [group("holdout", 0, 0), group("all", 89, 17)]),
        rule("checkin-streak-7", "连续签到 7 天奖励", 312, 312, 0, {}, 0, 0, 0, None, []),
        rule("birthday-gift", "会员生日礼", 0, 0, 0, {}, 0, 0, 0,
             {"event": "order_paid", "within": "30d"}, []),
    ]


def sample_daily(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rng = random.Random(7)
    reasons = sorted({r for rule in rules for r in rule["suppressed"]})
    out = []
    for i in range(DAYS):
        day = FIRST_DAY + timedelta(days=i)
        weekend = day.weekday() >= 5
        fired = rng.randint(150, 230) + (60 if weekend else 0)
        deferred, failed, unknown = rng.randint(0, 6), rng.randint(0, 5), int(rng.random() < 0.2)
        pending = rng.randint(0, 8) if i >= DAYS - 2 else 0  # the last days are still going out
        suppressed = {r: rng.randint(0, 14) for r in reasons if rng.random() < 0.8}
        out.append({"date": day.isoformat(), "fired": fired, "deferred": deferred,
                    "sent": fired + deferred - failed - unknown - pending, "failed": failed,
                    "unknown": unknown, "pending": pending,
                    "suppressed": {k: v for k, v in suppressed.items() if v}})
    return out


def sample_cohorts() -> list[dict[str, Any]]:
    rng = random.Random(11)
    first = date(2026, 9, 28)  # a Monday, ISO week 40
    out = []
    for i in range(COHORT_WEEKS):
        start = first + timedelta(weeks=i)
        year, week, _ = start.isocalendar()
        out.append({"week": f"{year}-W{week:02d}", "start": start.isoformat(),
                    "users": rng.randint(260, 420),
                    "d1": round(rng.uniform(0.32, 0.46), 4) if i < 7 else None,
                    "d7": round(rng.uniform(0.17, 0.26), 4) if i < 6 else None,
                    "d30": round(rng.uniform(0.07, 0.12), 4) if i < 3 else None})
    return out


def sample_report() -> dict[str, Any]:
    """The report of a busy month: every chart has something to draw."""
    rules = sample_rules()
    daily = sample_daily(rules)
    keys = ("matched", "fired", "sent", "failed", "unknown")
    totals = {k: sum(r[k] for r in rules) for k in keys}
    totals["suppressed"] = sum(sum(r["suppressed"].values()) for r in rules)
    totals["conversions"] = sum(r["conversions"] or 0 for r in rules)
    rng = random.Random(3)
    series = [{"date": (FIRST_DAY + timedelta(days=i)).isoformat(),
               "dau": rng.randint(760, 860) + (90 if (FIRST_DAY + timedelta(days=i)).weekday() >= 5
                                               else 0)} for i in range(DAYS)]
    return {"at": AT, "since": SINCE, "timezone": "Asia/Shanghai",
            "totals": {k: totals[k] for k in ("matched", "fired", "sent", "suppressed", "failed",
                                               "unknown", "conversions")},
            "rules": rules, "daily": daily,
            "activity": {"dau": 812, "wau": 2301, "mau": 4410, "series": series},
            "cohorts": sample_cohorts()}


def empty_report() -> dict[str, Any]:
    """A project with no data yet: every chart must say so rather than draw an empty frame."""
    return {"at": AT, "since": SINCE, "timezone": "Asia/Shanghai",
            "totals": {"matched": 0, "fired": 0, "sent": 0, "suppressed": 0, "failed": 0,
                       "unknown": 0, "conversions": 0},
            "rules": [rule("ab-sleeping-coupon-copy", "沉睡用户券文案 A/B", 0, 0, 0, {}, 0, 0, 0,
                           {"event": "order_paid", "within": "7d"}, [group("holdout", 0, 0)])],
            "daily": [],
            "activity": {"dau": 0, "wau": 0, "mau": 0, "series": []},
            "cohorts": []}


# What the sample must draw: one mark per chart element, counted by the browser test.
def expected_marks(data: dict[str, Any]) -> dict[str, int]:
    rules = data["rules"]
    return {
        "daily": len(data["daily"]),
        "funnel": sum(4 if r["conversions"] is not None else 3
                      for r in rules if r["matched"] > 0),
        "conversion": sum(g["rate"] is not None for r in rules if r["goal"] for g in r["groups"]),
        "cohorts": 3 * len(data["cohorts"]),
        "activity": len(data["activity"]["series"]),
    }
