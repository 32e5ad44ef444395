"""Plain-text renderings of plan results for the terminal."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .plan import Plan

if TYPE_CHECKING:
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
