"""The compiled fast path of event ingest agrees with the reference checker, row for row."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.ingest.fast import fast_events
from engine.ingest.rows import Bad, Spec, event_checker
from store_helpers import make_project, run_ingest, write_jsonl

DATAMODEL = """
user:
  tier: {type: string, enum: [silver, gold]}
events:
  order_paid: {props: {items: {type: number}, order_id: {type: string}}}
  checkin: {}
  subscribe_authorized: {props: {template: {type: string}}}
  kitchen:
    props:
      s: {type: string}
      e: {type: string, enum: [a, b]}
      n: {type: number}
      b: {type: bool}
      m: {type: money}
      t: {type: timestamp}
      d: {type: date}
      ls: {type: list<string>}
      ln: {type: list<number>}
      z_last: {type: string}
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Spec:
    project = make_project(tmp_path_factory.mktemp("fast") / "proj", datamodel=DATAMODEL)
    ids = {name: i + 1 for i, name in enumerate(project.datamodel.events)}
    return Spec.build(project.datamodel, project.config.timezone, ids)


def both(spec: Spec, raw: bytes) -> tuple[Any, Any]:
    """(fast result or None when it declined, check result or the Bad it raised)."""
    try:
        fast: Any = fast_events(spec).row(raw)
    except Exception:  # noqa: BLE001 - declining is allowed, for any reason
        fast = None
    try:
        ref: Any = event_checker(spec).check(orjson.loads(raw))
    except Bad as bad:
        ref = bad
    return fast, ref


COMMON = [
    {"event_id": "e1", "user_id": "u1", "type": "order_paid", "ts": "2026-11-20T10:00:07+08:00",
     "amount": 80.5, "props": {"items": 2, "order_id": "o1"}},
    {"user_id": "u1", "type": "order_paid", "ts": "2026-11-20T10:00:07Z", "amount": "12.30",
     "props": {"order_id": "o1", "items": 1.5}},
    {"user_id": "u2", "type": "checkin", "ts": "2026-11-20T10:00:00"},
    {"user_id": "u2", "type": "checkin", "ts": "2026-11-20", "props": {}},
    {"user_id": "u3", "type": "subscribe_authorized", "ts": "2026-11-20T10:00:00.250000-05:00",
     "props": {"template": "order_paid"}, "event_id": None, "amount": None},
    {"user_id": "u4", "type": "kitchen", "ts": "2026-11-20T10:00:00+08:00",
     "props": {"s": "x\u0000\u2028\"", "e": "b", "n": -3, "b": False, "m": 0.1,
               "t": "2026-11-20T10:00:00", "d": "2026-02-28", "ls": ["p", "q"], "ln": [1, 2.5],
               "z_last": "再来"}},
    {"user_id": "u4", "type": "kitchen", "ts": "2026-11-20T10:00:00+08:00",
     "props": {"s": None, "e": None}},
]


@pytest.mark.parametrize("row", COMMON, ids=range(len(COMMON)))
def test_common_rows_take_the_fast_path_with_the_same_result(spec: Spec, row: Any) -> None:
    raw = json.dumps(row, ensure_ascii=False).encode()
    fast, ref = both(spec, raw)
    assert not isinstance(ref, Bad), ref.reason
    assert fast == ref


