"""Ingest: round trips, every reject reason, idempotency, time zones, CSV, the CLI's exit codes."""
from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import CannotRun
from engine.ingest import ingest, read
from engine.project import Project
from engine.store import open_store
from engine.timeutil import parse_timestamp, to_micros
from store_helpers import (T0, make_project, read_rejects, run_cli, run_ingest, store_of,
                           write_jsonl)


def micros(text: str) -> int:
    return to_micros(datetime.fromisoformat(text))


GOOD = {"event_id": "e1", "user_id": "u1", "type": "order_paid", "ts": T0, "amount": 80.5,
        "props": {"items": 2, "order_id": "o1"}}


@pytest.fixture()
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_project(tmp_path / "proj")


def test_events_round_trip_in_storage_form(project, tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "e.jsonl", [
        GOOD,
        {"user_id": "u2", "type": "price_drop", "ts": "2026-11-20T09:00:00Z",
         "props": {"item_id": "i1", "item_name": "保温杯", "new_price": "19.90", "old_price": 25}},
        {"user_id": "u2", "type": "checkin", "ts": "2026-11-19"},
    ])
    result = run_ingest(project, "events", f)
    assert (result.total("read"), result.total("accepted"), result.total("rejected")) == (3, 3, 0)
    assert result.exit_code == 0 and result.users_created == 2
    with store_of(project) as store:
        events = {e["type"]: e for e in store.events()}
        assert store.count_users() == 2
    paid = events["order_paid"]
    assert paid["event_id"] == "e1" and paid["user_id"] == "u1"
    assert paid["ts"] == micros(T0) and paid["amount_fen"] == 8050
    assert paid["props"] == {"items": 2, "order_id": "o1"}
    drop = events["price_drop"]
    assert drop["props"]["new_price"] == 1990 and drop["props"]["old_price"] == 2500
    assert drop["ts"] == micros("2026-11-20T09:00:00+00:00")
    assert drop["event_id"].startswith("h:") and drop["amount_fen"] is None
    # a bare date is midnight in the project timezone
    assert events["checkin"]["ts"] == micros("2026-11-19T00:00:00+08:00")


def test_users_round_trip_and_inverted_tags(project, tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "u.jsonl", [
        {"user_id": "u1", "tier": "gold", "tags": ["母婴", "vip"], "points": 120,
         "signup_at": "2026-01-02T03:04:05", "birthday": "1990-05-06", "city": "上海"},
        {"user_id": "u2", "tags": []},
    ])
    assert run_ingest(project, "users", f).exit_code == 0
    with store_of(project) as store:
        u1 = store.user("u1")
        assert u1 is not None
        assert u1["tier"] == "gold" and u1["points"] == 120 and u1["city"] == "上海"
        assert json.loads(u1["tags"]) == ["母婴", "vip"]
        assert u1["signup_at"] == micros("2026-01-02T03:04:05+08:00")
        assert u1["birthday"] == "1990-05-06"
        assert store.list_items("tags") == [("vip", "u1"), ("母婴", "u1")]
    # a partial update changes only the attributes it names, and keeps the index in step
    g = write_jsonl(tmp_path / "u2.jsonl", [{"user_id": "u1", "tags": ["vip", "学生"]}])
    result = run_ingest(project, "users", g)
    assert result.total("duplicates") == 0
    with store_of(project) as store:
        u1 = store.user("u1")
        assert u1 is not None and u1["tier"] == "gold" and u1["points"] == 120
        assert sorted(store.list_items("tags")) == [("vip", "u1"), ("学生", "u1")]
    # the same rows again change nothing
    again = run_ingest(project, "users", g)
    assert again.total("accepted") == 1 and again.total("duplicates") == 1


