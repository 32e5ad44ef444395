"""Reading ingest files in bounded chunks, with line numbers, and checking each chunk.

A source is JSONL (`.jsonl`, `.ndjson`, or `-` for standard input) or CSV (`.csv`, a header
row; list cells `|`-separated). Chunks hold whole rows and a few MiB at most, so memory does
not grow with the size of a file. `check_chunk` is what worker processes run.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import orjson

from ..errors import CannotRun
from ..store import shard
from .fast import check_lines, fast_events
from .rows import Bad, Spec, event_checker, user_checker

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CHUNK_BYTES = 1 << 21  # 2 MiB of JSONL per chunk
CSV_ROWS = 10_000


@dataclass(frozen=True)
class JsonlChunk:
    first_line: int
    data: bytes


@dataclass(frozen=True)
class CsvChunk:
    rows: tuple[tuple[int, dict[str, Any]], ...]
    size: int  # bytes, roughly, for progress


@dataclass
class Checked:
    """A checked chunk: good rows in storage form, rejects, and how many rows were read."""

    kind: str
    rows: list[Any] = field(default_factory=list)
    rejects: list[tuple[int, str, str, str, Any]] = field(default_factory=list)
    read: int = 0
    size: int = 0
    user_ids: set[str] = field(default_factory=set)
    shard: bytes | None = None  # events only: the good rows packed (store.shard), `rows` empty
    packed: int = 0  # how many rows `shard` holds

    @property
    def accepted(self) -> int:
        return len(self.rows) if self.shard is None else self.packed


def source_format(name: str) -> str:
    if name == "-":
        return "jsonl"
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise CannotRun(f"cannot tell the format of {name}",
                    hint="name the file .jsonl (one JSON object a line) or .csv")


def jsonl_chunks(stream: BinaryIO) -> Iterator[JsonlChunk]:
    line = 1
    rest = b""
    first = True
    while True:
        block = stream.read(CHUNK_BYTES)
        if not block:
            break
        if first:
            if block.startswith(b"\xef\xbb\xbf"):
                block = block[3:]
            first = False
        block = rest + block
        cut = block.rfind(b"\n")
        if cut < 0:
            rest = block
            continue
        data, rest = block[:cut + 1], block[cut + 1:]
        yield JsonlChunk(line, data)
        line += data.count(b"\n")
    if rest:
        yield JsonlChunk(line, rest)


def csv_chunks(stream: BinaryIO, name: str) -> Iterator[CsvChunk]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise CannotRun(f"{name}:1: cannot read the CSV header: {exc}") from None
    if header is None:
        return
    header = [h.strip() for h in header]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise CannotRun(f"{name}:1: the CSV header names `{dupes[0]}` twice")
    rows: list[tuple[int, dict[str, Any]]] = []
    size = 0
    last = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CannotRun(f"{name}:{last + 1}: cannot read the CSV: {exc}") from None
        start, last = last + 1, reader.line_num
        if not cells or cells == [""]:
            continue
        row: dict[Any, Any] = dict(zip(header, cells))
        if len(cells) > len(header):
            row[None] = cells[len(header):]
        size += sum(len(c) for c in cells) + len(cells)
        rows.append((start, row))
        if len(rows) >= CSV_ROWS:
            yield CsvChunk(tuple(rows), size)
            rows, size = [], 0
    if rows:
        yield CsvChunk(tuple(rows), size)


def check_chunk(kind: str, spec: Spec, chunk: JsonlChunk | CsvChunk) -> Checked:
    """Check every row of a chunk (runs in a worker process for big inputs)."""
    checker: Any = event_checker(spec) if kind == "events" else user_checker(spec)
    check = checker.check
    out = Checked(kind)
    rows, rejects = out.rows, out.rejects
    if isinstance(chunk, JsonlChunk):
        out.size = len(chunk.data)
        lines = chunk.data.split(b"\n")
        if kind == "events":
            out.read = check_lines(checker, fast_events(spec), lines, chunk.first_line, rows,
                                   rejects)
        else:
            loads = orjson.loads
            n = chunk.first_line - 1
            for raw in lines:
                n += 1
                if not raw.strip():
                    continue
                out.read += 1
                try:
                    obj = loads(raw)
                except orjson.JSONDecodeError as exc:
                    rejects.append((n, "BAD_JSON", "", f"the line is not valid JSON ({exc})",
                                    raw.decode("utf-8", "replace").rstrip("\r")))
                    continue
                try:
                    rows.append(check(obj))
                except Bad as bad:
                    rejects.append((n, bad.code, bad.field, bad.reason, obj))
    else:
        out.size = chunk.size
        for n, obj in chunk.rows:
            out.read += 1
            try:
                rows.append(check(obj, True))
            except Bad as bad:
                rejects.append((n, bad.code, bad.field, bad.reason,
                                {k if k is not None else "": v for k, v in obj.items()}))
    if kind == "events":
        out.user_ids = {r[1] for r in rows}
    return out


def check_chunk_shard(kind: str, spec: Spec, chunk: JsonlChunk | CsvChunk) -> Checked:
    """`check_chunk` for a worker process of a big events load: the good rows come back packed
    as a shard (see engine/store/shard.py), which the writer copies in C."""
    out = check_chunk(kind, spec, chunk)
    if kind == "events":
        out.shard, out.packed = shard.pack(out.rows, out.user_ids), len(out.rows)
        out.rows, out.user_ids = [], set()
    return out
