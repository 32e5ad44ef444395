"""Plain-text renderings of plan results for the terminal."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .plan import Plan

if TYPE_CHECKING:
    from .report import Report
    from .run import RunReport


def plan_text(result: Plan, users: bool = False) -> str:
    lines = [f"plan at {result.at.isoformat()}"]
    width = max((len(r.rule_id) for r in result.rules), default=4)
    lines.append(f"  {'rule':<{width}}  {'matched':>8}  {'fire':>8}  {'deferred':>8}  suppressed")
    for r in result.rules:
        sup = ", ".join(f"{k} {v}" for k, v in r.suppressed().items()) or "-"
        lines.append(f"  {r.rule_id:<{width}}  {r.matched:>8}  {r.count('fire'):>8}  "
                     f"{r.count('deferred'):>8}  {sup}")
        if users:
            fired = [d.user_id for d in r.decisions if d.outcome == "fire"]
            lines.append(f"    fire: {' '.join(fired) if fired else '-'}")
    return "\n".join(lines)


def run_text(report: "RunReport") -> str:
    lines = [f"run at {report.at.isoformat()}: {len(report.due)} rule(s) due"]
    if report.commit is not None:
        for r in report.commit.plan.rules:
            sup = ", ".join(f"{k} {v}" for k, v in r.suppressed().items()) or "-"
            lines.append(f"  {r.rule_id}: matched {r.matched}, fire {r.count('fire')}, "
                         f"deferred {r.count('deferred')}, suppressed {sup}")
        lines.append(f"committed {report.commit.new_fires} new fire(s), "
                     f"{report.commit.outbox_items} outbox item(s)"
                     + (f"; {report.commit.repeated} already committed" if report.commit.repeated
                        else ""))
    counts = report.delivery.as_json()
    lines.append("delivered: " + (", ".join(f"{k} {v}" for k, v in counts.items())
                                  or "nothing was due"))
    for name, why in report.unavailable.items():
        lines.append(f"waiting: channel {name} unavailable ({why}); its items stay queued")
    return "\n".join(lines)


def _pct(x: object) -> str:
    return "-" if x is None else f"{float(x) * 100:.1f}%"  # type: ignore[arg-type]


def report_text(report: "Report") -> str:
    """`engine report`: per rule, goals and experiments, daily activity, cohorts."""
    data = report.as_json()
    lines = [f"report for [{data['since']}, {data['at']}) ({data['timezone']})"]
    width = max((len(r["id"]) for r in data["rules"]), default=4)
    head = ("matched", "fired", "deferred", "sent", "failed", "unknown", "pending", "conv")
    lines.append(f"  {'rule':<{width}}  " + "  ".join(f"{h:>8}" for h in head)
                 + "  suppressed")
    rows = [(r["id"], r, r["suppressed"]) for r in data["rules"]]
    rows.append(("total", data["totals"], {}))
    for name, r, sup in rows:
        conv = "-" if r["conversions"] is None else str(r["conversions"])
        cells = [str(r[h]) for h in head[:-1]] + [conv]
        lines.append(f"  {name:<{width}}  " + "  ".join(f"{c:>8}" for c in cells) + "  "
                     + (", ".join(f"{k} {v}" for k, v in sup.items()) or "-"))
    idle = 0
    for r in data["rules"]:
        if r["goal"] is None:
            continue
        if not any(grp["users"] for grp in r["groups"]):
            idle += 1
            continue
        g = r["goal"]
        where = ""
        if "where" in g:
            where = f" where {g['where']}" + ("" if g["where_applied"] else
                                              " (not applied: see docs/report.md)")
        lines.append(f"goal of {r['id']}: {g['event']} within {g['within']}{where}")
        for grp in r["groups"]:
            interval = "-" if grp["low"] is None else \
                f"[{_pct(grp['low'])}, {_pct(grp['high'])}]"
            lines.append(f"  {grp['name']:<12} {grp['users']:>8} users  "
                         f"{grp['conversions']:>6} converted  {_pct(grp['rate']):>6}  "
                         f"{interval}")
        for u in r["uplift"]:
            if u["difference"] is None:
                lines.append(f"  uplift {u['variant']} vs {u['vs']}: - (a group is empty)")
                continue
            lines.append(f"  uplift {u['variant']} vs {u['vs']}: "
                         f"{u['difference'] * 100:+.1f} points [{u['low'] * 100:+.1f}, "
                         f"{u['high'] * 100:+.1f}], p = {u['p_value']:.3g}"
                         + (" (significant)" if u["significant"] else ""))
        if len([x for x in r["groups"] if x["name"] != "holdout"]) > 1:
            none = "none (no variant significantly beats every other)"
            lines.append(f"  winner: {r['winner'] or none}")
    if idle:
        lines.append(f"goals of {idle} more rule(s): no user reached in the window")
    act = data["activity"]
    lines.append(f"activity at {data['at']}: DAU {act['dau']}, WAU {act['wau']}, "
                 f"MAU {act['mau']}")
    lines.append(f"  {'date':<10}  {'dau':>8}  {'fired':>8}  {'sent':>8}  {'failed':>8}  "
                 "suppressed")
    for day, point in zip(data["daily"], act["series"]):
        sup = ", ".join(f"{k} {v}" for k, v in day["suppressed"].items()) or "-"
        lines.append(f"  {day['date']:<10}  {point['dau']:>8}  {day['fired']:>8}  "
                     f"{day['sent']:>8}  {day['failed']:>8}  {sup}")
    lines.append("retention by signup week (share active on day +1, +7, +30)")
    if not data["cohorts"]:
        lines.append("  no users signed up in these weeks")
    else:
        lines.append(f"  {'week':<8}  {'start':<10}  {'users':>8}  {'d1':>6}  {'d7':>6}  "
                     f"{'d30':>6}")
    for c in data["cohorts"]:
        lines.append(f"  {c['week']:<8}  {c['start']:<10}  {c['users']:>8}  "
                     f"{_pct(c['d1']):>6}  {_pct(c['d7']):>6}  {_pct(c['d30']):>6}")
    return "\n".join(lines)
