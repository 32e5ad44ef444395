"""`engine daemon`: the playbook running for months without a human.

APScheduler 3.x (`BlockingScheduler`, in-memory jobs only) drives:

- one job per scheduled rule, on a `SlotTrigger` (crontab meaning, project timezone); each
  run ticks every scheduled rule that is due, exactly as `engine run --once` would;
- `events`: every few seconds, ticks the event, date and coupon_expiring rules at
  `now - event_lag` (so an event that reaches the database up to `event_lag` after its `ts`
  still triggers them), and at once after `POST /events`;
- `deliver`: processes the outbox every few seconds and right after a tick queued items;
- `heartbeat`: keeps the lease (one daemon per database) fresh;
- `reload`: polls the project files; SIGHUP reloads at once.

Everything that matters (last tick per rule, on_enter members, waits, the outbox) lives in
the engine's tables, so a restart reconstructs it: on start every scheduled rule whose slots
were missed while the daemon was down ticks once (coalesced: the latest missed slot is the
occurrence) unless that slot is older than `catch_up_grace`, in which case it is skipped and
logged. The clock is read here and only here, at the start of each job.
"""
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

from apscheduler.jobstores.base import JobLookupError
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.base import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler

from . import lease
from .channels.base import Channel, SendRequest, SendResult
from .commit import CommitResult, tick
from .durations import BadLiteral, parse_duration
from .errors import CannotRun, InputProblems
from .httpapi import LOOPBACK, TOKEN_ENV, ApiServer, BadBody, parse_address, receive_events
from .logs import JsonLog, Masker
from .metrics import MeteredChannel, Registry, process_stats
from .outbox import deliver
from .project import Project
from .reload import Fingerprint, digest, fingerprint, load_checked
from .run import build_channels, due_rules
from .slot_trigger import SlotTrigger
from .store import Store, ledger, monitor, open_store, resolve_db_path
from .timeutil import to_micros
from .triggers import is_scheduled


# -- options ---------------------------------------------------------------------------------

