"""`engine daemon`: the real daemon as a subprocess, against the fake WeChat server.

Each test builds a small project in a temporary directory (three users who granted consent,
channels pointing at the fake), starts `engine daemon` and watches its JSON log lines, the
database and the fake's record of accepted sends. Waits poll with deadlines.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from zoneinfo import ZoneInfo

import httpx
import pytest

from engine import cron, lease
from engine.durations import parse_duration
from engine.ingest import ingest
from engine.project import load_project
from engine.resources import example_project
from engine.rules.model import Trigger
from engine.slot_trigger import SlotTrigger
from engine.store import ledger, open_project_store
from engine.store import lease as lease_sql
from engine.timeutil import to_micros

from conftest import REPO
from fake_wechat import FakeWeChat

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

OPENIDS = {f"u{i}": f"oFake{i}" + "x" * 22 for i in range(3)}  # 28 characters, like WeChat's
PHONES = {f"u{i}": f"1391234567{i}" for i in range(3)}
TOKEN = "test-token-4b1d"

TICK_RULE = """id: tick
category: transactional
trigger: {every: 2s}
fire: every_time
audience: user.tier == "gold"
actions:
  - message:
      channel: wechat_subscribe
      template: checkin_reward
      data: {thing1: 签到提醒, number2: "1"}
"""

CHECKIN_RULE = """id: checkin-thanks
category: transactional
trigger: {event: checkin}
fire: every_time
actions:
  - message:
      channel: wechat_subscribe
      template: checkin_reward
      data: {thing1: 签到成功, number2: "1"}
