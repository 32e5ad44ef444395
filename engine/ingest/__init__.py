"""`engine ingest users|events FILE...`: check every row, keep the good ones, report the bad.

Each row is checked against datamodel.yaml (see `rows`); a bad row goes to the rejects file
with its file, line, reason and the row itself, and the good rows of the same file are kept.
All files of one command are written in one transaction. Events are idempotent by `event_id`
(or a content hash when there is none); users are upserted (an identical row changes
nothing). Big inputs are checked by worker processes, one per core, while this process writes.
"""
from __future__ import annotations

import multiprocessing
import os
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Callable, Iterator, Sequence

import orjson

from ..errors import CannotRun
from ..project import Project
from ..store import Store, event_summary, open_project_store, shard
from ..store.bulk import BulkLoad
from .read import Checked, CsvChunk, JsonlChunk, check_chunk, check_chunk_shard, csv_chunks, \
    jsonl_chunks, source_format
from .rows import Spec

KINDS = ("users", "events")
PARALLEL_BYTES = 16 << 20     # inputs smaller than this are checked in this process
BULK_MIN_ROWS = 100_000       # rebuild the events index after the load above this size
SPILL_BYTES = 256 << 20       # inputs that outgrow the page cache (cache_size in store/db.py)
SHOWN_REJECTS = 10
_SEEN_USERS_MAX = 2_000_000   # bound on the cache of user ids known to exist


@dataclass(frozen=True)
class Reject:
    file: str
    line: int
    code: str
    field: str
    reason: str
    row: Any

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason,
                "code": self.code, "field": self.field, "row": self.row}

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.code}: {self.reason}"


@dataclass
class FileSummary:
    file: str
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0  # accepted rows that changed nothing (already stored)


@dataclass
class IngestResult:
    kind: str
    files: list[FileSummary] = field(default_factory=list)
    users_created: int = 0
    shown_rejects: list[Reject] = field(default_factory=list)
    rejects_path: str | None = None

    def total(self, attr: str) -> int:
        return sum(int(getattr(f, attr)) for f in self.files)

    @property
    def exit_code(self) -> int:
        return 1 if self.total("rejected") else 0

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind,
                "files": [vars(f) for f in self.files],
                "read": self.total("read"), "accepted": self.total("accepted"),
                "rejected": self.total("rejected"), "duplicates": self.total("duplicates"),
                "users_created": self.users_created, "rejects_file": self.rejects_path}

    def reject_lines(self) -> list[str]:
        """The first rejects (file:line: CODE: field: reason), and where the rest are."""
        lines = [str(r) for r in self.shown_rejects]
        more = self.total("rejected") - len(self.shown_rejects)
        if more > 0:
            lines.append(f"... and {more} more rejected row(s)"
                         + (f" (all in {self.rejects_path})" if self.rejects_path else
                            " (pass --rejects FILE to keep them)"))
        return lines

    def format_text(self) -> str:
        lines: list[str] = []
        for f in self.files:
            lines.append(f"{f.file}: {f.read} read, {f.accepted} accepted, {f.rejected} "
                         f"rejected, {f.duplicates} {self._dup_word}")
        if len(self.files) > 1:
            lines.append(f"total: {self.total('read')} read, {self.total('accepted')} accepted, "
                         f"{self.total('rejected')} rejected, {self.total('duplicates')} "
                         f"{self._dup_word}")
        if self.kind == "events":
            lines.append(f"{self.users_created} new user(s) created from events")
        return "\n".join(lines)

    @property
    def _dup_word(self) -> str:
        return "duplicates" if self.kind == "events" else "unchanged"


Progress = Callable[[int], None]


def ingest(project: Project, kind: str, files: Sequence[str], *, db: str | None = None,
           rejects: str | None = None, stdin: BinaryIO | None = None,
           progress: Progress | None = None, workers: int | None = None) -> IngestResult:
    """Ingest `files` ("-" = `stdin`, JSONL) of users or events into the project's store.

    `progress` is called with the number of bytes just processed. `workers`: processes that
    check rows (None: one per core for inputs over 16 MiB, 0: check in this process).
    """
    if kind not in KINDS:
        raise CannotRun(f"cannot ingest `{kind}`: choose users or events")
    if not files:
        raise CannotRun("name at least one file to ingest (or - for standard input)")
    for name in files:
        source_format(name)
        if name != "-" and not Path(name).is_file():
            raise CannotRun(f"no such file: {name}")
    if list(files).count("-") > 1:
        raise CannotRun("standard input (-) can be read only once")
    size = sum(Path(n).stat().st_size for n in files if n != "-")
    if workers is None:
        workers = (os.cpu_count() or 1) if size >= PARALLEL_BYTES or "-" in files else 0
    result = IngestResult(kind, rejects_path=rejects)
    out = _open_rejects(rejects)
    try:
        with _Checker(kind, workers) as checker, open_project_store(project, db) as store, \
                _journals_in_memory(store, size >= SPILL_BYTES or "-" in files), \
                store.transaction():
            spec = Spec.build(project.datamodel, project.config.timezone, store.type_ids)
            bulk = store.begin_bulk_load() if kind == "events" and _bulk(store, files,
                                                                          size) else None
            seen: set[str] = set()
            for name in files:
                summary = FileSummary(name)
                result.files.append(summary)
                for checked in checker.run(spec, _chunks(name, stdin)):
                    _write(store, checked, summary, result, seen, out, name, bulk)
                    if progress is not None:
                        progress(checked.size)
            if bulk is not None:
                result.users_created += store.end_bulk_load(bulk)
            if kind == "events" and (bulk is not None or not event_summary.is_fresh(store.conn)):
                # after a bulk load, or when something wrote events around the engine (the
                # summary then no longer covers them and plan would read every event)
                event_summary.rebuild(store.conn)
    finally:
        if out is not None:
            out.close()
    return result


