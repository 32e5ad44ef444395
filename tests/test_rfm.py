"""RFM in SQL against an independent, slow, pure-Python reading of LANGUAGE.md's definition."""
from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import rfm
from engine.config import build_datamodel
from engine.store import Store, open_store
from engine.store.audience import materialise_summary
from engine.timeutil import to_micros
from store_helpers import T0, make_project, run_cli, run_ingest, write_jsonl

DAY = 86_400_000_000
AT = datetime.fromisoformat(T0)
AT_US = to_micros(AT)
MODEL = build_datamodel({"events": {"order_paid": {}, "checkin": {}}}).value

NAMES = {  # (R near, F high, M high) -> segment, as in LANGUAGE.md's table
    (True, True, True): "important_value", (True, False, True): "important_develop",
    (False, True, True): "important_keep", (False, False, True): "important_retain",
    (True, True, False): "general_value", (True, False, False): "general_develop",
    (False, True, False): "general_keep", (False, False, False): "general_retain",
}


def reference(events: list[tuple[str, str, int, int | None]], at_us: int) -> dict[str, tuple]:
    """The definition, read literally: O(N^2), Fractions, no SQL."""
    per: dict[str, list[tuple[int, int]]] = {}
    for user, typ, ts, amount in events:
        if typ == "order_paid" and ts < at_us:
            per.setdefault(user, []).append((ts, amount or 0))
    metrics = {u: ((at_us - max(t for t, _ in evs)) // DAY, len(evs), sum(a for _, a in evs))
               for u, evs in per.items()}
    n = len(metrics)
    out = {}
    for u, (rec, freq, mon) in metrics.items():
        wr = sum(1 for r2, _, _ in metrics.values() if r2 > rec)
        wf = sum(1 for _, f2, _ in metrics.values() if f2 < freq)
        wm = sum(1 for _, _, m2 in metrics.values() if m2 < mon)
        mean_r = Fraction(sum(v[0] for v in metrics.values()), n)
        mean_f = Fraction(sum(v[1] for v in metrics.values()), n)
        mean_m = Fraction(sum(v[2] for v in metrics.values()), n)
        seg = NAMES[(rec <= mean_r, freq >= mean_f, mon >= mean_m)]
        out[u] = (rec, freq, mon, 1 + (5 * wr) // n, 1 + (5 * wf) // n, 1 + (5 * wm) // n, seg)
    return out


def load(store: Store, events: list[tuple[str, str, int, int | None]]) -> None:
    with store.transaction():
        store.insert_events([(f"e{i}", u, store.type_ids[t], ts, a, None)
                             for i, (u, t, ts, a) in enumerate(events)])


offsets = st.one_of(st.just(0), st.just(1), st.just(-DAY), st.just(DAY),  # at T, after T, ...
                    st.integers(-40 * DAY, 2 * DAY), st.sampled_from([-DAY - 1, -2 * DAY]))
event = st.tuples(st.sampled_from([f"u{i}" for i in range(12)]),
                  st.sampled_from(["order_paid", "order_paid", "checkin"]),
                  offsets,
                  st.one_of(st.none(), st.sampled_from([100, 990, 5000]),
                            st.integers(0, 100_000)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, max_size=60))
def test_rfm_matches_the_reference(raw: list[tuple[str, str, int, int | None]]) -> None:
    events = [(u, t, AT_US + off, a) for u, t, off, a in raw]
    with tempfile.TemporaryDirectory() as d, open_store(Path(d) / "t.db", MODEL) as store:
        load(store, events)
        rfm.materialise(store, AT, "order_paid")
        got = {r[0]: tuple(r[1:]) for r in store.rfm_rows()}
        # as `plan` builds it: from the tick's per-user purchase summary, scores only if read
        summary = materialise_summary(store.conn, AT_US, store.type_ids["order_paid"])
        rfm.materialise(store, AT, "order_paid", source=summary)
        assert {r[0]: tuple(r[1:]) for r in store.rfm_rows()} == got
        rfm.materialise(store, AT, "order_paid", scores=False, source=summary)
        assert {r[0]: tuple(r[1:]) for r in store.rfm_rows()} == {
            u: v[:3] + (None, None, None) + v[6:] for u, v in got.items()}
        report = rfm.compute(store, AT, "order_paid")
    want = reference(events, AT_US)
    assert got == want
    assert report.n == len(want)
    assert dict((s, c) for s, _, c in report.segments) == {
        s: sum(1 for v in want.values() if v[6] == s) for s in NAMES.values()}
    assert sum(report.scores["r"].values()) == len(want)
    if want:
        assert Fraction(report.sum_monetary_fen, report.n) == Fraction(
            sum(v[2] for v in want.values()), len(want))


def test_scores_ties_and_the_best_user(tmp_path: Path) -> None:
    # five buyers: u1..u4 once (tied), u5 three times -> F: four users share score 1, u5 gets 5
    events = [(f"u{i}", "order_paid", AT_US - i * DAY, 1000) for i in range(1, 5)]
    events += [("u5", "order_paid", AT_US - k * DAY - 1, 2000) for k in range(3)]
    events += [("u6", "checkin", AT_US - DAY, None)]  # no order: not counted at all
    with open_store(tmp_path / "t.db", MODEL) as store:
        load(store, events)
        rfm.materialise(store, AT, "order_paid")
        rows = {r[0]: r for r in store.rfm_rows()}
    assert set(rows) == {"u1", "u2", "u3", "u4", "u5"}
    assert [rows[u][5] for u in ("u1", "u2", "u3", "u4", "u5")] == [1, 1, 1, 1, 5]
    # recency: u5 ordered just before T (0 days), u4 four days ago (worst)
    assert rows["u5"][1] == 0 and rows["u5"][4] == 5 and rows["u4"][4] == 1
    assert rows["u5"][7] == "important_value"


def test_events_at_or_after_t_are_invisible_and_nothing_is_stale(tmp_path: Path) -> None:
    events = [("u1", "order_paid", AT_US, 5000), ("u1", "order_paid", AT_US + DAY, 5000),
              ("u2", "order_paid", AT_US - 1, 700)]
    with open_store(tmp_path / "t.db", MODEL) as store:
        load(store, events)
        now = rfm.compute(store, AT, "order_paid")
        later = rfm.compute(store, AT + timedelta(days=2), "order_paid")
        again = rfm.compute(store, AT, "order_paid")
    assert (now.n, now.sum_monetary_fen) == (1, 700)
    assert (later.n, later.sum_frequency, later.sum_monetary_fen) == (2, 3, 10700)
    assert again == now


def test_no_buyers_gives_an_empty_report(tmp_path: Path) -> None:
    with open_store(tmp_path / "t.db", MODEL) as store:
        report = rfm.compute(store, AT, "order_paid")
    assert report.n == 0 and all(c == 0 for _, _, c in report.segments)
    assert "0 user(s)" in report.format_text()
    assert report.as_json()["means"]["monetary"] is None


def test_cli_rfm_json_and_text(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    f = write_jsonl(tmp_path / "e.jsonl", [
        {"user_id": "u1", "type": "order_paid", "ts": "2026-11-19T10:00:00", "amount": 10.01},
        {"user_id": "u2", "type": "order_paid", "ts": "2026-11-01T10:00:00", "amount": 20},
        {"user_id": "u2", "type": "order_paid", "ts": T0, "amount": 20},  # at T: invisible
    ])
    run_ingest(project, "events", f)
    args = ["rfm", "--project", str(tmp_path / "p"), "--at", "2026-11-20T10:00:00"]
    code, output = run_cli(args + ["--format", "json"])
    assert code == 0, output
    out = json.loads(output)
    assert out["users"] == 2 and out["totals"] == {"recency_days": 1 + 19, "frequency": 2,
                                                   "monetary_fen": 3001}
    assert out["means"]["monetary"] == "15.01"  # 15.005 rounds half up to the fen
    assert [s["segment"] for s in out["segments"]] == [
        "important_value", "important_develop", "important_keep", "important_retain",
        "general_value", "general_develop", "general_keep", "general_retain"]
    seg = {s["segment"]: s["users"] for s in out["segments"]}
    # F ties at the mean count as high: u1 near + low spend, u2 far + high spend
    assert seg["general_value"] == 1 and seg["important_keep"] == 1
    code, text = run_cli(args)
    assert code == 0 and "重要价值客户" in text
    code, text = run_cli(["rfm", "--project", str(tmp_path / "p"), "--db",
                          str(tmp_path / "none.db"), "--at", T0])
    assert code == 2 and "no database" in text