def test_csv_users_list_cells_and_empty_cells(project, tmp_path: Path) -> None:
    f = tmp_path / "u.csv"
    f.write_text("user_id,tier,tags,points,birthday\n"
                 "u1,gold,母婴|vip|,12,1990-01-02\n"
                 "u2,,,,\n"
                 "u3,platinum,,,\n", encoding="utf-8")
    rejects = tmp_path / "r.jsonl"
    result = run_ingest(project, "users", f, rejects=rejects)
    assert (result.total("accepted"), result.total("rejected")) == (2, 1)
    with store_of(project) as store:
        u1, u2 = store.user("u1"), store.user("u2")
        assert u1 is not None and u2 is not None
        assert json.loads(u1["tags"]) == ["母婴", "vip"] and u1["points"] == 12
        assert u2["tier"] is None and u2["tags"] is None
        assert store.user("u3") is None
    (rej,) = read_rejects(rejects)
    assert rej["line"] == 4 and rej["code"] == "NOT_IN_ENUM" and rej["field"] == "tier"
    assert rej["row"]["tier"] == "platinum"


def test_csv_events_props_columns(project, tmp_path: Path) -> None:
    f = tmp_path / "e.csv"
    f.write_text("event_id,user_id,type,ts,amount,props.items,props.order_id,props\n"
                 f"e1,u1,order_paid,{T0},80.00,2,o1,\n"
                 f"e2,u1,share,{T0},,,,\"{{\"\"target\"\": \"\"group\"\"}}\"\n", encoding="utf-8")
    result = run_ingest(project, "events", f)
    assert result.total("rejected") == 0, result.shown_rejects
    with store_of(project) as store:
        ev = {e["event_id"]: e for e in store.events()}
    assert ev["e1"]["amount_fen"] == 8000 and ev["e1"]["props"] == {"items": 2, "order_id": "o1"}
    assert ev["e2"]["props"] == {"target": "group"}




def ev(**changes: object) -> dict[str, object]:
    out = {k: v for k, v in GOOD.items() if k != "event_id"}
    out.update(changes)
    return {k: v for k, v in out.items() if v is not ...}


EVENT_REJECTS = [
    ("not json", "BAD_JSON", ""),
    ("[1, 2]", "NOT_AN_OBJECT", ""),
    (ev(user_id=...), "MISSING_FIELD", "user_id"),
    (ev(user_id=""), "MISSING_FIELD", "user_id"),
    (ev(user_id=["u1"]), "BAD_USER_ID", "user_id"),
    (ev(type=...), "MISSING_FIELD", "type"),
    (ev(type="order_payed"), "UNKNOWN_EVENT_TYPE", "type"),
    (ev(ts=...), "MISSING_FIELD", "ts"),
    (ev(ts="2026-11-31T10:00:00"), "BAD_TIMESTAMP", "ts"),
    (ev(ts="yesterday"), "BAD_TIMESTAMP", "ts"),
    (ev(ts=1763604000), "BAD_TIMESTAMP", "ts"),
    (ev(amount=12.345), "BAD_MONEY", "amount"),
    (ev(amount="12.3.4"), "BAD_MONEY", "amount"),
    (ev(amount=True), "BAD_MONEY", "amount"),
    (ev(event_id=1.5), "BAD_EVENT_ID", "event_id"),
    (ev(colour="red"), "UNKNOWN_FIELD", "colour"),
    (ev(props=[1]), "BAD_PROPS", "props"),
    (ev(props={"itemz": 1}), "UNKNOWN_PROP", "props.itemz"),
    (ev(props={"items": "two"}), "BAD_VALUE", "props.items"),
    (ev(props={"order_id": 7}), "BAD_VALUE", "props.order_id"),
    (ev(type="share", props={"target": "weibo"}), "NOT_IN_ENUM", "props.target"),
    (ev(type="price_drop", props={"new_price": 1.001}), "BAD_VALUE", "props.new_price"),
]


@pytest.mark.parametrize("row,code,field", EVENT_REJECTS,
                         ids=[f"{c}-{i}" for i, (_, c, _) in enumerate(EVENT_REJECTS)])
