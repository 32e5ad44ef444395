"""The engine's own records: fires, the cap ledger, consent, issued coupons and the outbox.

A fire, its cap-ledger rows, its consent consumption and its outbox items are written in one
transaction (`engine.commit`), so a cap is never counted without its send being queued, nor a
send queued without its cap. The idempotency key of a fire is (rule id, user id, occurrence):
committing the same fire twice is a no-op.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import orjson

# The ledger as engine migration 0003 created it (kept verbatim: a migration's statements
# never change). Migration 0006 turns it into LEDGER_TABLES below.
LEDGER_TABLES_0003 = (
    """CREATE TABLE IF NOT EXISTS fires (
           fire_id TEXT PRIMARY KEY,
           rule_id TEXT NOT NULL,
           user_id TEXT NOT NULL,
           occurrence TEXT NOT NULL,
           outcome TEXT NOT NULL,           -- fire | deferred | suppressed
           reason TEXT,
           variant TEXT,
           event_id TEXT,
           tick_at INTEGER NOT NULL,        -- µs
           eval_at INTEGER NOT NULL,
           content_hash TEXT NOT NULL DEFAULT '',
           git_commit TEXT NOT NULL DEFAULT '',
           UNIQUE (rule_id, user_id, occurrence))""",
    "CREATE INDEX IF NOT EXISTS fires_user_rule ON fires(user_id, rule_id, tick_at)",
    """CREATE TABLE IF NOT EXISTS cap_ledger (
           user_id TEXT NOT NULL,
           at INTEGER NOT NULL,
           rule_id TEXT NOT NULL,
           category TEXT NOT NULL,
           channel TEXT NOT NULL DEFAULT '',
           fire_id TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS cap_ledger_user ON cap_ledger(user_id, at)",
    """CREATE TABLE IF NOT EXISTS consent_used (
           user_id TEXT NOT NULL,
           template TEXT NOT NULL,
           at INTEGER NOT NULL,
           item_id TEXT NOT NULL PRIMARY KEY)""",
    "CREATE INDEX IF NOT EXISTS consent_used_user ON consent_used(user_id, template)",
    """CREATE TABLE IF NOT EXISTS consent_zeroed (
           user_id TEXT NOT NULL,
           template TEXT NOT NULL,
           at INTEGER NOT NULL,
           PRIMARY KEY (user_id, template)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS issued_coupons (
           coupon_id TEXT PRIMARY KEY,
           item_id TEXT NOT NULL UNIQUE,
           fire_id TEXT NOT NULL,
           user_id TEXT NOT NULL,
           stock TEXT NOT NULL,
           rule_id TEXT NOT NULL,
           value_fen INTEGER NOT NULL,
           issued_at INTEGER NOT NULL,
           expires_at INTEGER NOT NULL,
           used_at INTEGER)""",
    "CREATE INDEX IF NOT EXISTS issued_coupons_expiry ON issued_coupons(expires_at)",
    "CREATE INDEX IF NOT EXISTS issued_coupons_fire ON issued_coupons(fire_id)",
    """CREATE TABLE IF NOT EXISTS coupon_reserved (
           item_id TEXT PRIMARY KEY,
           stock TEXT NOT NULL,
           value_fen INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS outbox (
           item_id TEXT PRIMARY KEY,
           fire_id TEXT NOT NULL,
           step INTEGER NOT NULL,
           kind TEXT NOT NULL,               -- coupon | message | points | tag | webhook
           channel TEXT NOT NULL DEFAULT '',
           user_id TEXT NOT NULL,
           spec TEXT NOT NULL,               -- the action as written (JSON)
           due_at INTEGER NOT NULL,
           state TEXT NOT NULL,              -- pending | sending | sent | failed | unknown | dead
           attempts INTEGER NOT NULL DEFAULT 0,
           next_at INTEGER NOT NULL,
           last_code TEXT NOT NULL DEFAULT '',
           last_detail TEXT NOT NULL DEFAULT '',
           provider_id TEXT,
           updated_at INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS outbox_ready ON outbox(state, next_at)",
    "CREATE INDEX IF NOT EXISTS outbox_fire ON outbox(fire_id, step)",
)


# The ledger as it is now. Every index costs each of the hundreds of thousands of rows a large
# tick writes, so there are only the ones a query needs:
# - a fire's id is a digest of its idempotency key (rule id, user id, occurrence), so the
#   primary key on fire_id is the idempotency key's uniqueness; no second unique index;
# - an outbox item's id is `<fire id>_<step>` (fire ids have a fixed length and no `_`), so
#   the items of a fire are the primary-key range [fire_id || '_', fire_id || '`'): no index
#   on outbox(fire_id);
# - the action JSON of an outbox item is stored once per distinct action in outbox_specs
#   (a tick queues the same action for every user of a rule);
# - a coupon stock's budget use is one counter row per stock, added to once per group of new
#   fires, rather than a row per reserved coupon summed at every tick.
LEDGER_TABLES = (
    """CREATE TABLE IF NOT EXISTS fires (
           fire_id TEXT PRIMARY KEY,
           rule_id TEXT NOT NULL,
           user_id TEXT NOT NULL,
           occurrence TEXT NOT NULL,
           outcome TEXT NOT NULL,           -- fire | deferred | suppressed
           reason TEXT,
           variant TEXT,
           event_id TEXT,
           tick_at INTEGER NOT NULL,        -- µs
           eval_at INTEGER NOT NULL,
           content_hash TEXT NOT NULL DEFAULT '',
           git_commit TEXT NOT NULL DEFAULT '')""",
    "CREATE INDEX IF NOT EXISTS fires_user_rule ON fires(user_id, rule_id, tick_at)",
    """CREATE TABLE IF NOT EXISTS cap_ledger (
           user_id TEXT NOT NULL,
           at INTEGER NOT NULL,
           rule_id TEXT NOT NULL,
           category TEXT NOT NULL,
           channel TEXT NOT NULL DEFAULT '',
           fire_id TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS cap_ledger_user ON cap_ledger(user_id, at)",
    """CREATE TABLE IF NOT EXISTS consent_used (
           user_id TEXT NOT NULL,
           template TEXT NOT NULL,
           at INTEGER NOT NULL,
           item_id TEXT NOT NULL PRIMARY KEY)""",
    "CREATE INDEX IF NOT EXISTS consent_used_user ON consent_used(user_id, template)",
    """CREATE TABLE IF NOT EXISTS consent_zeroed (
           user_id TEXT NOT NULL,
           template TEXT NOT NULL,
           at INTEGER NOT NULL,
           PRIMARY KEY (user_id, template)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS issued_coupons (
           coupon_id TEXT PRIMARY KEY,
           item_id TEXT NOT NULL UNIQUE,
           fire_id TEXT NOT NULL,
           user_id TEXT NOT NULL,
           stock TEXT NOT NULL,
           rule_id TEXT NOT NULL,
           value_fen INTEGER NOT NULL,
           issued_at INTEGER NOT NULL,
           expires_at INTEGER NOT NULL,
           used_at INTEGER)""",
    "CREATE INDEX IF NOT EXISTS issued_coupons_expiry ON issued_coupons(expires_at)",
    "CREATE INDEX IF NOT EXISTS issued_coupons_fire ON issued_coupons(fire_id)",
    """CREATE TABLE IF NOT EXISTS coupon_budget_used (
           stock TEXT PRIMARY KEY,
           count INTEGER NOT NULL,          -- coupons reserved by committed fires
           fen INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS outbox_specs (
           spec_id INTEGER PRIMARY KEY,
           spec TEXT NOT NULL UNIQUE)      -- an action as written (JSON)""",
    """CREATE TABLE IF NOT EXISTS outbox (
           item_id TEXT PRIMARY KEY,        -- <fire id>_<step>
           fire_id TEXT NOT NULL,
           step INTEGER NOT NULL,
           kind TEXT NOT NULL,               -- coupon | message | points | tag | webhook
           channel TEXT NOT NULL DEFAULT '',
           user_id TEXT NOT NULL,
           spec_id INTEGER NOT NULL,         -- outbox_specs
           due_at INTEGER NOT NULL,
           state TEXT NOT NULL,              -- pending | sending | sent | failed | unknown | dead
           attempts INTEGER NOT NULL DEFAULT 0,
           next_at INTEGER NOT NULL,
           last_code TEXT NOT NULL DEFAULT '',
           last_detail TEXT NOT NULL DEFAULT '',
           provider_id TEXT,
           updated_at INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS outbox_ready ON outbox(state, next_at)",
)

_FIRE_COLUMNS = ("fire_id, rule_id, user_id, occurrence, outcome, reason, variant, event_id, "
                 "tick_at, eval_at, content_hash, git_commit")
_OUTBOX_COLUMNS = ("item_id, fire_id, step, kind, channel, user_id, {spec}, due_at, state, "
                   "attempts, next_at, last_code, last_detail, provider_id, updated_at")

# Engine migration "0007 leaner ledger": LEDGER_TABLES_0003 (plus the report's fires_tick index
# of 0004) -> LEDGER_TABLES. Rows keep their rowids; every index is rebuilt.
def _ddl(table: str) -> str:
    return next(sql for sql in LEDGER_TABLES if sql.startswith(f"CREATE TABLE IF NOT EXISTS {table} ("))


MIGRATION_0007 = (
    _ddl("fires").replace("IF NOT EXISTS fires", "zl_fires_0007"),
    f"INSERT INTO zl_fires_0007(rowid, {_FIRE_COLUMNS}) SELECT rowid, {_FIRE_COLUMNS} FROM fires",
    "DROP TABLE fires",
    "ALTER TABLE zl_fires_0007 RENAME TO fires",
    "CREATE INDEX IF NOT EXISTS fires_user_rule ON fires(user_id, rule_id, tick_at)",
    "CREATE INDEX IF NOT EXISTS fires_tick ON fires(tick_at, rule_id)",
    _ddl("outbox_specs"),
    "INSERT OR IGNORE INTO outbox_specs(spec) SELECT spec FROM outbox ORDER BY rowid",
    _ddl("outbox").replace("IF NOT EXISTS outbox", "zl_outbox_0007"),
    f"INSERT INTO zl_outbox_0007(rowid, {_OUTBOX_COLUMNS.format(spec='spec_id')}) "
    f"SELECT o.rowid, {_OUTBOX_COLUMNS.format(spec='s.spec_id')} FROM outbox o "
    "JOIN outbox_specs s ON s.spec = o.spec",
    "DROP TABLE outbox",
    "ALTER TABLE zl_outbox_0007 RENAME TO outbox",
    "CREATE INDEX IF NOT EXISTS outbox_ready ON outbox(state, next_at)",
    _ddl("coupon_budget_used"),
    "INSERT INTO coupon_budget_used SELECT stock, COUNT(*), SUM(value_fen) FROM coupon_reserved "
    "GROUP BY stock",
    "DROP TABLE coupon_reserved",
)


def ensure_ledger(conn: Any) -> None:
    from .queries import ensure_state_tables

    ensure_state_tables(conn)
    for sql in LEDGER_TABLES:
        conn.execute(sql)


def has_ledger(conn: Any) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'fires'").fetchone() is not None


def fire_id(rule_id: str, user_id: str, occurrence: str) -> str:
    """Deterministic id of the idempotency key (rule id, user id, occurrence)."""
    digest = hashlib.sha256(f"{rule_id}\x1f{user_id}\x1f{occurrence}".encode("utf-8")).hexdigest()
    return "f" + digest[:31]


def item_id(fire: str, step: int) -> str:
    """Outbox item id; also the WeChat Pay out_request_no (letters, digits, `_`)."""
    return f"{fire}_{step}"


def fire_items(fire: str) -> tuple[str, str]:
    """The outbox items of a fire are the item ids in [lo, hi): `<fire>_0`, `<fire>_1` ...
    (a fire id has a fixed length and no `_`, and "`" is the character after "_": the
    primary key's BINARY collation compares bytes)."""
    return f"{fire}_", f"{fire}`"


# The same range in SQL, for joins: ITEMS_OF_FIRE.format(item="o.item_id", fire="f.fire_id")
ITEMS_OF_FIRE = "({item} >= {fire} || '_' AND {item} < {fire} || '`')"


# -- reads used by the policy ----------------------------------------------------------------

def rule_fires_since(conn: Any, user_id: str, rule_id: str, since: int) -> int:
    if not has_ledger(conn):
        return 0
    row = conn.execute("SELECT COUNT(*) FROM fires WHERE user_id = ? AND rule_id = ? AND "
                       "outcome IN ('fire', 'deferred') AND tick_at >= ?",
                       (user_id, rule_id, since)).fetchone()
    return int(row[0])


def cap_count(conn: Any, user_id: str, since: int, category: str | None,
              channel: str | None) -> int:
    if not has_ledger(conn):
        return 0
    sql = "SELECT COUNT(DISTINCT fire_id) FROM cap_ledger WHERE user_id = ? AND at >= ?"
    params: list[Any] = [user_id, since]
    if category is not None:
        sql += " AND category = ?"
        params.append(category)
    if channel is not None:
        sql += " AND channel = ?"
        params.append(channel)
    return int(conn.execute(sql, params).fetchone()[0])


def consent_used(conn: Any, user_id: str, template: str, after: int) -> int:
    if not has_ledger(conn):
        return 0
    return int(conn.execute("SELECT COUNT(*) FROM consent_used WHERE user_id = ? AND "
                            "template = ? AND at > ?", (user_id, template, after)).fetchone()[0])


def consent_zeroed_at(conn: Any, user_id: str, template: str) -> int | None:
    if not has_ledger(conn):
        return None
    row = conn.execute("SELECT at FROM consent_zeroed WHERE user_id = ? AND template = ?",
                       (user_id, template)).fetchone()
    return None if row is None else int(row[0])


def coupons_committed(conn: Any, stock: str) -> tuple[int, int]:
    """(count, fen) of coupons of a stock issued or reserved by committed fires."""
    if not has_ledger(conn):
        return (0, 0)
    row = conn.execute("SELECT count, fen FROM coupon_budget_used WHERE stock = ?",
                       (stock,)).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


# -- writes (inside one transaction) ---------------------------------------------------------

@dataclass(frozen=True)
class FireSpan:
    """The fires one `insert_fires` call wrote: rowid in (lo, hi]. A fire committed before is
    ignored, and SQLite gives each new row max(rowid) + 1, so the range holds exactly the new
    rows; the outbox, consent, coupon and cap rows are then derived from it in SQL."""
    lo: int
    hi: int
    count: int


def insert_fires(conn: Any, rule_id: str, tick_at: int, content_hash: str, git_commit: str,
                 rows: Sequence[tuple[Any, ...]]) -> FireSpan:
    """Insert a rule's fires of one tick: `rows` are (fire_id, user_id, occurrence, outcome,
    reason, variant, event_id, eval_at); those whose idempotency key was committed before are
    skipped. Returns the span of the new rows.

    The rows go in as one JSON array read by `json_each`, the columns every row shares bound
    once: a third less CPU than binding twelve parameters per row with `executemany`."""
    top = "SELECT COALESCE(MAX(rowid), 0) FROM fires"
    lo = int(conn.execute(top).fetchone()[0])
    count = conn.execute(
        "INSERT OR IGNORE INTO fires SELECT j.value ->> 0, ?1, j.value ->> 1, j.value ->> 2, "
        "j.value ->> 3, j.value ->> 4, j.value ->> 5, j.value ->> 6, ?2, j.value ->> 7, ?3, ?4 "
        "FROM json_each(?5) j",
        (rule_id, tick_at, content_hash, git_commit, orjson.dumps(rows).decode())).rowcount
    hi = int(conn.execute(top).fetchone()[0]) if count else lo
    return FireSpan(lo, hi, int(count))


_SPAN = "FROM fires WHERE rowid > ? AND rowid <= ?"


def spec_id(conn: Any, spec: str) -> int:
    """The id of an action's JSON in outbox_specs (added the first time it is queued)."""
    conn.execute("INSERT OR IGNORE INTO outbox_specs(spec) VALUES (?)", (spec,))
    return int(conn.execute("SELECT spec_id FROM outbox_specs WHERE spec = ?",
                            (spec,)).fetchone()[0])


def outbox_from_fires(conn: Any, span: FireSpan, step: int, kind: str, channel: str,
                      spec: int, due: int, at: int) -> int:
    """One pending outbox item per new fire of the span for this action step (`spec` from
    `spec_id`); the item id is `item_id(fire, step)`. Returns the number of items."""
    return int(conn.execute(
        "INSERT OR IGNORE INTO outbox(item_id, fire_id, step, kind, channel, user_id, spec_id, "
        "due_at, state, attempts, next_at, updated_at) SELECT fire_id || ?, fire_id, ?, ?, ?, "
        f"user_id, ?, ?, 'pending', 0, ?, ? {_SPAN}",
        (f"_{step}", step, kind, channel, spec, due, due, at, span.lo, span.hi)).rowcount)


def consent_from_fires(conn: Any, span: FireSpan, step: int, template: str, at: int) -> None:
    """Each new fire of the span consumes one subscription consent for the template."""
    conn.execute(f"INSERT OR IGNORE INTO consent_used SELECT user_id, ?, ?, fire_id || ? {_SPAN}",
                 (template, at, f"_{step}", span.lo, span.hi))


def reserve_from_fires(conn: Any, span: FireSpan, stock: str, value_fen: int) -> None:
    """Each new fire of the span reserves one coupon of the stock."""
    conn.execute("INSERT INTO coupon_budget_used VALUES (?1, ?2, ?2 * ?3) ON CONFLICT(stock) "
                 "DO UPDATE SET count = count + excluded.count, fen = fen + excluded.fen",
                 (stock, span.count, value_fen))


def caps_from_fires(conn: Any, span: FireSpan, at: int, category: str, channel: str) -> None:
    """A cap-ledger row per new fire of the span (a marketing rule's send on the channel)."""
    conn.execute(f"INSERT INTO cap_ledger SELECT user_id, ?, rule_id, ?, ?, fire_id {_SPAN}",
                 (at, category, channel, span.lo, span.hi))


def zero_consent(conn: Any, user_id: str, template: str, at: int) -> None:
    conn.execute("INSERT INTO consent_zeroed VALUES (?, ?, ?) ON CONFLICT(user_id, template) "
                 "DO UPDATE SET at = MAX(at, excluded.at)", (user_id, template, at))


def set_tick(conn: Any, rule_id: str, at: int, content_hash: str) -> None:
    conn.execute("INSERT INTO rule_ticks VALUES (?, ?, ?) ON CONFLICT(rule_id) DO UPDATE SET "
                 "last_tick = excluded.last_tick, content_hash = excluded.content_hash",
                 (rule_id, at, content_hash))


def set_members(conn: Any, rule_id: str, left: Sequence[str], entered: Sequence[str],
                at: int) -> None:
    if left:
        conn.execute("DELETE FROM rule_members WHERE rule_id = ? AND user_id IN "
                     "(SELECT value FROM json_each(?))", (rule_id, orjson.dumps(left).decode()))
    if entered:
        conn.execute("INSERT OR IGNORE INTO rule_members SELECT ?, value, ? FROM json_each(?)",
                     (rule_id, at, orjson.dumps(entered).decode()))


# -- the outbox ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    item_id: str
    fire_id: str
    step: int
    kind: str
    channel: str
    user_id: str
    spec: dict[str, Any]
    due_at: int
    state: str
    attempts: int


def ready_items(conn: Any, at: int, limit: int = 10_000) -> list[Item]:
    """Pending items whose time has come and whose previous step (if any) was sent."""
    rows = conn.execute(
        "SELECT o.item_id, o.fire_id, o.step, o.kind, o.channel, o.user_id, s.spec, o.due_at, "
        "o.state, o.attempts FROM outbox o JOIN outbox_specs s ON s.spec_id = o.spec_id "
        "WHERE o.state = 'pending' AND o.next_at <= ? AND (o.step = 0 OR EXISTS (SELECT 1 "
        "FROM outbox p WHERE p.item_id = o.fire_id || '_' || (o.step - 1) "
        "AND p.state = 'sent')) ORDER BY o.next_at, o.item_id LIMIT ?",
        (at, limit)).fetchall()
    specs: dict[str, dict[str, Any]] = {}  # one rule's items share their action's JSON
    for r in rows:
        if r[6] not in specs:
            specs[r[6]] = orjson.loads(r[6])
    return [Item(r[0], r[1], r[2], r[3], r[4], r[5], specs[r[6]], r[7], r[8], r[9])
            for r in rows]


def mark(conn: Any, item: str, state: str, at: int, code: str = "", detail: str = "",
         provider_id: str | None = None, next_at: int | None = None,
         attempts_delta: int = 0) -> None:
    conn.execute("UPDATE outbox SET state = ?, updated_at = ?, last_code = ?, last_detail = ?, "
                 "provider_id = COALESCE(?, provider_id), next_at = COALESCE(?, next_at), "
                 "attempts = attempts + ? WHERE item_id = ?",
                 (state, at, code, detail[:500], provider_id, next_at, attempts_delta, item))


def mark_sending(conn: Any, items: Iterable[str], at: int) -> None:
    """Items about to be handed to their channel (committed before any provider call). One
    statement for the batch: a delivery run's worker threads hold the GIL, and every statement
    executed waits to get it back."""
    conn.execute("UPDATE outbox SET state = 'sending', updated_at = ?, last_code = '', "
                 "last_detail = '' WHERE item_id IN (SELECT value FROM json_each(?))",
                 (at, orjson.dumps(list(items)).decode()))


def mark_sent(conn: Any, rows: Sequence[tuple[str, str, str, str | None]], at: int) -> None:
    """`mark(item, "sent", at, code, detail, provider_id)` of many (item, code, detail,
    provider id) rows in one statement."""
    conn.execute(
        "UPDATE outbox SET state = 'sent', updated_at = ?1, last_code = j.value ->> 1, "
        "last_detail = substr(j.value ->> 2, 1, 500), "
        "provider_id = COALESCE(j.value ->> 3, provider_id) FROM json_each(?2) j "
        "WHERE outbox.item_id = j.value ->> 0", (at, orjson.dumps(rows).decode()))


def abandon_later_steps(conn: Any, fire: str, step: int, at: int, reason: str) -> None:
    """When a step fails for good, the steps after it (which use its result) never run."""
    lo, hi = fire_items(fire)
    conn.execute("UPDATE outbox SET state = 'failed', last_code = 'previous_step', "
                 "last_detail = ?, updated_at = ? WHERE item_id >= ? AND item_id < ? AND "
                 "step > ? AND state = 'pending'", (reason, at, lo, hi, step))


def change_tag(conn: Any, user_id: str, attr: str, tag: str, add: bool) -> None:
    """Add or remove one value of a list attribute (the JSON column and the inverted index)."""
    from .dialect import SQLITE

    col = SQLITE.ident(attr)
    row = conn.execute(f"SELECT {col} FROM users WHERE user_id = ?", (user_id,)).fetchone()
    items = list(orjson.loads(row[0])) if row and row[0] else []
    if add and tag not in items:
        items.append(tag)
    elif not add:
        items = [x for x in items if x != tag]
    conn.execute(f"UPDATE users SET {col} = ? WHERE user_id = ?",
                 (orjson.dumps(items).decode(), user_id))
    if add:
        conn.execute("INSERT OR IGNORE INTO user_list_items(attr, value, user_id) VALUES (?, ?, ?)",
                     (attr, tag, user_id))
    else:
        conn.execute("DELETE FROM user_list_items WHERE attr = ? AND value = ? AND user_id = ?",
                     (attr, tag, user_id))


def fail_orphans(conn: Any, at: int) -> int:
    """Pending steps after a step that ended unsent (failed, dead, unknown) never run."""
    return int(conn.execute(
        "UPDATE outbox SET state = 'failed', last_code = 'previous_step', "
        "last_detail = 'an earlier step of this fire did not complete', updated_at = ? "
        "WHERE state = 'pending' AND EXISTS (SELECT 1 FROM outbox p WHERE "
        f"{ITEMS_OF_FIRE.format(item='p.item_id', fire='outbox.fire_id')} "
        "AND p.step < outbox.step AND "
        "p.state IN ('failed', 'dead', 'unknown'))", (at,)).rowcount)


def recover_interrupted(conn: Any, idempotent_kinds: set[str], at: int) -> tuple[int, int]:
    """After a crash: `sending` items of idempotent channels go back to pending (resent with
    the same request number); the others become `unknown` and are never re-sent."""
    back = conn.execute("UPDATE outbox SET state = 'pending', updated_at = ? WHERE "
                        "state = 'sending' AND kind IN ('coupon', 'points', 'tag')",
                        (at,)).rowcount
    unknown = conn.execute("UPDATE outbox SET state = 'unknown', last_code = 'interrupted', "
                           "last_detail = 'the send began but its outcome is unknown', "
                           "updated_at = ? WHERE state = 'sending'", (at,)).rowcount
    del idempotent_kinds
    fail_orphans(conn, at)
    return int(back), int(unknown)


def outbox_counts(conn: Any) -> dict[str, int]:
    if not has_ledger(conn):
        return {}
    return {s: int(n) for s, n in conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")}


def fire_context(conn: Any, fire: str) -> dict[str, Any]:
    row = conn.execute("SELECT rule_id, user_id, occurrence, variant, event_id, tick_at FROM fires "
                       "WHERE fire_id = ?", (fire,)).fetchone()
    if row is None:
        return {}
    return {"rule_id": row[0], "user_id": row[1], "occurrence": row[2], "variant": row[3],
            "event_id": row[4], "tick_at": row[5]}


def coupon_of_fire(conn: Any, fire: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT coupon_id, stock, value_fen, issued_at, expires_at FROM "
                       "issued_coupons WHERE fire_id = ? ORDER BY issued_at DESC LIMIT 1",
                       (fire,)).fetchone()
    if row is None:
        return None
    return {"coupon_id": row[0], "stock": row[1], "value_fen": row[2], "issued_at": row[3],
            "expires_at": row[4]}


def _ids(values: Iterable[str]) -> str:
    return orjson.dumps(sorted(set(values))).decode()


def fire_contexts(conn: Any, fires: Iterable[str]) -> dict[str, dict[str, Any]]:
    """`fire_context` of many fires in one query (a delivery batch)."""
    return {r[0]: {"rule_id": r[1], "user_id": r[2], "occurrence": r[3], "variant": r[4],
                   "event_id": r[5], "tick_at": r[6]} for r in conn.execute(
        "SELECT fire_id, rule_id, user_id, occurrence, variant, event_id, tick_at FROM fires "
        "WHERE fire_id IN (SELECT value FROM json_each(?))", (_ids(fires),))}


def coupons_of_fires(conn: Any, fires: Iterable[str]) -> dict[str, dict[str, Any]]:
    """`coupon_of_fire` of many fires in one query."""
    out: dict[str, dict[str, Any]] = {}
    for r in conn.execute("SELECT fire_id, coupon_id, stock, value_fen, issued_at, expires_at "
                          "FROM issued_coupons WHERE fire_id IN (SELECT value FROM json_each(?)) "
                          "ORDER BY issued_at DESC", (_ids(fires),)):
        out.setdefault(r[0], {"coupon_id": r[1], "stock": r[2], "value_fen": r[3],
                              "issued_at": r[4], "expires_at": r[5]})
    return out


def coupon_by_id(conn: Any, coupon_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT coupon_id, stock, value_fen, issued_at, expires_at FROM "
                       "issued_coupons WHERE coupon_id = ?", (coupon_id,)).fetchone()
    return None if row is None else dict(zip(
        ("coupon_id", "stock", "value_fen", "issued_at", "expires_at"), row))


def users_by_id(conn: Any, users: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Stored user rows (as `Store.user` gives them) of many users in one query."""
    cur = conn.execute("SELECT * FROM users WHERE user_id IN (SELECT value FROM json_each(?))",
                       (_ids(users),))
    names = [d[0] for d in cur.description]
    return {row["user_id"]: row for row in (dict(zip(names, r)) for r in cur)}


def events_by_id(conn: Any, events: Iterable[str]) -> dict[str, tuple[int, int | None, Any]]:
    """(ts, amount_fen, props JSON) of events by id, in one query."""
    return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
        "SELECT event_id, ts, amount_fen, props FROM events WHERE event_id IN "
        "(SELECT value FROM json_each(?))", (_ids(events),))}


def insert_coupon(conn: Any, coupon_id: str, item: str, fire: str, user_id: str, stock: str,
                  rule_id: str, value_fen: int, issued_at: int, expires_at: int) -> None:
    conn.execute("INSERT OR IGNORE INTO issued_coupons VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                 (coupon_id, item, fire, user_id, stock, rule_id, value_fen, issued_at,
                  expires_at))


# -- bulk reads for one tick: one query per rule and check, never one per user --------------

CANDIDATES = "zl_candidates"


def load_candidates(conn: Any, user_ids: Iterable[str]) -> None:
    """The users a rule would fire for, in a temp table the bulk queries join against."""
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {CANDIDATES} (user_id TEXT PRIMARY KEY) "
                 "WITHOUT ROWID")
    conn.execute(f"DELETE FROM {CANDIDATES}")
    conn.execute(f"INSERT OR IGNORE INTO {CANDIDATES} SELECT value FROM json_each(?)",
                 (orjson.dumps(list(user_ids)).decode(),))


def bulk_rule_fires(conn: Any, rule_id: str, since: int) -> dict[str, int]:
    if not has_ledger(conn):
        return {}
    return dict(conn.execute(
        f"SELECT f.user_id, COUNT(*) FROM fires f JOIN {CANDIDATES} c ON c.user_id = f.user_id "
        "WHERE f.rule_id = ? AND f.outcome IN ('fire', 'deferred') AND f.tick_at >= ? "
        "GROUP BY f.user_id", (rule_id, since)))


def bulk_caps(conn: Any, since: int, category: str | None, channel: str | None) -> dict[str, int]:
    if not has_ledger(conn):
        return {}
    sql = (f"SELECT l.user_id, COUNT(DISTINCT l.fire_id) FROM cap_ledger l JOIN {CANDIDATES} c "
           "ON c.user_id = l.user_id WHERE l.at >= ?")
    params: list[Any] = [since]
    if category is not None:
        sql += " AND l.category = ?"
        params.append(category)
    if channel is not None:
        sql += " AND l.channel = ?"
        params.append(channel)
    return dict(conn.execute(sql + " GROUP BY l.user_id", params))


def bulk_consent(conn: Any, type_id: int | None, template: str, before: int
                 ) -> tuple[dict[str, int], dict[str, int]]:
    """(accepts, sends) per candidate user for a template: accepts from the consent_accepts
    table the events triggers keep (engine/store/consent.py), sends from the ledger, both
    after the user's quota was last zeroed."""
    from .consent import granted

    if type_id is None:
        return {}, {}
    ledger = has_ledger(conn)
    accepts = granted(conn, CANDIDATES, template, before, zeroed=ledger)
    if not ledger:
        return accepts, {}
    used = dict(conn.execute(
        f"SELECT c.user_id, COUNT(*) FROM {CANDIDATES} c CROSS JOIN consent_used u "
        "ON u.user_id = c.user_id AND u.template = ?1 LEFT JOIN consent_zeroed z "
        "ON z.user_id = c.user_id AND z.template = ?1 WHERE (z.at IS NULL OR u.at > z.at) "
        "GROUP BY c.user_id", (template,)))
    return accepts, used


def bulk_absent(conn: Any, attr: str) -> set[str]:
    """Candidates whose attribute (openid, phone ...) is NOT set (usually the few)."""
    from .dialect import SQLITE

    col = SQLITE.ident(attr)
    return {u for (u,) in conn.execute(
        f"SELECT c.user_id FROM {CANDIDATES} c LEFT JOIN users u ON u.user_id = c.user_id "
        f"WHERE u.{col} IS NULL OR u.{col} = ''")}
