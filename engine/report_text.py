"""Plain-text renderings of plan results for the terminal."""
from __future__ import annotations

from .plan import Plan


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