@contextmanager
def _journals_in_memory(store: Store, big: bool) -> Iterator[None]:
    """Statement journals in memory while the rows of a `big` load are written (see
    `Store.temp_store`). Only for loads that outgrow the page cache: below that, journals on
    a temp file never reach the disk and in-memory ones cost more CPU (about 2 µs per
    event measured)."""
    if big:
        store.temp_store("MEMORY")
    try:
        yield
    finally:
        if big:
            store.temp_store("FILE")


def _open_rejects(path: str | None) -> IO[bytes] | None:
    if path is None:
        return None
    try:
        return open(path, "wb")
    except OSError as exc:
        raise CannotRun(f"cannot write the rejects file {path}: {exc.strerror}") from None


def _bulk(store: Store, files: Sequence[str], size: int) -> bool:
    """Drop and rebuild the events index when the load is large next to what is stored."""
    if not store.has_events():
        return True
    rows = size // _line_bytes(files)
    return rows >= BULK_MIN_ROWS and rows >= 2 * store.count_events()


def _line_bytes(files: Sequence[str]) -> int:
    """Average bytes per line from the start of the first named file (at least 1)."""
    for name in files:
        if name != "-":
            with open(name, "rb") as f:
                head = f.read(1 << 16)
            return max(1, len(head) // max(1, head.count(b"\n")))
    return 1


def _chunks(name: str, stdin: BinaryIO | None) -> Iterator[JsonlChunk | CsvChunk]:
    if name == "-":
        if stdin is None:
            raise CannotRun("no standard input to read")
        yield from jsonl_chunks(stdin)
        return
    try:
        with open(name, "rb") as stream:
            if source_format(name) == "csv":
                yield from csv_chunks(stream, name)
            else:
                yield from jsonl_chunks(stream)
    except OSError as exc:
        raise CannotRun(f"cannot read {name}: {exc.strerror}") from None


def _write(store: Store, checked: Checked, summary: FileSummary, result: IngestResult,
           seen: set[str], out: IO[bytes] | None, name: str, bulk: BulkLoad | None) -> None:
    summary.read += checked.read
    summary.accepted += checked.accepted
    summary.rejected += len(checked.rejects)
    for line, code, fld, reason, row in checked.rejects:
        rej = Reject(name, line, code, fld, reason, row)
        if len(result.shown_rejects) < SHOWN_REJECTS:
            result.shown_rejects.append(rej)
        if out is not None:
            out.write(orjson.dumps(rej.as_json(), default=str) + b"\n")
    if checked.shard is not None:  # the rows of a worker, packed: copied in C
        added, created = store.insert_event_shard(checked.shard, bulk)
        result.users_created += created
        summary.duplicates += checked.accepted - added
        return
    if checked.kind == "events":
        if bulk is not None:  # users and the summary are made at the end
            added = store.insert_bulk_events(checked.rows, checked.user_ids, bulk)
        else:
            new = checked.user_ids - seen
            if new:
                result.users_created += store.ensure_users(new)
                if len(seen) > _SEEN_USERS_MAX:
                    seen.clear()
                seen |= new
            added = store.insert_events(checked.rows)
        summary.duplicates += len(checked.rows) - added
        return
    changed = store.write_users(checked.rows)
    summary.duplicates += len(checked.rows) - changed


class _Checker:
    """Checks chunks in this process, or in worker processes with a bounded number in flight
    (so that reading never runs ahead of writing by more than a few chunks).

    The workers are forked when the checker is entered, before the database is opened, so no
    SQLite handle crosses a fork; where fork is unavailable they are spawned."""

    def __init__(self, kind: str, workers: int) -> None:
        self.kind, self.workers = kind, workers
        self.pool: Any = None

    def __enter__(self) -> "_Checker":
        if self.workers > 0:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            self.pool = multiprocessing.get_context(method).Pool(self.workers)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def run(self, spec: Spec, chunks: Iterator[JsonlChunk | CsvChunk]) -> Iterator[Checked]:
        if self.pool is None:
            for chunk in chunks:
                yield check_chunk(self.kind, spec, chunk)
            return
        pending: deque[Any] = deque()
        window = 2 * self.workers + 1
        # events come back as shards the writer copies in C (engine/store/shard.py)
        check = check_chunk_shard if self.kind == "events" and shard.available() else check_chunk
        for chunk in chunks:
            pending.append(self.pool.apply_async(check, (self.kind, spec, chunk)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
