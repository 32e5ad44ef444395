"""Experiment assignment: the documented hash, exactly (assignments must never move)."""
from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.experiments import Assignment, assign, assigner
from engine.rules.model import Experiment, Variant


def reference(rule_id: str, user_id: str, experiment: Experiment | None) -> Assignment:
    """The rule as docs/plan.md states it: SHA-256 of "rule_id:user_id"; bytes 0-7 and 8-15 as
    big-endian integers over 2**64 give the holdout and the variant draws; variants by
    cumulative weight in the order written."""
    if experiment is None:
        return Assignment(False, None)
    digest = hashlib.sha256(f"{rule_id}:{user_id}".encode("utf-8")).digest()
    u_holdout = int.from_bytes(digest[:8], "big") / float(1 << 64)
    u_variant = int.from_bytes(digest[8:16], "big") / float(1 << 64)
    if u_holdout < experiment.holdout:
        return Assignment(True, None)
    if not experiment.variants:
        return Assignment(False, None)
    point = u_variant * sum(v.weight for v in experiment.variants)
    acc = 0.0
    for v in experiment.variants:
        acc += v.weight
        if point < acc:
            return Assignment(False, v.name)
    return Assignment(False, experiment.variants[-1].name)


experiments = st.one_of(st.none(), st.builds(
    Experiment,
    holdout=st.sampled_from([0.0, 0.05, 0.1, 0.5, 1.0]),
    variants=st.lists(st.integers(1, 100), max_size=4).map(
        lambda ws: tuple(Variant(f"v{i}", w) for i, w in enumerate(ws)))))


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=12), st.lists(st.text(max_size=12), min_size=1, max_size=20),
       experiments)
def test_assignments_follow_the_documented_hash(rule_id: str, users: list[str],
                                                experiment: Experiment | None) -> None:
    one = assigner(rule_id, experiment)
    for user in users:
        want = reference(rule_id, user, experiment)
        assert one(user) == want
        assert assign(rule_id, user, experiment) == want


def test_known_assignments_do_not_move() -> None:
    """Pinned values (computed by the first release): a change of hash, byte order or weight
    walk would move real users between groups."""
    exp = Experiment(holdout=0.1, variants=(Variant("a", 1), Variant("b", 2)))
    got = "".join("h" if a.holdout else str(a.variant)
                  for a in map(assigner("winback-7d", exp), (f"u{i}" for i in range(40))))
    assert got == "aabbababbbbababhhbhbbahhbhbbbbbbabbbbabb"
