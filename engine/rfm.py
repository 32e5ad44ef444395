"""RFM as of T (LANGUAGE.md "RFM"): metrics, scores 1..5 and the eight segments.

Over the N users with at least one purchase event (engine.yaml `purchase_event`) before T:
recency_days = floor((T - last purchase) / 1 day), frequency = number of purchases,
monetary = sum of their amounts in fen. A user's score on a metric is 1 + floor(5 * w / N),
w the number of users strictly worse (recency: strictly larger); ties share a score. R is near
iff recency_days <= mean, F high iff frequency >= mean, M high iff monetary >= mean, compared
exactly. The work is done in the database (`Store.materialise_rfm`); this module names the
segments and reports.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from .config import fen_to_yuan
from .store import Store, rfm_sql
from .store.rfm_sql import SegmentMeans
from .timeutil import to_micros

# (name, 中文, R near, F high, M high), in LANGUAGE.md's order.
SEGMENTS: tuple[tuple[str, str, bool, bool, bool], ...] = (
    ("important_value", "重要价值客户", True, True, True),
    ("important_develop", "重要发展客户", True, False, True),
    ("important_keep", "重要保持客户", False, True, True),
    ("important_retain", "重要挽留客户", False, False, True),
    ("general_value", "一般价值客户", True, True, False),
    ("general_develop", "一般发展客户", True, False, False),
    ("general_keep", "一般保持客户", False, True, False),
    ("general_retain", "一般挽留客户", False, False, False),
)


def segment_names_by_code() -> list[str]:
    """Names indexed by 4 * R_near + 2 * F_high + M_high (the store's segment code)."""
    out = [""] * 8
    for name, _, r, f, m in SEGMENTS:
        out[4 * r + 2 * f + m] = name
    return out


def materialise(store: Store, at: datetime, purchase_event: str, scores: bool = True,
                source: str | None = None) -> str:
    """RFM as of `at` into a temp table keyed by user_id; returns the table name.

    Columns: user_id, recency_days, frequency, monetary (fen), r, f, m, segment. For the plan
    compiler: LEFT JOIN it on user_id (users with no purchase before T have no row: null).
    Without `scores` the r, f and m columns are NULL: ranking the users is most of the cost,
    and the segment needs only the means (plan skips it when no rule reads rfm.r/f/m).
    `source`: the tick's per-user summary of the purchase events, if one was built.
    """
    return store.materialise_rfm(to_micros(at), purchase_event, segment_names_by_code(),
                                 scores, source)


def segment_means(conn: Any, source: str, at_us: int) -> SegmentMeans:
    """The exact means (as sums and N) of the purchase summary `source` as of `at_us`, for
    computing each user's segment in an audience query (Env.rfm_means)."""
    return rfm_sql.segment_means(conn, source, at_us, segment_names_by_code())


@dataclass(frozen=True)
class RfmReport:
    at: datetime
    purchase_event: str
    n: int
    sum_recency_days: int
    sum_frequency: int
    sum_monetary_fen: int
    segments: tuple[tuple[str, str, int], ...]  # (name, 中文, users), all eight
    scores: dict[str, dict[int, int]]  # "r" | "f" | "m" -> score 1..5 -> users

    def mean(self, total: int) -> Fraction | None:
        return Fraction(total, self.n) if self.n else None

    def as_json(self) -> dict[str, Any]:
        def num(x: Fraction | None, places: int) -> float | None:
            return None if x is None else round(float(x), places)
        mon = self.mean(self.sum_monetary_fen)
        return {
            "at": self.at.isoformat(),
            "purchase_event": self.purchase_event,
            "users": self.n,
            "means": {"recency_days": num(self.mean(self.sum_recency_days), 4),
                      "frequency": num(self.mean(self.sum_frequency), 4),
                      "monetary": None if mon is None else _yuan(mon)},
            "totals": {"recency_days": self.sum_recency_days, "frequency": self.sum_frequency,
                       "monetary_fen": self.sum_monetary_fen},
            "segments": [{"segment": s, "name_zh": zh, "users": c}
                         for s, zh, c in self.segments],
            "scores": {k: {str(s): v.get(s, 0) for s in range(1, 6)}
                       for k, v in self.scores.items()},
        }

    def format_text(self) -> str:
        lines = [f"RFM as of {self.at.isoformat()} over {self.purchase_event}: "
                 f"{self.n} user(s) with a purchase"]
        if self.n:
            mr, mf = self.mean(self.sum_recency_days), self.mean(self.sum_frequency)
            mon = self.mean(self.sum_monetary_fen)
            assert mr is not None and mf is not None and mon is not None
            lines.append(f"means: recency {float(mr):.2f} days, frequency {float(mf):.2f}, "
                         f"monetary {_yuan(mon)} yuan")
        lines.append("")
        lines.append(f"{'segment':<20} {_pad('中文', 14)} {'users':>9}  {'share':>6}")
        for name, zh, count in self.segments:
            share = f"{100 * count / self.n:5.1f}%" if self.n else "    -"
            lines.append(f"{name:<20} {_pad(zh, 14)} {count:>9}  {share:>6}")
        lines.append("")
        lines.append(f"{'score':<6}" + "".join(f"{s:>10}" for s in range(1, 6)))
        for key in ("r", "f", "m"):
            lines.append(f"{key.upper():<6}" + "".join(f"{self.scores[key].get(s, 0):>10}"
                                                      for s in range(1, 6)))
        return "\n".join(lines)


def _pad(text: str, width: int) -> str:
    """Left-align in a terminal, counting wide (CJK) characters as two columns."""
    cols = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - cols)


def _yuan(fen: Fraction) -> str:
    """A mean in fen, rounded half up to the fen, shown in yuan."""
    return fen_to_yuan(int((fen + Fraction(1, 2)) // 1))


def compute(store: Store, at: datetime, purchase_event: str) -> RfmReport:
    """RFM as of `at`: counts per segment, score distributions and exact totals."""
    materialise(store, at, purchase_event)
    t = store.rfm_totals()
    return RfmReport(
        at=at, purchase_event=purchase_event, n=t.n, sum_recency_days=t.sum_recency_days,
        sum_frequency=t.sum_frequency, sum_monetary_fen=t.sum_monetary_fen,
        segments=tuple((name, zh, t.segments.get(name, 0)) for name, zh, *_ in SEGMENTS),
        scores={"r": dict(t.r), "f": dict(t.f), "m": dict(t.m)})