"""


def tag_rule(rule_id: str, every: str = "1s", audience: str = 'user.tier == "gold"') -> str:
    return (f"id: {rule_id}\ncategory: transactional\ntrigger: {{every: {every}}}\n"
            f"fire: every_time\naudience: {audience}\nactions:\n  - tag: {{add: {rule_id}}}\n")


def make_project(tmp: Path, url: str, rules: dict[str, str],
                 events: Sequence[dict[str, Any]] = ()) -> Path:
    root = tmp / "shop"
    (root / "rules").mkdir(parents=True)
    for name in ("datamodel.yaml", "templates.yaml", "coupons.yaml"):
        shutil.copyfile(example_project() / name, root / name)
    (root / "engine.yaml").write_text(
        "timezone: Asia/Shanghai\ndatabase: engine.db\npurchase_event: order_paid\n"
        "channels:\n  wechat_subscribe: {appid: wx0123456789abcdef, secret_env: "
        f'WECHAT_APPSECRET, openid_field: openid, base_url: "{url}"}}\n', "utf-8")
    for name, text in rules.items():
        (root / "rules" / name).write_text(text, "utf-8")
    day_ago = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    users = [{"user_id": u, "openid": OPENIDS[u], "phone": PHONES[u], "tier": "gold"}
             for u in OPENIDS]
    consent = [{"event_id": f"consent-{u}-{k}", "user_id": u, "type": "subscribe_authorized",
                "ts": day_ago, "props": {"template": "checkin_reward"}}
               for u in OPENIDS for k in range(60)]
    (tmp / "users.jsonl").write_text("".join(json.dumps(u) + "\n" for u in users), "utf-8")
    (tmp / "events.jsonl").write_text("".join(json.dumps(e) + "\n"
                                              for e in [*consent, *events]), "utf-8")
    project = load_project(root)
    assert ingest(project, "users", [str(tmp / "users.jsonl")], workers=0).exit_code == 0
    assert ingest(project, "events", [str(tmp / "events.jsonl")], workers=0).exit_code == 0
    return root


def wait_until(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


class Daemon:
    """`engine daemon` in a subprocess; its stderr (JSON lines) is collected as it comes."""

    def __init__(self, root: Path, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import cli; cli.main()", "daemon", "--project", str(root),
             *args], cwd=str(REPO), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, encoding="utf-8")
        self.raw: list[str] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.lock:
                self.raw.append(line)

    @property
    def lines(self) -> list[dict[str, Any]]:
        with self.lock:
            raw = list(self.raw)
        return [json.loads(line) for line in raw if line.startswith("{")]

    def text(self) -> str:
        with self.lock:
            return "".join(self.raw)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [x for x in self.lines if x.get("event") == name]

    def wait_log(self, name: str, timeout: float = 15.0,
                 where: Callable[[dict[str, Any]], bool] = lambda x: True) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.proc.poll() is not None and not self.reader.is_alive():
                raise AssertionError(f"the daemon exited ({self.proc.returncode}):\n"
                                     + self.text()[-3000:])
            return next((x for x in self.events(name) if where(x)), None)
        return wait_until(f"log event `{name}`", found, timeout)  # type: ignore[no-any-return]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.wait_log('http_listening')['port']}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def start(fake_wechat: FakeWeChat) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def run(root: Path, *args: str, token: bool = False) -> Daemon:
        env = {**os.environ, **fake_wechat.env(), "PYTHONIOENCODING": "utf-8"}
        env.pop("ENGINE_HTTP_TOKEN", None)
        env.pop("ENGINE_DEBUG", None)
        if token:
            env["ENGINE_HTTP_TOKEN"] = TOKEN
        d = Daemon(root, env, "--event-interval", "1s", "--deliver-interval", "1s", *args)
        started.append(d)
        return d

    yield run
    for d in started:
        d.kill()


def db_rows(root: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(root / "engine.db", timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# -- Prometheus text exposition, parsed strictly enough to catch a malformed line ----------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(,|$)')


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    assert text.endswith("\n")
    types: dict[str, str] = {}
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels_text, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or (family in types and types[family] == "histogram"), \
            f"sample {name} before its # TYPE"
        labels: dict[str, str] = {}
        if labels_text:
            pos = 0
            while pos < len(labels_text):
                lm = LABEL.match(labels_text, pos)
                assert lm, f"bad labels in {line!r}"
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        out.setdefault(name, []).append((labels, float(value)))
    for family, kind in types.items():  # histogram buckets are cumulative and end in +Inf
        if kind != "histogram":
            continue
        series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        for labels, v in out.get(family + "_bucket", []):
            key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
            series.setdefault(key, []).append((float(labels["le"]), v))
        for key, buckets in series.items():
            counts = [v for _, v in buckets]
            assert counts == sorted(counts) and buckets[-1][0] == float("inf")
            total = [v for lb, v in out[family + "_count"]
                     if tuple(sorted(lb.items())) == key]
            assert total == [counts[-1]]
    return out


def value(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str,
          **labels: str) -> float:
    return sum(v for lb, v in metrics.get(name, []) if all(lb.get(k) == x
                                                           for k, x in labels.items()))


# -- the tests --------------------------------------------------------------------------------

def test_a_seconds_schedule_fires_on_time_and_metrics_parse(
        tmp_path: Path, fake_wechat: FakeWeChat, start: Callable[..., Daemon]) -> None:
    root = make_project(tmp_path, fake_wechat.url, {"tick.yaml": TICK_RULE})
    d = start(root, "--http", "127.0.0.1:0")
    began = d.wait_log("started")
    began_us = to_micros(datetime.fromisoformat(began["ts"]))

    def on_time_fires() -> list[tuple[Any, ...]]:
        rows = db_rows(root, "SELECT occurrence, tick_at FROM fires WHERE rule_id = 'tick'")
        return [r for r in rows if to_micros(datetime.fromisoformat(r[0])) > began_us]
    fires = wait_until("two slots after the start", lambda: len(
        {r[0] for r in on_time_fires()}) >= 2 and on_time_fires())
    for occurrence, tick_at in fires:
        slot = to_micros(datetime.fromisoformat(occurrence))
        assert datetime.fromisoformat(occurrence).second % 2 == 0
        assert 0 <= tick_at - slot < 1_500_000, "ticked more than 1.5 s after its slot"
    items = {r[0] for r in db_rows(root, "SELECT item_id FROM outbox")}
    wait_until("sends accepted by the fake", lambda: len(
        {a.item_id for a in fake_wechat.accepted_for("subscribe")} & items) >= 6)
    assert {a.body["touser"] for a in fake_wechat.accepted_for("subscribe")} == \
        set(OPENIDS.values())

    with httpx.Client(base_url=d.url, timeout=10) as http:
        health = http.get("/healthz")
        assert health.status_code == 200 and health.json()["scheduled"] == ["tick"]
        text = http.get("/metrics")
        assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
        metrics = parse_metrics(text.text)
        refused = http.post("/events", content=b"[]", headers={"Authorization": "Bearer x"})
    assert value(metrics, "zailai_fires_total", rule="tick", outcome="fire") >= 6
    assert value(metrics, "zailai_sends_total", channel="wechat_subscribe", status="sent") >= 6
    assert value(metrics, "zailai_tick_duration_seconds_count", kind="schedule") >= 2
    assert value(metrics, "zailai_rule_last_tick_timestamp_seconds", rule="tick") > 0
    assert value(metrics, "zailai_outbox_items", channel="wechat_subscribe", state="sent") >= 6
    assert "zailai_outbox_depth" in metrics and value(metrics, "zailai_up") == 1
    assert refused.status_code == 503 and "ENGINE_HTTP_TOKEN" in refused.json()["error"]

    assert d.stop() == 0, d.text()[-3000:]
    lines = d.text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line is one JSON object
    decisions = d.events("decision")
    assert decisions and {"rule", "user", "run", "decision"} <= set(decisions[0])
    sends = d.events("send")
    assert sends and all("****" in s["recipient"] for s in sends)
    for secret in [*OPENIDS.values(), *PHONES.values(), fake_wechat.env()["WECHAT_APPSECRET"]]:
        assert secret not in d.text()
    assert d.events("stopped")[-1]["exit_code"] == 0


def test_events_posted_over_http_trigger_an_event_rule(
        tmp_path: Path, fake_wechat: FakeWeChat, start: Callable[..., Daemon]) -> None:
    root = make_project(tmp_path, fake_wechat.url, {"checkin.yaml": CHECKIN_RULE})
    d = start(root, "--http", "127.0.0.1:0", "--event-lag", "1s", token=True)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=d.url, timeout=10) as http:
        assert http.post("/events", json=[]).status_code == 401
        assert http.post("/events", json=[],
                         headers={"Authorization": "Bearer nope"}).status_code == 401
        now = datetime.now(timezone.utc)
        good = {"event_id": "ck-1", "user_id": "u1", "type": "checkin", "ts": now.isoformat()}
        bad = {"event_id": "ck-2", "user_id": "u2", "type": "chekin", "ts": now.isoformat()}
        worse = {"event_id": "ck-3", "user_id": "u2", "type": "checkin", "ts": "yesterday"}
        posted = time.monotonic()
        answer = http.post("/events", json=[good, bad, worse], headers=auth)
        assert answer.status_code == 422  # some rows rejected; the good one is kept
        body = answer.json()
        assert (body["accepted"], body["rejected"]) == (1, 2)
        assert [r["status"] for r in body["rows"]] == ["accepted", "rejected", "rejected"]

        sent = wait_until("the event rule's send", lambda: [
            a for a in fake_wechat.accepted_for("subscribe") if a.body["touser"] ==
            OPENIDS["u1"]], timeout=10)
        assert time.monotonic() - posted < 8
        assert sent[0].body["data"]["thing1"] == {"value": "签到成功"}

        again = http.post("/events", content=json.dumps(good) + "\n", headers=auth)
        assert again.status_code == 200 and again.json()["rows"][0]["status"] == "duplicate"
        assert http.post("/events", content=b"[1,", headers=auth).status_code == 400
        # an event that arrives after the event rules ticked past it is kept, and says so
        late = {"event_id": "ck-4", "user_id": "u0", "type": "checkin",
                "ts": (now - timedelta(minutes=1)).isoformat()}
        row = http.post("/events", json=[late], headers=auth).json()["rows"][0]
        assert row["status"] == "accepted" and row["late_for"] == ["checkin-thanks"]

    # the same rows through `engine ingest` are rejected with the same codes and reasons
    (tmp_path / "same.jsonl").write_text(json.dumps(bad) + "\n" + json.dumps(worse) + "\n")
    ingest(load_project(root), "events", [str(tmp_path / "same.jsonl")], workers=0,
           db=str(tmp_path / "other.db"), rejects=str(tmp_path / "rejects.jsonl"))
    rejects = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [(r["code"], r["field"], r["reason"]) for r in rejects] == \
        [(r["code"], r["field"], r["reason"]) for r in body["rows"][1:]]
    assert "did you mean `checkin`" in body["rows"][1]["reason"]

    time.sleep(1.5)  # another event tick or two: the duplicate and the late event send nothing
    assert [a.body["touser"] for a in fake_wechat.accepted_for("subscribe")] == [OPENIDS["u1"]]
    assert d.stop() == 0, d.text()[-3000:]


def test_reload_with_a_broken_file_keeps_the_old_rules_and_a_fixed_one_swaps(
        tmp_path: Path, fake_wechat: FakeWeChat, start: Callable[..., Daemon]) -> None:
    root = make_project(tmp_path, fake_wechat.url, {"a.yaml": tag_rule("a")})
    d = start(root, "--reload-interval", "1s")
    d.wait_log("started")

    def fires_since(rule: str, us: int) -> int:
        return len(db_rows(root, "SELECT 1 FROM fires WHERE rule_id = ? AND tick_at > ?",
                           rule, us))
    wait_until("rule a firing", lambda: fires_since("a", 0))

    (root / "rules" / "b.yaml").write_text(tag_rule("b", audience='user.tierr == "gold"'))
    error = d.wait_log("reload_error")
    assert error["code"] == "COND_UNKNOWN_NAME" and error["path"].endswith("b.yaml")
    assert error["line"] == 5
    rejected = d.wait_log("reload_rejected")
    after = to_micros(datetime.fromisoformat(rejected["ts"]))
    wait_until("rule a still firing after the rejected reload",
               lambda: fires_since("a", after + 1_000_000))
    assert fires_since("b", 0) == 0 and not d.events("reloaded")

    (root / "rules" / "b.yaml").write_text(tag_rule("b"))
    swapped = d.wait_log("reloaded")
    assert swapped["added"] == ["b"] and swapped["rescheduled"] == ["b"]
    wait_until("rule b firing", lambda: fires_since("b", 0))
    hashes = db_rows(root, "SELECT DISTINCT content_hash FROM fires WHERE rule_id = 'b'")
    assert len(hashes) == 1 and hashes[0][0]
    assert d.stop() == 0, d.text()[-3000:]


def test_a_second_daemon_is_refused_sighup_reloads_and_a_dead_holder_is_replaced(
        tmp_path: Path, fake_wechat: FakeWeChat, start: Callable[..., Daemon]) -> None:
    root = make_project(tmp_path, fake_wechat.url, {"a.yaml": tag_rule("a", every="1h")})
    first = start(root, "--reload-interval", "0")
    first.wait_log("started")

    second = start(root)
    assert second.proc.wait(20) == 2
    second.reader.join(5)
    assert "another daemon holds this database" in second.text()
    assert f"pid {first.proc.pid}" in second.text()

    (root / "rules" / "c.yaml").write_text(tag_rule("c", every="1h"))
    time.sleep(0.2)
    assert not first.events("reloaded")  # no polling: only SIGHUP reloads
    first.proc.send_signal(signal.SIGHUP)
    assert first.wait_log("reloaded")["added"] == ["c"]

    first.kill()  # no clean release: the lease row stays, but its process is gone
    third = start(root)
    assert third.wait_log("lease_acquired")["reason"] == "dead"
    assert third.stop() == 0, third.text()[-3000:]


def test_a_stale_lease_is_taken_over_and_a_fresh_one_is_not(tmp_path: Path,
                                                             fake_wechat: FakeWeChat) -> None:
    root = make_project(tmp_path, fake_wechat.url, {})
    me = lease.Holder("me", os.getpid(), "here")
    now = datetime.now(timezone.utc)
    with open_project_store(load_project(root)) as store:
        with store.transaction():
            lease_sql.ensure_lease_table(store.conn)
            lease_sql.claim(store.conn, lease_sql.LeaseRow(
                lease.LEASE_NAME, "other", 1, "elsewhere", 0, to_micros(now) - 5_000_000))
        with pytest.raises(lease.LeaseHeld, match="pid 1 on elsewhere"):
            lease.acquire(store, me, now, timedelta(seconds=30))
        assert lease.acquire(store, me, now + timedelta(seconds=40),
                             timedelta(seconds=30)) == "stale"
        assert lease.heartbeat(store, me, now + timedelta(seconds=41))
        other = lease.Holder("other", 1, "elsewhere")
        assert lease.acquire(store, other, now + timedelta(seconds=90),
                             timedelta(seconds=30)) == "stale"
        assert not lease.heartbeat(store, me, now + timedelta(seconds=91))  # we lost it


def test_sigterm_mid_delivery_then_restart_sends_nothing_twice(
        tmp_path: Path, fake_wechat: FakeWeChat, start: Callable[..., Daemon]) -> None:
    recent = (datetime.now(timezone.utc) - timedelta(seconds=30)).isoformat()
    checkins = [{"event_id": f"ck-{u}", "user_id": u, "type": "checkin", "ts": recent}
                for u in OPENIDS]
    root = make_project(tmp_path, fake_wechat.url, {"checkin.yaml": CHECKIN_RULE}, checkins)
    fake_wechat.fault("subscribe", *["delay:5"] * len(OPENIDS))  # accepted, answered late
    d = start(root, "--shutdown-grace", "1s")
    wait_until("sends in flight", lambda: len(fake_wechat.requests_to("subscribe")) == 3)
    stopped = time.monotonic()
    assert d.stop() == 0, d.text()[-3000:]
    assert time.monotonic() - stopped < 4, "shutdown was not bounded by the grace time"
    assert d.events("abandoned")
    states = dict(db_rows(root, "SELECT item_id, state FROM outbox"))
    assert len(states) == 3 and set(states.values()) == {"sending"}

    again = start(root)
    again.wait_log("delivery", where=lambda x: x["results"].get("recovered_unknown") == 3)
    time.sleep(1.5)  # further delivery rounds: nothing is re-sent
    assert again.stop() == 0, again.text()[-3000:]
    assert set(dict(db_rows(root, "SELECT item_id, state FROM outbox")).values()) == {"unknown"}
    assert fake_wechat.duplicates() == {}
    sends = [r.item_id for r in fake_wechat.requests_to("subscribe")]
    assert sorted(sends) == sorted(states)  # each item reached the provider exactly once


# -- the scheduler trigger and catch-up -------------------------------------------------------

SH = ZoneInfo("Asia/Shanghai")


def trigger_of(text: str) -> Trigger:
    if text.startswith("every "):
        return Trigger("every", every=parse_duration(text[6:]))
    return Trigger("schedule", cron=cron.parse(text))


@pytest.mark.parametrize("spec, now, expected", [
    ("0 10 * * 0", datetime(2026, 11, 21, 12, 0, tzinfo=SH), datetime(2026, 11, 22, 10, 0)),
    ("0 10 * * 7", datetime(2026, 11, 21, 12, 0, tzinfo=SH), datetime(2026, 11, 22, 10, 0)),
    ("0 10 1 * 1", datetime(2026, 11, 24, 0, 0, tzinfo=SH), datetime(2026, 11, 30, 10, 0)),
    ("0 10 1 * 1", datetime(2026, 11, 30, 11, 0, tzinfo=SH), datetime(2026, 12, 1, 10, 0)),
    ("*/15 * * * *", datetime(2026, 11, 21, 9, 59, 59, tzinfo=SH),
     datetime(2026, 11, 21, 10, 0)),
    ("every 2s", datetime(2026, 11, 21, 9, 0, 1, 500_000, tzinfo=SH),
     datetime(2026, 11, 21, 9, 0, 2)),
    ("every 1d", datetime(2026, 11, 21, 9, 0, tzinfo=SH), datetime(2026, 11, 22, 0, 0)),
], ids=["sunday-0", "sunday-7", "dom-or-dow-monday", "dom-or-dow-first", "step", "every-2s",
        "every-1d-local-midnight"])
def test_the_slot_trigger_keeps_crontab_meaning(spec: str, now: datetime,
                                                expected: datetime) -> None:
    trig = SlotTrigger(trigger_of(spec), SH)
    assert trig.get_next_fire_time(None, now) == expected.replace(tzinfo=SH)


def test_missed_slots_coalesce_into_the_latest_one() -> None:
    trig = SlotTrigger(trigger_of("every 1m"), SH)
    ran = datetime(2026, 11, 21, 9, 0, tzinfo=SH)
    now = datetime(2026, 11, 21, 9, 10, 30, tzinfo=SH)  # woke up ten slots late
    assert trig.get_next_fire_time(ran, now) == datetime(2026, 11, 21, 9, 10, tzinfo=SH)
    assert trig.get_next_fire_time(datetime(2026, 11, 21, 9, 10, tzinfo=SH), now) == \
        datetime(2026, 11, 21, 9, 11, tzinfo=SH)


def test_after_downtime_a_missed_slot_runs_once_and_a_too_old_one_is_skipped(
        tmp_path: Path, fake_wechat: FakeWeChat, start: Callable[..., Daemon]) -> None:
    root = make_project(tmp_path, fake_wechat.url, {"m.yaml": tag_rule("minutely", "1m"),
                                                    "d.yaml": tag_rule("daily", "1d")})
    project = load_project(root)
    down_since = datetime.now(SH) - timedelta(days=3)
    with open_project_store(project) as store, store.transaction():
        ledger.ensure_ledger(store.conn)
        for rid in ("minutely", "daily"):  # both last ticked three days ago
            ledger.set_tick(store.conn, rid, to_micros(down_since), "")
    d = start(root, "--catch-up-grace", "10m")
    began = datetime.fromisoformat(d.wait_log("started")["ts"])
    d.wait_log("tick", where=lambda x: x["kind"] == "schedule")  # skips are logged before it
    assert d.stop() == 0, d.text()[-3000:]
    minute = began.astimezone(SH).replace(second=0, microsecond=0)
    midnight = minute.replace(hour=0, minute=0)
    occurrences = {r[0] for r in db_rows(
        root, "SELECT DISTINCT occurrence FROM fires WHERE rule_id = 'minutely'")}
    missed = {o for o in occurrences if datetime.fromisoformat(o) <= minute}
    assert missed == {minute.isoformat()}, "4320 missed minutes must coalesce into one tick"
    daily = d.events("slot_skipped")
    daily_fires = db_rows(root, "SELECT 1 FROM fires WHERE rule_id = 'daily'")
    if began - midnight > timedelta(minutes=11):  # today's 00:00 slot is too old: skipped
        assert [x["rule"] for x in daily] == ["daily"]
        assert daily[0]["slot"] == midnight.isoformat() and not daily_fires
    elif began - midnight < timedelta(minutes=9):  # just after midnight: caught up instead
        assert not daily and daily_fires


def test_logs_mask_personal_data_and_secrets() -> None:
    import io

    from engine.logs import JsonLog, Masker

    out = io.StringIO()
    log = JsonLog(out, masker=Masker({"birthday"}, ["s3cret-value"]), clock=lambda: 0.0)
    log.info("send", user="u1", recipient="oFake1xxxxxxxxxxxxxxxxxxxxxx", birthday="1990-01-02",
             detail="SMS to 13912345678 failed; key s3cret-value rejected",
             nested={"phone": "13912345678", "note": "openid oAbCdEfGhIjKlMnOpQrStUvWxYz1"})
    log.debug("hidden")
    (line,) = out.getvalue().splitlines()
    rec = json.loads(line)
    assert rec["ts"] == "1970-01-01T00:00:00.000+00:00" and rec["user"] == "u1"
    assert rec["recipient"] == "oFa****xxxx" and rec["birthday"] == "1****02"
    assert rec["detail"] == "SMS to 139****5678 failed; key *** rejected"
    assert rec["nested"] == {"phone": "139****5678", "note": "openid oAb****xYz1"}
    assert "oAbCdEfGhIjKlMnOpQrStUvWxYz1" not in line and "13912345678" not in line