def parse_seconds(text: str | float, what: str, *, allow_zero: bool = False) -> float:
    """`2s`, `1m30s`, `0.5` (seconds) or `0` where allowed."""
    raw = str(text).strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            value = parse_duration(raw).total_seconds()
        except BadLiteral as exc:
            raise CannotRun(f"{what}: {exc}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise CannotRun(f"{what}: `{raw}` must be {'zero or ' if allow_zero else ''}positive")
    return value


@dataclass(frozen=True)
class DaemonOptions:
    http: str | None = None  # HOST:PORT for the HTTP API (None: no HTTP)
    event_interval: float = 2.0  # seconds between event/date/coupon ticks
    event_lag: float = 2.0  # event ticks run at now - lag (late events still trigger)
    deliver_interval: float = 2.0
    reload_interval: float = 2.0  # 0: no polling (SIGHUP only)
    lease_timeout: float = 30.0  # a lease without heartbeat this long is taken over
    shutdown_grace: float = 10.0  # how long SIGTERM waits for in-flight work
    catch_up_grace: float = 12 * 3600.0  # missed slots older than this are skipped
    delivery_batch: int = 100  # outbox items marked `sending` at once
    log_level: str = "info"

    @staticmethod
    def parse(http: str | None = None, event_interval: str = "2s", event_lag: str = "2s",
              deliver_interval: str = "2s", reload_interval: str = "2s",
              lease_timeout: str = "30s", shutdown_grace: str = "10s",
              catch_up_grace: str = "12h", delivery_batch: int = 100,
              log_level: str = "info") -> "DaemonOptions":
        return DaemonOptions(
            http, parse_seconds(event_interval, "--event-interval"),
            parse_seconds(event_lag, "--event-lag", allow_zero=True),
            parse_seconds(deliver_interval, "--deliver-interval"),
            parse_seconds(reload_interval, "--reload-interval", allow_zero=True),
            parse_seconds(lease_timeout, "--lease-timeout"),
            parse_seconds(shutdown_grace, "--shutdown-grace", allow_zero=True),
            parse_seconds(catch_up_grace, "--catch-up-grace"),
            max(1, int(delivery_batch)), log_level)


# -- the rule set in force -------------------------------------------------------------------

@dataclass(frozen=True)
class Running:
    """What the jobs use; replaced as a whole on reload (jobs read it once when they start)."""

    project: Project
    channels: Mapping[str, Channel]
    unavailable: Mapping[str, str]
    git_commit: str
    digest: str
    fingerprint: Fingerprint

    @property
    def tz(self) -> Any:
        return self.project.config.tz


class Stores:
    """One store (SQLite connection) per thread that uses one, reopened after the data model
    changes; closed together at shutdown."""

    def __init__(self, path: Path, project: Project) -> None:
        self.path = path
        self.datamodel = project.datamodel
        self.generation = 0
        self.local = threading.local()
        self.lock = threading.Lock()
        self.opened: list[Store] = []
        self.named: dict[str, tuple[Store, int]] = {}

    def get(self) -> Store:
        """The calling thread's store (the scheduler's worker threads live as long as the
        daemon)."""
        held = getattr(self.local, "store", None)
        if held is not None and held[1] == self.generation:
            return held[0]
        store = self._open(held[0] if held is not None else None)
        self.local.store = (store, self.generation)
        return store

    def shared(self, key: str) -> Store:
        """A store shared by short-lived threads (the HTTP server's); the caller serialises
        its use with a lock."""
        held = self.named.get(key)
        if held is not None and held[1] == self.generation:
            return held[0]
        store = self._open(held[0] if held is not None else None)
        self.named[key] = (store, self.generation)
        return store

    def _open(self, old: Store | None) -> Store:
        store = open_store(self.path, self.datamodel, create=False)
        with self.lock:
            if old is not None:
                self.opened = [o for o in self.opened if o is not old]
                old.close()
            self.opened.append(store)
        return store

    def new_datamodel(self, project: Project) -> None:
        self.datamodel = project.datamodel
        self.generation += 1

    def close_all(self) -> None:
        with self.lock:
            for store in self.opened:
                try:
                    store.close()
                except sqlite3.Error:
                    pass
            self.opened.clear()


def secret_values(project: Project, env: Mapping[str, str]) -> list[str]:
    """Values of the environment variables the channels and the API read (never logged)."""
    names = {TOKEN_ENV}
    for ch in project.config.channels.values():
        names.update(str(v) for k, v in ch.options.items() if k.endswith("_env"))
    return [env[n] for n in names if env.get(n)]


class _LogHandler(logging.Handler):
    """Library log records (APScheduler's warnings) as JSON lines too."""

    def __init__(self, log: JsonLog) -> None:
        super().__init__(logging.WARNING)
        self.json_log = log

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        self.json_log.log(level, "library", logger=record.name, message=record.getMessage())


# -- the daemon ------------------------------------------------------------------------------

@dataclass
class _Busy:
    count: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)