def test_every_event_reject_reason(project, tmp_path: Path, row: object, code: str,
                                   field: str) -> None:
    f = write_jsonl(tmp_path / "e.jsonl", [GOOD, row, dict(GOOD, event_id="e2")])
    rejects = tmp_path / "rejects.jsonl"
    result = run_ingest(project, "events", f, rejects=rejects)
    assert (result.total("accepted"), result.total("rejected")) == (2, 1)
    assert result.exit_code == 1
    (rej,) = read_rejects(rejects)
    assert (rej["file"], rej["line"], rej["code"], rej["field"]) == (str(f), 2, code, field)
    assert rej["reason"].startswith(f"{field}: " if field else "")
    expected = row if row != "[1, 2]" else [1, 2]
    assert rej["row"] == expected  # the row itself (parsed, or the raw text)
    with store_of(project) as store:  # the good rows of the same file are kept
        assert {e["event_id"] for e in store.events()} == {"e1", "e2"}


USER_REJECTS = [
    ({"tier": "gold"}, "MISSING_FIELD", "user_id"),
    ({"user_id": "u9", "tierr": "gold"}, "UNKNOWN_ATTRIBUTE", "tierr"),
    ({"user_id": "u9", "tier": "bronze"}, "NOT_IN_ENUM", "tier"),
    ({"user_id": "u9", "tags": "a"}, "BAD_VALUE", "tags"),
    ({"user_id": "u9", "birthday": "1990-02-30"}, "BAD_VALUE", "birthday"),
    ({"user_id": "u9", "points": "100"}, "BAD_VALUE", "points"),
    ({"user_id": "u9", "signup_at": "soon"}, "BAD_VALUE", "signup_at"),
    ("{", "BAD_JSON", ""),
]


@pytest.mark.parametrize("row,code,field", USER_REJECTS,
                         ids=[f"{c}-{i}" for i, (_, c, _) in enumerate(USER_REJECTS)])
def test_every_user_reject_reason(project, tmp_path: Path, row: object, code: str,
                                  field: str) -> None:
    f = write_jsonl(tmp_path / "u.jsonl", [{"user_id": "u1"}, row])
    rejects = tmp_path / "rejects.jsonl"
    result = run_ingest(project, "users", f, rejects=rejects)
    assert (result.total("accepted"), result.total("rejected")) == (1, 1)
    (rej,) = read_rejects(rejects)
    assert (rej["line"], rej["code"], rej["field"]) == (2, code, field)
    with store_of(project) as store:
        assert store.count_users() == 1


def test_csv_row_with_too_many_cells(project, tmp_path: Path) -> None:
    f = tmp_path / "e.csv"
    f.write_text(f"user_id,type,ts\nu1,checkin,{T0}\nu1,checkin,{T0},extra\n", encoding="utf-8")
    rejects = tmp_path / "r.jsonl"
    result = run_ingest(project, "events", f, rejects=rejects)
    assert (result.total("accepted"), result.total("rejected")) == (1, 1)
    assert read_rejects(rejects)[0]["code"] == "BAD_CSV_ROW"


def test_reingest_is_a_no_op(project, tmp_path: Path) -> None:
    rows = [GOOD, ev(type="checkin", props=..., amount=...),
            ev(type="share", props={"target": "group"}, amount=...)]
    f = write_jsonl(tmp_path / "e.jsonl", rows)
    first = run_ingest(project, "events", f)
    assert first.total("duplicates") == 0
    second = run_ingest(project, "events", f)
    assert second.total("accepted") == 3 and second.total("duplicates") == 3
    # the same content written differently has the same content hash
    g = write_jsonl(tmp_path / "g.jsonl", [
        {"ts": "2026-11-20T02:00:00Z", "type": "share", "props": {"target": "group"},
         "user_id": "u1"}])
    assert run_ingest(project, "events", g).total("duplicates") == 1
    with store_of(project) as store:
        assert store.count_events() == 3


def test_same_event_id_twice_in_one_file_keeps_the_first(project, tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "e.jsonl", [GOOD, dict(GOOD, amount=99)])
    result = run_ingest(project, "events", f)
    assert result.total("duplicates") == 1
    with store_of(project) as store:
        (only,) = store.events()
    assert only["amount_fen"] == 8050


