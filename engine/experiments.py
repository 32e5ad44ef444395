"""Holdout and variant assignment: a stable hash of (rule id, user id).

SHA-256 of "rule_id:user_id" gives two independent uniform numbers in [0, 1): the first
decides the holdout, the second the variant (cumulative weights, in the order written).
The assignment therefore survives every rule edit that keeps the rule id, the holdout
percentage and the variants' weights and order: reworded copy, a changed audience, new
actions. Changing a weight moves only the users on the boundary it shifts.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Callable

from .rules.model import Experiment

_SCALE = float(1 << 64)
_TWO_U64 = struct.Struct(">QQ")


@dataclass(frozen=True)
class Assignment:
    holdout: bool
    variant: str | None  # None when the rule has no variants (or the user is held out)


def assign(rule_id: str, user_id: str, experiment: Experiment | None) -> Assignment:
    return assigner(rule_id, experiment)(user_id)


def assigner(rule_id: str, experiment: Experiment | None) -> Callable[[str], Assignment]:
    """`assign` for one rule, for many users: the same assignments, with the rule's part of
    the hash, the weights and the possible results worked out once."""
    if experiment is None:
        none = Assignment(False, None)
        return lambda user_id: none
    prefix = hashlib.sha256(f"{rule_id}:".encode("utf-8"))
    holdout, variants = experiment.holdout, experiment.variants
    held, plain = Assignment(True, None), Assignment(False, None)
    total = sum(v.weight for v in variants)
    bounds: list[tuple[float, Assignment]] = []
    acc = 0.0
    for v in variants:
        acc += v.weight
        bounds.append((acc, Assignment(False, v.name)))
    unpack = _TWO_U64.unpack_from

    def one(user_id: str) -> Assignment:
        h = prefix.copy()
        h.update(user_id.encode("utf-8"))
        a, b = unpack(h.digest())
        if a / _SCALE < holdout:
            return held
        if not bounds:
            return plain
        point = b / _SCALE * total
        for bound, assignment in bounds:
            if point < bound:
                return assignment
        return bounds[-1][1]

    return one
