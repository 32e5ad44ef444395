"""Holdout and variant assignment: a stable hash of (rule id, user id).

SHA-256 of "rule_id:user_id" gives two independent uniform numbers in [0, 1): the first
decides the holdout, the second the variant (cumulative weights, in the order written).
The assignment therefore survives every rule edit that keeps the rule id, the holdout
percentage and the variants' weights and order: reworded copy, a changed audience, new
actions. Changing a weight moves only the users on the boundary it shifts.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .rules.model import Experiment

_SCALE = float(1 << 64)


def _uniforms(rule_id: str, user_id: str) -> tuple[float, float]:
    digest = hashlib.sha256(f"{rule_id}:{user_id}".encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") / _SCALE,
            int.from_bytes(digest[8:16], "big") / _SCALE)


@dataclass(frozen=True)
class Assignment:
    holdout: bool
    variant: str | None  # None when the rule has no variants (or the user is held out)


def assign(rule_id: str, user_id: str, experiment: Experiment | None) -> Assignment:
    if experiment is None:
        return Assignment(False, None)
    u_holdout, u_variant = _uniforms(rule_id, user_id)
    if u_holdout < experiment.holdout:
        return Assignment(True, None)
    variants = experiment.variants
    if not variants:
        return Assignment(False, None)
    total = sum(v.weight for v in variants)
    point = u_variant * total
    acc = 0.0
    for v in variants:
        acc += v.weight
        if point < acc:
            return Assignment(False, v.name)
    return Assignment(False, variants[-1].name)