def test_naive_timestamps_are_read_in_the_project_timezone(tmp_path: Path) -> None:
    shanghai = make_project(tmp_path / "sh")
    f = write_jsonl(tmp_path / "e.jsonl", [
        ev(type="checkin", props=..., amount=..., ts="2026-11-20T10:00:00"),
        ev(type="checkin", props=..., amount=..., ts="2026-11-20T10:00:00+08:00", user_id="u2"),
        ev(type="checkin", props=..., amount=..., ts="2026-11-20T02:00:00Z", user_id="u3"),
    ])
    run_ingest(shanghai, "events", f)
    with store_of(shanghai) as store:
        assert {e["ts"] for e in store.events()} == {micros("2026-11-20T10:00:00+08:00")}
    berlin = make_project(tmp_path / "be", timezone="Europe/Berlin")
    run_ingest(berlin, "events", f)
    with store_of(berlin) as store:
        by_user = {e["user_id"]: e["ts"] for e in store.events()}
    assert by_user["u1"] == micros("2026-11-20T10:00:00+01:00")  # winter time in Berlin
    assert by_user["u2"] == by_user["u3"] == micros("2026-11-20T10:00:00+08:00")


def test_parallel_workers_give_the_same_result(tmp_path: Path) -> None:
    rows = [ev(event_id=f"e{i}", user_id=f"u{i % 7}", amount=i / 100) for i in range(3000)]
    rows[1500] = ev(ts="nope")
    f = write_jsonl(tmp_path / "e.jsonl", rows)
    results = []
    for workers in (0, 2):
        p = make_project(tmp_path / f"w{workers}")
        r = run_ingest(p, "events", f, rejects=tmp_path / f"r{workers}.jsonl", workers=workers)
        with store_of(p) as store:
            results.append((r.total("accepted"), r.total("rejected"), r.users_created,
                            [tuple(e.values()) for e in store.events()]))
        assert read_rejects(tmp_path / f"r{workers}.jsonl")[0]["line"] == 1501
    assert results[0] == results[1] and results[0][:3] == (2999, 1, 7)


