"""RFM computed in the audience query (no RFM table: Env.rfm_means) equals the materialised one.

When no rule reads rfm.r/f/m, `plan` computes rfm.segment and the metrics in each audience
query from the tick's purchase summary, with the means bound as exact sums. For every user,
the value must be the one the RFM table (built from the events, with scores) holds, null for a
user without a purchase before T, including ties with the means and purchases at or after T.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import rfm
from engine.config import build_datamodel
from engine.lang import typed as t
from engine.lang.checker import Scope, check
from engine.store import Store, event_summary, open_store
from engine.store.audience import Compiler, Env, Query, materialise_summary, select_users
from engine.timeutil import from_micros

TZ = ZoneInfo("Asia/Shanghai")
DAY = 86_400_000_000
AT_US = 1_795_572_000_000_000  # 2026-11-25T10:00:00+08:00
MODEL = build_datamodel({"events": {"order_paid": {}, "checkin": {}}}).value
SCOPE = Scope(MODEL, TZ)
FIELDS = ("recency_days", "frequency", "monetary", "segment")
TYPES = {"recency_days": t.NUMBER, "frequency": t.NUMBER, "monetary": t.MONEY,
         "segment": t.STRING}

USERS = [f"u{i}" for i in range(8)]
# few distinct days and amounts, so that metrics often tie with each other and with the means
offsets = st.one_of(st.sampled_from([-DAY, -2 * DAY, -3 * DAY, -DAY - 1, -1, 0, 1, DAY]),
                    st.integers(-6 * DAY, DAY))
event = st.tuples(st.sampled_from(USERS), st.sampled_from(["order_paid", "order_paid",
                                                           "checkin"]),
                  offsets, st.one_of(st.none(), st.sampled_from([0, 1, 2, 3, 100, 200])))


def load(store: Store, events: list[tuple[str, str, int, int | None]]) -> None:
    with store.transaction():
        store.ensure_users(USERS)
        store.insert_events([(f"e{i}", u, store.type_ids[typ], AT_US + off, a, None)
                             for i, (u, typ, off, a) in enumerate(events)])


def inline_values(store: Store, env: Env) -> dict[str, tuple[Any, ...]]:
    """Every user's four fields as the compiler computes them inline (LEFT JOIN: nulls kept)."""
    q = Query()
    comp = Compiler(env, q)
    cols = [comp.expr(t.TRfm(TYPES[f], (0, 0), f)) for f in FIELDS]
    assert not comp.needs_rfm  # no RFM table is read
    joins = " ".join(f"{'JOIN' if inner else 'LEFT JOIN'} {table} ON {on}"
                     for inner, table, on in q.joins)
    sql = f"SELECT u.user_id, {', '.join(cols)} FROM users u {joins}"
    return {r[0]: tuple(r[1:]) for r in comp.run(store.conn, sql)}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, max_size=40), st.booleans())
def test_inline_rfm_equals_the_materialised_table(
        raw: list[tuple[str, str, int, int | None]], stored: bool) -> None:
    with tempfile.TemporaryDirectory() as d, open_store(Path(d) / "t.db", MODEL) as store:
        load(store, raw)
        event_summary.rebuild(store.conn)
        rfm.materialise(store, from_micros(AT_US, TZ), "order_paid")  # from the events
        table = {r[0]: (r[1], r[2], r[3], r[7]) for r in store.rfm_rows()}
        want = {u: table.get(u, (None,) * 4) for u in USERS}
        type_id = store.type_ids["order_paid"]
        summary = materialise_summary(store.conn, AT_US, type_id, stored)
        means = rfm.segment_means(store.conn, summary, AT_US)
        env = Env(AT_US, TZ, store.type_ids, summary=lambda _: summary,
                  stored_summary=stored, rfm_means=lambda: (type_id, means))
        assert inline_values(store, env) == want
        # and through select_users, with the segment both strict (inner join) and not
        for name in rfm.segment_names_by_code():
            for text in (f'rfm.segment == "{name}"',
                         f'rfm.segment == "{name}" or rfm.segment is null'):
                got = select_users(store.conn, check(text, SCOPE), env, has_signup=False)
                assert got == sorted(u for u in USERS if want[u][3] == name
                                     or ("null" in text and want[u][3] is None)), text
        got = select_users(store.conn, check("last(order_paid) is not null and rfm.segment "
                                             "is not null and rfm.frequency == count("
                                             "order_paid)", SCOPE), env, has_signup=False)
        assert got == sorted(u for u in USERS if u in table)
        # the view `plan` builds for the per-user facts (no scores) holds the same rows
        rfm.materialise(store, from_micros(AT_US, TZ), "order_paid", scores=False,
                        source=summary)
        assert {r[0]: (r[1], r[2], r[3], r[7]) for r in store.rfm_rows()} == table