ODD = [
    b'{"user_id": 7, "type": "checkin", "ts": "2026-11-20"}',  # int user id: check converts
    b'{"user_id": "u", "type": "checkin", "ts": "2026-11-20", "event_id": 12}',
    b'{"user_id": "", "type": "checkin", "ts": "2026-11-20"}',
    b'{"user_id": "u", "type": "checkin", "ts": ""}',
    b'{"user_id": "u", "type": "checkin", "ts": "2026-11-31T10:00:00"}',
    b'{"user_id": "u", "type": "checkin", "ts": "2026-11-20T10:00:00", "amount": true}',
    b'{"user_id": "u", "type": "checkin", "ts": "2026-11-20T10:00:00", "amount": 1.005}',
    b'{"user_id": "u", "type": "checkin", "ts": "2026-11-20T10:00:00", "amount": ""}',
    b'{"user_id": "u", "type": "checkin", "ts": "2026-11-20T10:00:00", "props": {"x": 1}}',
    b'{"user_id": "u", "type": "kitchen", "ts": "2026-11-20T10:00:00", "props": {"e": "c"}}',
    b'{"user_id": "u", "type": "kitchen", "ts": "2026-11-20T10:00:00", "props": {"n": true}}',
    b'{"user_id": "u", "type": "kitchen", "ts": "2026-11-20T10:00:00", "props": {"n": 1e400}}',
    b'{"user_id": "u", "type": "kitchen", "ts": "2026-11-20T10:00:00", '
    b'"props": {"n": 123456789012345678901234567890}}',
    b'{"user_id": "u", "type": "kitchen", "ts": "2026-11-20T10:00:00", "props": {"d": "x"}}',
    b'{"user_id": "u", "type": "kitchen", "ts": "2026-11-20T10:00:00", "props": {"s": "\\ud800"}}',
    b'{"user_id": "u", "type": "nope", "ts": "2026-11-20T10:00:00"}',
    b'{"user_id": "u", "ts": "2026-11-20T10:00:00"}',
    b'{"user_id": "u", "type": "checkin", "ts": "2026-11-20T10:00:00", "colour": 1}',
    b'{"user_id": "u", "type": "checkin", "type": "order_paid", "ts": "2026-11-20T10:00:00"}',
]


@pytest.mark.parametrize("raw", ODD, ids=range(len(ODD)))
def test_odd_rows_are_left_to_check(spec: Spec, raw: bytes) -> None:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        with pytest.raises(Exception):
            fast_events(spec).row(raw)
        return
    fast, ref = both(spec, raw)
    assert fast is None or fast == ref


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
                    st.sampled_from(["a", "b", "2026-11-20", "2026-11-20T10:00:00Z", "12.30",
                                     "1.001", "", "order_paid"]))
_value = st.one_of(_scalar, st.lists(_scalar, max_size=3))
_props = st.dictionaries(st.sampled_from(["s", "e", "n", "b", "m", "t", "d", "ls", "ln",
                                          "z_last", "items", "order_id", "template", "zz"]),
                         _value,
                         max_size=4)
_row = st.fixed_dictionaries(
    {"user_id": st.one_of(st.just("u1"), _scalar),
     "type": st.sampled_from(["order_paid", "checkin", "subscribe_authorized", "kitchen", "x"]),
     "ts": st.one_of(st.sampled_from(["2026-11-20T10:00:07+08:00", "2026-11-20T10:00:07",
                                      "2026-11-20", "2026-03-29T02:30:00", "bad"]), _scalar)},
    optional={"event_id": st.one_of(st.just("e9"), _scalar), "amount": _scalar,
              "props": st.one_of(_props, _value), "other": _scalar})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=_row)
def test_fast_path_never_disagrees_with_check(spec: Spec, row: dict[str, Any]) -> None:
    raw = json.dumps(row, ensure_ascii=False).encode()
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return  # orjson's own limits (e.g. integers over 64 bits): BAD_JSON either way
    fast, ref = both(spec, raw)
    if fast is not None:
        assert not isinstance(ref, Bad), f"fast path accepted a row check rejects: {ref.reason}"
        assert fast == ref


def test_counts_ignore_rows_written_by_triggers(tmp_path: Path) -> None:
    """consent_grants is kept by a trigger on events: its rows are not events."""
    project = make_project(tmp_path / "proj")
    rows = [{"event_id": f"e{i}", "user_id": f"u{i % 3}", "type": "subscribe_authorized",
             "ts": f"2026-11-20T10:00:{i:02d}+08:00", "props": {"template": "order_paid"}}
            for i in range(20)]
    f = write_jsonl(tmp_path / "e.jsonl", rows)
    first = run_ingest(project, "events", f)
    assert (first.total("accepted"), first.total("duplicates"), first.users_created) == (20, 0, 3)
    again = run_ingest(project, "events", f)
    assert (again.total("accepted"), again.total("duplicates"), again.users_created) == (20, 20, 0)