def _everything(p: Project) -> dict[str, list[tuple[object, ...]]]:
    with store_of(p) as store:
        return {t: sorted(store.conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in ("events", "users", "consent_accepts", "event_summary",
                          "event_summary_state")}


def test_workers_hand_rows_over_as_shards_with_the_same_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer copies the workers' shards in C (engine/store/shard.py): the same events,
    users, consent accepts, summary and counts as checking in this process, with an event_id
    repeated inside a chunk, across chunks and files, and a second load into stored events
    (re-sent rows and new ones, so the summary is kept both ways)."""
    monkeypatch.setattr(read, "CHUNK_BYTES", 4096)  # many chunks, so many shards
    first = [ev(event_id=f"e{i}", user_id=f"u{i % 11}", amount=i / 100) for i in range(300)]
    first[10] = ev(event_id="e3", user_id="other", amount=1)  # same id later in the chunk
    first[250] = ev(event_id="e7", user_id="later", amount=2)  # and in another chunk
    first += [ev(event_id=f"s{i}", type="subscribe_authorized", user_id=f"u{i}",
                 props={"template": "order_paid"}) for i in range(5)]
    first.append(ev(ts="nope"))
    second = first[100:160] + [ev(event_id=f"n{i}", user_id=f"new{i % 3}") for i in range(50)]
    f1 = write_jsonl(tmp_path / "a.jsonl", first)
    f2 = write_jsonl(tmp_path / "b.jsonl", first[:20] + [ev(event_id="s9", user_id="u1")])
    f3 = write_jsonl(tmp_path / "c.jsonl", second)
    seen = []
    for workers in (0, 2):
        p = make_project(tmp_path / f"w{workers}")
        results = [run_ingest(p, "events", f1, f2, workers=workers),
                   run_ingest(p, "events", f3, workers=workers)]
        seen.append(([(r.as_json(), r.exit_code) for r in results], _everything(p)))
    assert seen[0] == seen[1]
    (load1, code1), (load2, code2) = seen[1][0]
    assert (code1, code2) == (1, 0)
    assert (load1["accepted"], load1["rejected"], load1["duplicates"]) == (326, 1, 22)
    assert (load2["accepted"], load2["duplicates"]) == (110, 60)
    assert load1["users_created"] == 13 and load2["users_created"] == 3
    events = {e[0]: e for e in seen[1][1]["events"]}
    assert events["e3"][1] == "u3" and events["e7"][1] == "u7"  # the first row of an id wins
    assert len(seen[1][1]["consent_accepts"]) == 5


def test_a_clean_bulk_load_adds_each_shards_accepts_and_users(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shards without duplicates add their own consent accepts (the trigger is suspended and
    nothing is backfilled at the end) and their users come from the stored events: the same
    tables as checking in this process."""
    from engine.store import consent

    monkeypatch.setattr(read, "CHUNK_BYTES", 2048)
    rows = [ev(event_id=f"s{i}", type="subscribe_authorized", user_id=f"u{i % 13}",
               props={"template": ["order_paid", "cart"][i % 2]}) if i % 3 == 0 else
            ev(event_id=f"e{i}", user_id=f"v{i % 17}") for i in range(400)]
    f = write_jsonl(tmp_path / "e.jsonl", rows)
    backfills: list[bool] = []
    resume = consent.resume_triggers

    def spy(conn: Any, statements: list[str], backfill: bool = True) -> None:
        backfills.append(backfill)
        resume(conn, statements, backfill)

    monkeypatch.setattr(consent, "resume_triggers", spy)
    seen = []
    for workers in (0, 2):
        p = make_project(tmp_path / f"w{workers}")
        r = run_ingest(p, "events", f, workers=workers)
        seen.append((r.as_json()["users_created"], _everything(p)))
    assert seen[0] == seen[1] and seen[1][0] == 13 + 17
    assert len(seen[1][1]["consent_accepts"]) == 134
    assert backfills == [True, False]  # in this process: at the end; shards: each their own


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bulk_load_sorts_its_index_builds_on_disk(tmp_path: Path, workers: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard input keeps statement journals in memory while rows are written; the index
    builds at the end must sort through temp files again (temp_store FILE = 1), which SQLite
    allows inside the transaction only if no TEMP table was used: what the load notes (users
    to create) lives in an attached in-memory database instead."""
    from engine.store import bulk

    modes: list[int] = []
    build = bulk._build_indexes

    def spy(conn: Any, statements: list[str]) -> None:
        build(conn, statements)
        modes.append(conn.execute("PRAGMA temp_store").fetchone()[0])

    monkeypatch.setattr(bulk, "_build_indexes", spy)
    p = make_project(tmp_path / "p")
    data = "".join(json.dumps(ev(event_id=f"e{i}", user_id=f"u{i % 5}")) + "\n"
                   for i in range(50)).encode()
    r = ingest(p, "events", ["-"], stdin=__import__("io").BytesIO(data), workers=workers)
    assert (r.total("accepted"), r.users_created, modes) == (50, 5, [1])


def test_jsonl_chunks_are_bounded_and_keep_line_numbers(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "CHUNK_BYTES", 100)
    data = b"".join(b'{"n": %d}\n' % i for i in range(200)) + b'{"n": "last"}'
    chunks = list(read.jsonl_chunks(__import__("io").BytesIO(data)))
    assert all(len(c.data) <= 100 + 20 for c in chunks) and len(chunks) > 10
    lines = [(c.first_line + i, line) for c in chunks
             for i, line in enumerate(c.data.split(b"\n")) if line]
    assert lines[150] == (151, b'{"n": 150}') and lines[-1] == (201, b'{"n": "last"}')


def test_unknown_format_and_missing_file_cannot_run(project, tmp_path: Path) -> None:
    (tmp_path / "e.txt").write_text("x", encoding="utf-8")
    with pytest.raises(CannotRun, match="format"):
        run_ingest(project, "events", tmp_path / "e.txt")
    with pytest.raises(CannotRun, match="no such file"):
        run_ingest(project, "events", tmp_path / "missing.jsonl")


# ---- the command line, through the real error boundary ---------------------------------------
def test_cli_exit_codes(tmp_path: Path) -> None:
    make_project(tmp_path / "p")
    good = write_jsonl(tmp_path / "good.jsonl", [GOOD])
    bad = write_jsonl(tmp_path / "bad.jsonl", [GOOD, ev(type="nope")])
    base = ["ingest", "events", "--project", str(tmp_path / "p")]
    code, out = run_cli(base + [str(good)])
    assert code == 0 and "1 read, 1 accepted, 0 rejected" in out
    code, out = run_cli(base + [str(bad), "--rejects", str(tmp_path / "r.jsonl")])
    assert code == 1 and "UNKNOWN_EVENT_TYPE" in out and "bad.jsonl:2" in out
    assert len(read_rejects(tmp_path / "r.jsonl")) == 1
    code, out = run_cli(base + [str(tmp_path / "missing.jsonl")])
    assert code == 2 and "no such file" in out
    code, out = run_cli(["ingest", "events", "--project", str(tmp_path / "nowhere"), str(good)])
    assert code == 2


def test_cli_reads_stdin_and_writes_json(tmp_path: Path) -> None:
    make_project(tmp_path / "p")
    db = tmp_path / "other.db"
    code, out = run_cli(["ingest", "events", "-", "--project", str(tmp_path / "p"), "--db",
                        str(db), "--format", "json"], input=json.dumps(GOOD) + "\n")
    assert code == 0 and db.is_file()
    assert json.loads(out)["accepted"] == 1


def test_cli_broken_datamodel_cannot_run(tmp_path: Path) -> None:
    make_project(tmp_path / "p")
    (tmp_path / "p" / "datamodel.yaml").write_text("user:\n  tier: {type: strin}\n",
                                                   encoding="utf-8")
    good = write_jsonl(tmp_path / "good.jsonl", [GOOD])
    code, out = run_cli(["ingest", "events", "--project", str(tmp_path / "p"), str(good)])
    assert code == 2 and "datamodel.yaml" in out


def test_parse_timestamp_agrees_with_the_fast_path() -> None:
    from zoneinfo import ZoneInfo

    from engine.ingest.rows import timestamp_converter
    tz = ZoneInfo("America/New_York")
    conv = timestamp_converter(tz)
    for text in ["2026-03-08T01:59:59", "2026-03-08T03:00:00", "2026-11-01T01:30:00",
                 "2026-11-20T10:00:00.250000+08:00", "2026-11-20T10:00:07Z", "2026-11-20",
                 "2026-11-20T10:00:07-03:30"]:
        assert conv(text, False) == to_micros(parse_timestamp(text, tz)), text
    assert conv("2026-11-20T10:00:07+00:00", False) == to_micros(
        datetime(2026, 11, 20, 10, 0, 7, tzinfo=timezone.utc))


def test_every_reject_code_is_documented() -> None:
    import re

    root = Path(__file__).resolve().parent.parent
    source = "".join(p.read_text(encoding="utf-8")
                     for p in (root / "engine" / "ingest").glob("*.py"))
    codes = set(re.findall(r'Bad\("([A-Z_]+)"', source)) | set(
        re.findall(r'"(BAD_JSON|NOT_IN_ENUM|BAD_VALUE)"', source))
    docs = (root / "docs" / "data.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", docs, flags=re.M))
    assert codes and codes == documented


def test_rows_of_one_user_apply_in_file_order(project, tmp_path: Path) -> None:
    rows = [{"user_id": "u1", "tier": "gold", "city": "上海", "tags": ["a"]},
            {"user_id": "u1", "tier": "silver"},
            {"user_id": "u1", "tier": "black_gold", "city": "北京", "tags": ["b"]},
            {"user_id": "u2", "tier": "gold"}]
    f = write_jsonl(tmp_path / "u.jsonl", rows)
    run_ingest(project, "users", f)  # u1 is new: inserted, then updated twice
    run_ingest(project, "users", write_jsonl(tmp_path / "v.jsonl", rows[1:3] + [rows[1]]))
    with store_of(project) as store:
        u1, u2 = store.user("u1"), store.user("u2")
        assert u1 is not None and u2 is not None
        assert (u1["tier"], u1["city"], json.loads(u1["tags"])) == ("silver", "北京", ["b"])
        assert u2["tier"] == "gold" and u2["city"] is None
        assert store.list_items("tags") == [("b", "u1")]


def test_engine_db_environment_variable_chooses_the_database(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    make_project(tmp_path / "p")
    db = tmp_path / "from-env.db"
    monkeypatch.setenv("ENGINE_DB", str(db))
    good = write_jsonl(tmp_path / "good.jsonl", [GOOD])
    code, _ = run_cli(["ingest", "events", "--project", str(tmp_path / "p"), str(good)])
    assert code == 0 and db.is_file() and not (tmp_path / "p" / "engine.db").exists()


# ---- property: whatever valid rows go in come back in storage form ---------------------------
_ROUND: dict[str, object] = {}


def _shared_project():  # type: ignore[no-untyped-def]
    if "p" not in _ROUND:
        _ROUND["dir"] = tempfile.TemporaryDirectory()
        _ROUND["p"] = make_project(Path(_ROUND["dir"].name) / "p")  # type: ignore[attr-defined]
    return _ROUND["p"]


instants = st.integers(1_700_000_000, 1_900_000_000)  # seconds since the epoch
offsets = st.sampled_from([None, "Z", "+08:00", "-05:30", "+00:00"])
fen = st.integers(-10**9, 10**9)
event_rows = st.tuples(
    st.text("abcxyz0189_-", min_size=1, max_size=6),                 # user_id
    st.sampled_from(["order_paid", "checkin", "share", "price_drop"]),
    instants, offsets, st.one_of(st.none(), fen), st.booleans(),       # ts, offset, amount, as str
    st.sampled_from(["friend", "group", "moments"]), fen, fen,
    st.text(min_size=0, max_size=8))                                  # item name (any unicode)


def _ts_text(secs: int, offset: str | None) -> str:
    tz = {None: 8, "Z": 0, "+08:00": 8, "-05:30": -5.5, "+00:00": 0}[offset]
    local = datetime.fromtimestamp(secs, timezone.utc) + timedelta(hours=tz)
    return local.strftime("%Y-%m-%dT%H:%M:%S") + ("" if offset is None else offset)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_rows, min_size=1, max_size=25))
def test_ingested_events_round_trip(rows: list[tuple]) -> None:  # type: ignore[type-arg]
    project = _shared_project()
    lines, expected = [], {}
    for i, (uid, typ, secs, off, amount, as_str, target, new, old, name) in enumerate(rows):
        row: dict[str, object] = {"event_id": f"e{i}", "user_id": uid, "type": typ,
                                  "ts": _ts_text(secs, off)}
        props: dict[str, object] = {}
        if amount is not None:
            yuan = Decimal(amount) / 100
            row["amount"] = str(yuan) if as_str else float(yuan)
        if typ == "share":
            props = {"target": target}
        elif typ == "price_drop":
            props = {"new_price": str(Decimal(new) / 100), "old_price": float(Decimal(old) / 100),
                     "item_name": name}
        elif typ == "order_paid":
            props = {"items": new % 7, "order_id": name}
        if props:
            row["props"] = props
        lines.append(row)
        stored = dict(props)
        if typ == "price_drop":
            stored.update(new_price=new, old_price=old)
        expected[f"e{i}"] = (uid, typ, secs * 1_000_000, amount, stored)
    with tempfile.TemporaryDirectory() as d:
        f = write_jsonl(Path(d) / "e.jsonl", lines)
        result = ingest_db(project, f, Path(d) / "t.db")
        assert result.total("rejected") == 0, result.shown_rejects
        with open_store(Path(d) / "t.db", project.datamodel) as store:
            got = {e["event_id"]: (e["user_id"], e["type"], e["ts"], e["amount_fen"], e["props"])
                   for e in store.events()}
    assert got == expected


def ingest_db(project, f: Path, db: Path):  # type: ignore[no-untyped-def]
    return ingest(project, "events", [str(f)], db=str(db), workers=0)