class Daemon:
    def __init__(self, project_dir: str | None, db: str | None,
                 options: DaemonOptions = DaemonOptions(),
                 env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> None:
        self.project_dir = project_dir
        self.db = db
        self.options = options
        self.env = dict(os.environ if env is None else env)
        self.log = JsonLog(stream, options.log_level)
        self.metrics = Registry()
        self.holder = lease.Holder.this_process()
        self.token = self.env.get(TOKEN_ENV) or None
        self.exit_code = 0
        self._stopping = threading.Event()
        self._busy = _Busy()
        self._retired: list[Mapping[str, Channel]] = []
        self._rejected_digest = ""
        self._job_sigs: dict[str, tuple[str, str, str]] = {}
        self._http_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self.scheduler: BlockingScheduler | None = None
        self.http: ApiServer | None = None
        self.running: Running
        self.stores: Stores
        self._describe_metrics()

    # -- start and stop ------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (or a lost lease); returns the exit code."""
        self._install_signals()  # first: a SIGTERM during start-up is a clean stop too
        root = self._initial_load()
        project = self.running.project
        path = resolve_db_path(root, project.config.database, self.db)
        self.stores = Stores(path, project)
        main = self.stores.get()
        self._acquire_lease(main)
        try:
            self._start_channels()
            self.scheduler = self._make_scheduler()
            self._schedule_rules()
            self._start_http()
            self.log.info("started", pid=os.getpid(), holder=self.holder.holder,
                          database=str(path), rules=len(project.rules),
                          scheduled=len(self._job_sigs), git_commit=self.running.git_commit,
                          http=f"{self.http.host}:{self.http.port}" if self.http else None)
            self.metrics.set("zailai_up", 1)
            if not self._stopping.is_set():
                try:
                    self.scheduler.start()  # blocks until shutdown
                except JobLookupError:
                    # APScheduler 3 marks itself stopped before taking its job-store lock, so
                    # a stop while its loop removes a finished one-shot job (catch-up) makes
                    # remove_job look in the wrong place and raise: a stop was asked, exit 0
                    if not self._stopping.is_set():
                        raise
        except BaseException:
            self.exit_code = self.exit_code or 2
            raise
        finally:
            self._shutdown(main)
        return self.exit_code

    def _initial_load(self) -> Path:
        checked = load_checked(self.project_dir or ".")
        if checked.errors:
            for d in checked.errors:
                self.log.error("rule_error", path=d.pos.path, line=d.pos.line,
                               column=d.pos.column, code=d.code, message=d.message)
            raise InputProblems(list(checked.errors))
        project = checked.project
        self.log.masker = Masker(project.datamodel.pii_fields(), secret_values(project, self.env))
        root = project.root
        self.running = Running(project, {}, {}, project.git_commit(), digest(root),
                               fingerprint(root))
        self.metrics.set("zailai_rules_loaded", len(project.rules))
        return root

    def _acquire_lease(self, store: Store) -> None:
        now = datetime.now(self.running.tz)
        try:
            why = lease.acquire(store, self.holder, now,
                                timedelta(seconds=self.options.lease_timeout))
        except lease.LeaseHeld as exc:
            self.log.error("lease_refused", message=exc.message)
            self.stores.close_all()
            raise
        self.log.info("lease_acquired", holder=self.holder.holder, reason=why)
        self.metrics.set("zailai_lease_heartbeat_timestamp_seconds", now.timestamp())

    def _start_channels(self) -> None:
        run = self.running
        channels, missing = self._build_channels(run.project)
        self.running = replace(run, channels=channels, unavailable=missing)

    def _build_channels(self, project: Project) -> tuple[dict[str, Channel], dict[str, str]]:
        built, missing = build_channels(project, self.env)
        for name, why in missing.items():
            self.log.warning("channel_unavailable", channel=name, reason=why)
        metered: dict[str, Channel] = {n: MeteredChannel(c, self.metrics, self._on_send)
                                       for n, c in built.items()}
        return metered, missing

    def _make_scheduler(self) -> BlockingScheduler:
        handler = _LogHandler(self.log)
        aps = logging.getLogger("apscheduler")
        aps.addHandler(handler)
        aps.setLevel(logging.WARNING)
        aps.propagate = False
        o = self.options
        sched = BlockingScheduler(
            timezone=self.running.tz,
            executors={"default": ThreadPoolExecutor(2), "ticks": ThreadPoolExecutor(1),
                       "delivery": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        now = datetime.now(self.running.tz)
        sched.add_job(self._job(self._tick_scheduled, "schedule"), "date", run_date=now,
                      id="catch-up", executor="ticks")
        sched.add_job(self._job(self._tick_events, "events"), "interval",
                      seconds=o.event_interval, id="events", executor="ticks", next_run_time=now)
        sched.add_job(self._job(self._deliver, "deliver"), "interval",
                      seconds=o.deliver_interval, id="deliver", executor="delivery",
                      next_run_time=now)
        sched.add_job(self._heartbeat, "interval", seconds=max(0.5, o.lease_timeout / 3),
                      id="heartbeat")
        sched.add_job(self._housekeeping, "interval",
                      seconds=o.reload_interval if o.reload_interval > 0 else 1.0,
                      id="reload", next_run_time=now)
        return sched

    def _start_http(self) -> None:
        if not self.options.http:
            return
        host, port = parse_address(self.options.http)
        self.http = ApiServer(self, host, port)
        self.http.start()
        if host not in LOOPBACK:
            self.log.warning("http_not_loopback", host=host,
                             message="the HTTP API listens beyond this machine; put it behind "
                                     "a firewall or a TLS proxy")
        self.log.info("http_listening", host=host, port=self.http.port,
                      events_enabled=self.token is not None)
        if self.token is None:
            self.log.warning("events_disabled",
                             message=f"POST /events answers 503: {TOKEN_ENV} is not set")

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        # no I/O here: the main thread may be inside a write to the same stream, and a
        # reentrant write raises; log and stop from a thread instead
        self._stopping.set()
        name = signal.Signals(signum).name
        threading.Thread(target=self._stop_after_signal, args=(name,), name="signal",
                         daemon=True).start()

    def _stop_after_signal(self, name: str) -> None:
        self.log.info("signal", signal=name)
        self._stop_scheduler()

    def _on_hup(self, signum: int, frame: Any) -> None:
        # never touch the scheduler from inside a signal handler: hand over to a thread
        threading.Thread(target=self._queue_reload, name="sighup", daemon=True).start()

    def _queue_reload(self) -> None:
        sched = self.scheduler
        if sched is not None and sched.running and not self._stopping.is_set():
            sched.add_job(self._reload, "date", id="reload-now", replace_existing=True,
                          kwargs={"force": True})

    def stop(self) -> None:
        """Stop scheduling (thread-safe, callable from a signal handler)."""
        self._stopping.set()
        threading.Thread(target=self._stop_scheduler, name="stop", daemon=True).start()

    def _stop_scheduler(self) -> None:
        sched = self.scheduler
        if sched is None:
            return
        try:
            sched.shutdown(wait=False)
        except SchedulerNotRunningError:
            pass

    def _shutdown(self, main: Store) -> None:
        self._stopping.set()
        self.metrics.set("zailai_up", 0)
        self.log.info("stopping", grace_seconds=self.options.shutdown_grace)
        deadline = time.monotonic() + self.options.shutdown_grace
        with self._busy.cond:
            while self._busy.count and time.monotonic() < deadline:
                self._busy.cond.wait(max(0.0, min(0.1, deadline - time.monotonic())))
            abandoned = self._busy.count
        if self.http is not None:
            self.http.stop()
        if abandoned:
            self.log.warning("abandoned", jobs=abandoned,
                             message="in-flight work did not finish within the grace time; "
                                     "sends already begun stay `sending` and become `unknown` "
                                     "(never re-sent) when the daemon starts again")
        try:
            lease.release(main, self.holder)
            self.log.info("lease_released", holder=self.holder.holder)
        except sqlite3.Error as exc:
            self.log.warning("lease_release_failed", error=str(exc))
        self.log.info("stopped", exit_code=self.exit_code)
        if abandoned:
            # worker threads are blocked in a provider call; the interpreter would wait for
            # them at exit, so leave now: every write so far was its own committed transaction
            sys.stderr.flush()
            os._exit(self.exit_code)
        for chs in [self.running.channels, *self._retired]:
            for ch in chs.values():
                try:
                    ch.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
        self.stores.close_all()

    # -- jobs ----------------------------------------------------------------------------------

    def _job(self, fn: Callable[[], None], name: str) -> Callable[[], None]:
        def run() -> None:
            if self._stopping.is_set():
                return
            with self._busy.cond:
                self._busy.count += 1
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - a failed job is logged, the next runs
                self.metrics.inc("zailai_job_errors_total", job=name)
                self.log.error("job_failed", job=name, error=f"{type(exc).__name__}: {exc}")
                if os.environ.get("ENGINE_DEBUG"):
                    import traceback
                    self.log.error("traceback", job=name, text=traceback.format_exc())
            finally:
                with self._busy.cond:
                    self._busy.count -= 1
                    self._busy.cond.notify_all()
        run.__name__ = f"job_{name}"
        return run

    def _tick_scheduled(self) -> None:
        run = self.running
        at = datetime.now(run.tz)
        store = self.stores.get()
        ids, slots = due_rules(run.project, store, at)
        ids = [i for i in ids if i in slots]
        if not ids:
            return
        oldest = to_micros(at) - int(self.options.catch_up_grace * 1e6)
        stale = [i for i in ids if slots[i] < oldest]
        if stale:
            self._skip_stale(run, store, at, stale, slots)
            ids = [i for i in ids if i not in stale]
        if ids:
            self._commit("schedule", run, store, at, ids, {i: slots[i] for i in ids})

    def _skip_stale(self, run: Running, store: Store, at: datetime, ids: list[str],
                    slots: dict[str, int]) -> None:
        """Missed slots older than catch_up_grace: recorded as ticked, nobody is messaged."""
        with store.transaction():
            ledger.ensure_ledger(store.conn)
            for rid in ids:
                rule = run.project.rule(rid)
                ledger.set_tick(store.conn, rid, to_micros(at), rule.content_hash if rule else "")
        for rid in ids:
            self.metrics.inc("zailai_slots_skipped_total", rule=rid)
            self.log.warning("slot_skipped", rule=rid,
                             slot=datetime.fromtimestamp(slots[rid] / 1e6, run.tz).isoformat(),
                             reason=f"older than catch_up_grace "
                                    f"({self.options.catch_up_grace:.0f}s)")

    def _tick_events(self) -> None:
        run = self.running
        ids = [r.id for r in run.project.rules
               if r.enabled and r.trigger.kind != "invalid" and not is_scheduled(r)]
        if not ids:
            return
        at = datetime.now(run.tz) - timedelta(seconds=self.options.event_lag)
        self._commit("event", run, self.stores.get(), at, ids, {})

    def _commit(self, kind: str, run: Running, store: Store, at: datetime, ids: list[str],
                slots: dict[str, int]) -> None:
        run_id = uuid.uuid4().hex[:12]
        started = time.monotonic()
        try:
            result = tick(run.project, store, at, ids, slots, run.git_commit)
        except Exception:
            self.metrics.inc("zailai_tick_errors_total", kind=kind)
            raise
        elapsed = time.monotonic() - started
        self.metrics.observe("zailai_tick_duration_seconds", elapsed, kind=kind)
        self._record(kind, run_id, at, result, elapsed)
        if result.outbox_items:
            self._kick_delivery()

    def _record(self, kind: str, run_id: str, at: datetime, result: CommitResult,
                elapsed: float) -> None:
        decisions = 0
        for rp in result.plan.rules:
            for d in rp.decisions:
                decisions += 1
                self.metrics.inc("zailai_fires_total", rule=rp.rule_id, outcome=d.outcome)
                if d.outcome == "suppressed":
                    self.metrics.inc("zailai_suppressions_total", rule=rp.rule_id,
                                     reason=(d.reason or "").split(":")[0])
                self.log.info("decision", run=run_id, rule=rp.rule_id, user=d.user_id,
                              decision=d.outcome, reason=d.reason, occurrence=d.occurrence,
                              variant=d.variant)
        level = "info" if decisions or kind == "schedule" else "debug"
        self.log.log(level, "tick", run=run_id, kind=kind, at=at.isoformat(),
                     rules=[rp.rule_id for rp in result.plan.rules] if kind == "schedule"
                     else len(result.plan.rules), decisions=decisions,
                     new_fires=result.new_fires, repeated=result.repeated,
                     outbox_items=result.outbox_items, seconds=round(elapsed, 4))

    def _kick_delivery(self) -> None:
        sched = self.scheduler
        if sched is None or self._stopping.is_set():
            return
        try:
            sched.add_job(self._job(self._deliver, "deliver"), "date", id="deliver-now",
                          executor="delivery", replace_existing=True)
        except SchedulerNotRunningError:
            pass

    def kick_events(self, latest_ts_us: int | None) -> None:
        """Tick the event rules soon after events arrived: once their `ts + event_lag` has
        passed (at most `event_lag` plus a moment from now)."""
        sched = self.scheduler
        if sched is None or self._stopping.is_set():
            return
        now = datetime.now(self.running.tz)
        lag = timedelta(seconds=self.options.event_lag)
        when = now
        if latest_ts_us is not None:
            ready = datetime.fromtimestamp(latest_ts_us / 1e6, self.running.tz) + lag + \
                timedelta(milliseconds=50)
            when = min(max(now, ready), now + lag + timedelta(milliseconds=50))
        try:
            sched.add_job(self._job(self._tick_events, "events"), "date", run_date=when,
                          id="events-now", executor="ticks", replace_existing=True)
        except SchedulerNotRunningError:
            pass

    def _deliver(self) -> None:
        while self._retired:  # channels replaced by a reload: no delivery uses them now
            for ch in self._retired.pop().values():
                try:
                    ch.close()
                except Exception:  # noqa: BLE001
                    pass
        run = self.running
        at = datetime.now(run.tz)
        store = self.stores.get()
        if not lease.heartbeat(store, self.holder, at):  # never send under a lost lease
            self._lease_lost()
            return
        report = deliver(run.project, store, run.channels, at,
                         batch=self.options.delivery_batch, stop=self._stopping.is_set)
        counts = report.as_json()
        for state, n in counts.items():
            self.metrics.inc("zailai_deliveries_total", n, state=state)
        if counts:
            self.log.info("delivery", at=at.isoformat(), results=counts)

    def _on_send(self, channel: str, request: SendRequest, result: SendResult,
                 elapsed: float) -> None:
        self.log.info("send", channel=channel, item=request.item_id, user=request.user_id,
                      recipient=request.recipient, status=result.status, code=result.code,
                      detail=result.detail, seconds=round(elapsed, 4))

    def _heartbeat(self) -> None:
        if self._stopping.is_set():
            return
        now = datetime.now(self.running.tz)
        try:
            ours = lease.heartbeat(self.stores.get(), self.holder, now)
        except sqlite3.Error as exc:
            self.log.warning("heartbeat_failed", error=str(exc))
            return
        if not ours:
            self._lease_lost()
            return
        self.metrics.set("zailai_lease_heartbeat_timestamp_seconds", now.timestamp())

    def _lease_lost(self) -> None:
        self.exit_code = 2
        self.log.error("lease_lost", holder=self.holder.holder,
                       message="another daemon took this database over (our heartbeat was "
                               "late); stopping")
        self.stop()

    def _housekeeping(self) -> None:
        if self._stopping.is_set():  # a stop requested before the scheduler was running
            self._stop_scheduler()
            return
        if self.options.reload_interval > 0:
            self._reload(force=False)

    # -- reload --------------------------------------------------------------------------------

    def _reload(self, force: bool = False) -> None:
        if self._stopping.is_set():
            return
        with self._reload_lock:
            try:
                self._reload_locked(force)
            except CannotRun as exc:
                self.metrics.inc("zailai_reloads_total", result="rejected")
                self.log.error("reload_rejected", message=str(exc),
                               keeping=self.running.digest[:12])

    def _reload_locked(self, force: bool) -> None:
        run = self.running
        root = run.project.root
        fp = fingerprint(root)
        if fp == run.fingerprint and not force:
            return
        new_digest = digest(root)
        if new_digest == run.digest and not force:
            self.running = replace(run, fingerprint=fp)
            return
        if new_digest == self._rejected_digest and not force:
            return  # already reported; wait for the next change
        checked = load_checked(root)
        if fingerprint(root) != fp:
            return  # files changed while being read: try again on the next poll
        if checked.errors:
            self._rejected_digest = new_digest
            self.metrics.inc("zailai_reloads_total", result="rejected")
            for d in checked.errors:
                self.log.error("reload_error", path=d.pos.path, line=d.pos.line,
                               column=d.pos.column, code=d.code, message=d.message)
            self.log.error("reload_rejected", errors=len(checked.errors),
                           message="the new rule set has errors; still running the old one",
                           keeping=run.digest[:12])
            return
        self._swap(run, checked.project, new_digest, fp)

    def _swap(self, run: Running, new: Project, new_digest: str, fp: Fingerprint) -> None:
        old = run.project
        if new.config.database != old.config.database:
            self.log.warning("reload_database_ignored",
                             message="engine.yaml `database:` changed; restart the daemon to "
                                     "use another database")
        if new.datamodel != old.datamodel:
            self.stores.new_datamodel(new)
        channels, unavailable = run.channels, run.unavailable
        if dict(new.config.channels) != dict(old.config.channels):
            channels, unavailable = self._build_channels(new)
            self._retired.append(run.channels)
        self.log.masker = Masker(new.datamodel.pii_fields(), secret_values(new, self.env))
        self.running = Running(new, channels, unavailable, new.git_commit(), new_digest, fp)
        self._rejected_digest = ""
        before = {r.id: r.content_hash for r in old.rules}
        after = {r.id: r.content_hash for r in new.rules}
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(i for i in set(after) & set(before) if after[i] != before[i])
        rescheduled = self._schedule_rules()
        self.metrics.inc("zailai_reloads_total", result="ok")
        self.metrics.set("zailai_rules_loaded", len(new.rules))
        self.log.info("reloaded", added=added, removed=removed, changed=changed,
                      rescheduled=rescheduled, rules=len(new.rules),
                      git_commit=self.running.git_commit, digest=new_digest[:12])

    def _schedule_rules(self) -> list[str]:
        """Make the rule jobs match the running project; returns the rule ids whose job was
        added, removed or replaced."""
        sched = self.scheduler
        assert sched is not None
        project = self.running.project
        want: dict[str, SlotTrigger] = {}
        for rule in project.rules:
            if rule.enabled and is_scheduled(rule) and rule.trigger.kind != "invalid":
                want[rule.id] = SlotTrigger(rule.trigger, project.config.tz)
        touched: list[str] = []
        for rid in sorted(set(self._job_sigs) - set(want)):
            try:
                sched.remove_job(f"rule:{rid}")
            except Exception:  # noqa: BLE001 - already gone
                pass
            del self._job_sigs[rid]
            touched.append(rid)
        for rid, trig in sorted(want.items()):
            if self._job_sigs.get(rid) == trig.signature:
                continue
            sched.add_job(self._job(self._tick_scheduled, "schedule"), trig, id=f"rule:{rid}",
                          name=rid, executor="ticks", replace_existing=True)
            self._job_sigs[rid] = trig.signature
            touched.append(rid)
        return sorted(touched)

    # -- the HTTP API (called from the server's threads) ---------------------------------------

    def post_events(self, body: bytes) -> tuple[int, dict[str, Any]]:
        if self._stopping.is_set():
            return 503, {"error": "the daemon is stopping; send the events again later"}
        run = self.running
        try:
            with self._http_lock:
                answer = receive_events(run.project, self.stores.shared("http"), body)
        except BadBody as exc:
            return 400, {"error": str(exc)}
        except sqlite3.Error as exc:
            self.log.error("events_failed", error=str(exc))
            return 503, {"error": "the database is busy; send the events again (it is safe: "
                                  "events are idempotent by event_id)"}
        for status in ("accepted", "duplicates", "rejected"):
            n = getattr(answer, status)
            if n:
                self.metrics.inc("zailai_events_received_total", n, status=status)
        for row in answer.rows:
            if row["status"] == "rejected":
                self.log.warning("event_rejected", row=row["row"], code=row["code"],
                                 field=row["field"], reason=row["reason"])
        self.log.info("events", accepted=answer.accepted, duplicates=answer.duplicates,
                      rejected=answer.rejected, users_created=answer.users_created)
        if answer.accepted:
            self.kick_events(answer.latest_ts)
        return (422 if answer.rejected else 200), answer.as_json()

    def health(self) -> tuple[int, dict[str, Any]]:
        run = self.running
        sched = self.scheduler
        ok = sched is not None and sched.running and not self._stopping.is_set()
        body = {"status": "ok" if ok else "stopping", "holder": self.holder.holder,
                "pid": os.getpid(), "rules": len(run.project.rules),
                "scheduled": sorted(self._job_sigs), "git_commit": run.git_commit,
                "digest": run.digest[:12], "unavailable_channels": dict(run.unavailable)}
        return (200 if ok else 503), body

    def metrics_text(self) -> str:
        try:
            with self._http_lock:
                store = self.stores.shared("http")
                by_channel = monitor.outbox_by_channel(store.conn)
                ticks = monitor.rule_ticks(store.conn)
        except sqlite3.Error:
            by_channel, ticks = [], {}
        self.metrics.replace("zailai_outbox_items", [
            ({"channel": c, "kind": k, "state": s}, n) for c, k, s, n in by_channel])
        depth = sum(n for _, _, s, n in by_channel if s in ("pending", "sending"))
        self.metrics.set("zailai_outbox_depth", depth)
        current = {r.id for r in self.running.project.rules}
        self.metrics.replace("zailai_rule_last_tick_timestamp_seconds", [
            ({"rule": r}, t / 1e6) for r, t in ticks.items() if r in current])
        stats = process_stats()
        if "rss" in stats:
            self.metrics.set("process_resident_memory_bytes", stats["rss"])
        if "fds" in stats:
            self.metrics.set("process_open_fds", stats["fds"])
        return self.metrics.render()

    def _describe_metrics(self) -> None:
        m = self.metrics
        m.describe("zailai_up", "gauge", "1 while the daemon is scheduling")
        m.describe("zailai_rules_loaded", "gauge", "rules in the rule set in force")
        m.describe("zailai_fires_total", "counter", "decisions by rule and outcome "
                   "(fire, deferred, suppressed)")
        m.describe("zailai_suppressions_total", "counter", "suppressed decisions by rule and "
                   "reason")
        m.describe("zailai_sends_total", "counter", "channel sends by channel and result "
                   "(sent, retry, failed, unknown)")
        m.describe("zailai_send_duration_seconds", "histogram", "channel send latency")
        m.describe("zailai_deliveries_total", "counter", "outbox items processed by resulting "
                   "state")
        m.describe("zailai_outbox_items", "gauge", "outbox items by channel, kind and state")
        m.describe("zailai_outbox_depth", "gauge", "outbox items pending or sending")
        m.describe("zailai_tick_duration_seconds", "histogram", "tick (plan and commit) "
                   "duration by kind (schedule, event)")
        m.describe("zailai_tick_errors_total", "counter", "ticks that failed, by kind")
        m.describe("zailai_job_errors_total", "counter", "scheduler jobs that failed, by job")
        m.describe("zailai_rule_last_tick_timestamp_seconds", "gauge", "last successful tick "
                   "per rule (unix time)")
        m.describe("zailai_slots_skipped_total", "counter", "missed slots older than the "
                   "catch-up grace, skipped")
        m.describe("zailai_events_received_total", "counter", "events posted to /events by "
                   "status (accepted, duplicates, rejected)")
        m.describe("zailai_reloads_total", "counter", "rule reloads by result (ok, rejected)")
        m.describe("zailai_lease_heartbeat_timestamp_seconds", "gauge", "last lease heartbeat "
                   "(unix time)")
        m.describe("process_resident_memory_bytes", "gauge", "resident memory")
        m.describe("process_open_fds", "gauge", "open file descriptors")
