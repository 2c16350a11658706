"""The journal: the single durable bus and buffer (ARCHITECTURE §2).

SQLite in WAL mode, ``synchronous=FULL``: a commit that returned survives a crash or a
power cut. Every event is appended once, with a UUIDv7 id and a local sequence number
(``seq``, strictly increasing in commit order, never reused). Each stage keeps a cursor
in ``stages`` and commits its output *and* its cursor advance in one transaction
(:meth:`Journal.stage`), so a crash at any instant neither loses nor doubles work.
Several processes may read and write at once (WAL + busy timeout + BEGIN IMMEDIATE).
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import msgspec

from .errors import JournalError
from .ids import uuid7

log = logging.getLogger(__name__)

JOURNAL_NAME = "journal.db"
WAL_LIMIT = 8 * 1024 * 1024
"""The WAL is truncated back to this after a checkpoint: it does not grow with uptime."""
JOURNAL_MODE = 0o660
"""Read and written by the four daemons' users, through their shared group; nobody else."""


def _m1(db: sqlite3.Connection) -> None:
    _script(db, """
    CREATE TABLE events(
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        id        TEXT NOT NULL UNIQUE,
        type      TEXT NOT NULL,
        point     TEXT,
        ts        INTEGER NOT NULL,      -- wall time, UTC ms (corrected once the clock syncs)
        mono      INTEGER,               -- CLOCK_MONOTONIC ns at capture, if taken on this box
        boot      TEXT,                  -- boot id at capture
        synced    INTEGER NOT NULL DEFAULT 1,
        ts_raw    INTEGER,               -- the original ts when it was corrected
        source    TEXT NOT NULL,
        key       TEXT UNIQUE,           -- idempotency key: the same input never lands twice
        data      TEXT NOT NULL          -- the event's own fields, JSON
    );
    CREATE INDEX events_type_seq ON events(type, seq);
    CREATE INDEX events_ts ON events(ts);
    CREATE INDEX events_unsynced ON events(boot) WHERE synced = 0;
    CREATE TABLE stages(
        name      TEXT PRIMARY KEY,
        cursor    INTEGER NOT NULL DEFAULT 0,   -- last journal seq whose effects are committed
        state     BLOB,                         -- the stage's snapshot at that cursor
        updated   INTEGER NOT NULL,             -- wall ms of the last commit (heartbeat)
        info      TEXT                          -- JSON: pid, version, counters
    );
    """)


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run statements one by one: executescript() would commit the open transaction."""
    for stmt in sql.split(";"):
        lines = [ln.split("--")[0] for ln in stmt.splitlines()]
        stmt = "\n".join(lines).strip()
        if stmt:
            db.execute(stmt)


RECORD_TYPES = ("contact", "rating_settled", "sale_settled", "call_settled")
"""The core's settled records: what metrics are computed from (appliance.vocabulary)."""


def _m2(db: sqlite3.Connection) -> None:
    """The core's settled records indexed by the time they count at and by point, so a
    report reads its period's rows only (ARCHITECTURE §2, §10)."""
    _script(db, """
    CREATE TABLE records(
        seq    INTEGER PRIMARY KEY,     -- the settled record's event
        type   TEXT NOT NULL,
        point  TEXT,
        t      INTEGER NOT NULL,        -- when it counts (§4: a contact at its open time, others at their own)
        owner  TEXT
    );
    CREATE INDEX records_t ON records(t);
    CREATE INDEX records_point_t ON records(point, t);
    """)
    from .timefmt import parse_ts
    rows = db.execute(f"SELECT seq, type, point, ts, data FROM events WHERE type IN "
                      f"({','.join('?' * len(RECORD_TYPES))})", RECORD_TYPES)
    for seq, type_, point, ts, data in rows.fetchall():
        d = json.loads(data)
        t = parse_ts(d["opened"]) if type_ == "contact" and isinstance(d.get("opened"), str) else ts
        db.execute("INSERT OR IGNORE INTO records VALUES (?,?,?,?,?)", (seq, type_, point, t, d.get("owner")))


def _m3(db: sqlite3.Connection) -> None:
    """The records index clustered by (kind, time) and carrying the numbers metrics need, so
    a report sums its period's rows in SQLite without decoding a record
    (appliance.records)."""
    from . import records as rec
    _script(db, """
    DROP TABLE records;
    CREATE TABLE records(
        kind        INTEGER NOT NULL,   -- 0 contact, 1 settled rating, 2 sale, 3 call
        t           INTEGER NOT NULL,   -- when it counts (§4), UTC ms
        seq         INTEGER NOT NULL,   -- the settled record's event
        point       TEXT,
        owner       TEXT,
        dur_ms      INTEGER,            -- contact: length
        value       INTEGER,            -- contact: the rating that counts, rating: its value
        shape       INTEGER NOT NULL,   -- contact: tag bits | class << 16, rating: status | class << 16
        superseded  INTEGER,            -- contact: ratings that no longer count
        cents       INTEGER,            -- sale: amount (NULL from schema 5 on when it has none)
        answered_ms INTEGER,            -- call: time to answer
        PRIMARY KEY (kind, t, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX records_seq ON records(seq)
    """)
    from .timefmt import parse_ts
    rows = db.execute(f"SELECT seq, type, point, ts, data FROM events WHERE type IN "
                      f"({','.join('?' * len(RECORD_TYPES))})", RECORD_TYPES)
    while batch := rows.fetchmany(5000):
        out = []
        for seq, type_, point, ts, data in batch:
            d = json.loads(data)
            t = parse_ts(d["opened"]) if type_ == "contact" and isinstance(d.get("opened"), str) else ts
            out.append(rec.columns(seq, type_, point, t, d.get("owner"), d)[:11])     # the columns of then
        db.executemany(f"INSERT OR IGNORE INTO records VALUES ({','.join('?' * 11)})", out)


def _m4(db: sqlite3.Connection) -> None:
    """Each destination's outbox (appliance.notify): messages routed and not yet confirmed,
    and the dead-letter list."""
    _script(db, """
    CREATE TABLE IF NOT EXISTS outbox(
        destination TEXT NOT NULL,
        key         TEXT NOT NULL,      -- idempotency key: one message per event and destination
        created     INTEGER NOT NULL,   -- wall ms when it was routed
        due         INTEGER NOT NULL,   -- wall ms of its next attempt
        attempts    INTEGER NOT NULL DEFAULT 0,
        dead        INTEGER NOT NULL DEFAULT 0,
        last_error  TEXT,
        message     BLOB NOT NULL,      -- appliance.routing.Message, JSON
        PRIMARY KEY (destination, key)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS outbox_due ON outbox(destination, dead, due)
    """)


def _m5(db: sqlite3.Connection) -> None:
    """Happy scores in the records index (happy index), a receipt's items in ``value`` and
    ``cents`` NULL for a receipt without an amount (average receipt, items per receipt count
    only the receipts that carry them), filled from the records' own fields. Records settled
    before this version carry no happy score or items."""
    _script(db, """
    ALTER TABLE records ADD COLUMN happy INTEGER;
    UPDATE records SET happy = (SELECT CAST(round(json_extract(e.data, '$.happy') * 1000) AS INTEGER)
                                FROM events e WHERE e.seq = records.seq)
        WHERE kind IN (0, 1);
    UPDATE records SET value = (SELECT json_extract(e.data, '$.items') FROM events e WHERE e.seq = records.seq),
                       cents = CASE WHEN (SELECT json_extract(e.data, '$.amount') FROM events e
                                          WHERE e.seq = records.seq) IS NULL THEN NULL ELSE cents END
        WHERE kind = 2
    """)


def _m6(db: sqlite3.Connection) -> None:
    """Partial indexes, so a report of a long period counts its records key by key in an
    index instead of grouping its rows (appliance.records): contacts by length bucket of 10 s
    (medians and lengths) and by tags and rating (the rest), receipts by point and owner, the
    few orphan and misuse presses, the records without a point. Each carries the columns its
    counts need: the table itself is not read. And the radio's events by time: when it last
    heard a press is one seek (the health topic asks every minute)."""
    _script(db, """
    CREATE INDEX IF NOT EXISTS records_len ON records(dur_ms / 10000, point, owner, t, dur_ms) WHERE kind = 0;
    CREATE INDEX IF NOT EXISTS records_shape ON records(shape, value, point, owner, t, superseded, happy)
        WHERE kind = 0;
    CREATE INDEX IF NOT EXISTS records_sale ON records(point, owner, t, cents, value) WHERE kind = 2;
    CREATE INDEX IF NOT EXISTS records_odd ON records(t, value, shape, happy, point, owner)
        WHERE kind = 1 AND (shape & 65535) >= 2;
    CREATE INDEX IF NOT EXISTS records_pointless ON records(kind, t) WHERE point IS NULL;
    CREATE INDEX IF NOT EXISTS events_rf ON events(ts) WHERE source = 'rf'
    """)


MIGRATIONS = [_m1, _m2, _m3, _m4, _m5, _m6]
"""Schema migrations; index + 1 is the resulting ``PRAGMA user_version``."""
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(slots=True)
class Event:
    """One journal row."""
    seq: int
    id: str
    type: str
    point: str | None
    ts: int
    data: dict
    source: str = ""
    mono: int | None = None
    boot: str | None = None
    synced: bool = True
    ts_raw: int | None = None

    def as_dict(self) -> dict:
        from .timefmt import iso_ms
        d = {"seq": self.seq, "id": self.id, "type": self.type, "ts": iso_ms(self.ts)}
        if self.point is not None:
            d["point"] = self.point
        d.update(self.data)
        d["source"] = self.source
        if self.mono is not None:
            d["mono"], d["boot"], d["synced"] = self.mono, self.boot, self.synced
        if self.ts_raw is not None:
            d["ts_raw"] = iso_ms(self.ts_raw)
        return d


@dataclass(slots=True)
class NewEvent:
    """An event to append. ``key`` makes the append idempotent."""
    type: str
    ts: int
    data: dict = field(default_factory=dict)
    point: str | None = None
    source: str = "local"
    key: str | None = None
    mono: int | None = None
    boot: str | None = None
    synced: bool = True
    id: str | None = None


_json_encoder = msgspec.json.Encoder()


def _encode(data: dict) -> str:
    return _json_encoder.encode(data).decode()


_COLS = "seq, id, type, point, ts, data, source, mono, boot, synced, ts_raw"


def _row(r: tuple) -> Event:
    return Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], bool(r[9]), r[10])


class Journal:
    """A connection to the journal. One per thread; cheap to open."""

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout_s: float = 30.0):
        self.path = Path(path)
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise JournalError(f"no journal at {self.path} (is the appliance running, is state_dir right?)")
        if not readonly:
            self._shared_mode()
        uri = f"file:{self.path}?mode=ro" if readonly else str(self.path)
        self.db = sqlite3.connect(uri, uri=readonly, timeout=timeout_s, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        if not readonly:
            if self.path.stat().st_size == 0:           # a new journal: before anything is written,
                self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")    # so pruning can free space
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise JournalError(f"{self.path}: cannot switch to WAL mode (got {mode})")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        if not readonly:
            self.db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            self._migrate()
        else:
            v = self.db.execute("PRAGMA user_version").fetchone()[0]
            if v > SCHEMA_VERSION:
                raise JournalError(f"{self.path}: schema version {v} is newer than this software ({SCHEMA_VERSION})")
            if v == 0:                                  # the writer has created the file, not yet its tables
                self.db.close()
                raise JournalError(f"{self.path}: the journal is being created (is a daemon starting?); try again")

    def _shared_mode(self) -> None:
        """The journal is shared by the daemons' users through their group (ARCHITECTURE §11):
        create it 0660 whatever the umask (SQLite gives its WAL and SHM files the same mode);
        an older one of ours that is not group-writable is made so."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, JOURNAL_MODE)
        except FileExistsError:
            st = self.path.stat()
            if st.st_uid == os.geteuid() and st.st_mode & 0o777 != JOURNAL_MODE:
                os.chmod(self.path, JOURNAL_MODE)
            return
        try:
            os.fchmod(fd, JOURNAL_MODE)
        finally:
            os.close(fd)

    @classmethod
    def in_dir(cls, state_dir: str | Path, **kw: Any) -> "Journal":
        return cls(Path(state_dir) / JOURNAL_NAME, **kw)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self.transaction():
            v = self.db.execute("PRAGMA user_version").fetchone()[0]
            if v > SCHEMA_VERSION:
                raise JournalError(f"{self.path}: schema version {v} is newer than this software ({SCHEMA_VERSION})")
            for i in range(v, SCHEMA_VERSION):
                log.info("journal %s: migrating schema %d -> %d", self.path, i, i + 1)
                MIGRATIONS[i](self.db)
                self.db.execute(f"PRAGMA user_version={i + 1}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back on any exception."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    # --- appending ---------------------------------------------------------------------

    def _insert(self, ev: NewEvent) -> int | None:
        cur = self.db.execute(
            "INSERT INTO events(id, type, point, ts, mono, boot, synced, source, key, data)"
            " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO NOTHING",
            (ev.id or uuid7(), ev.type, ev.point, ev.ts, ev.mono, ev.boot, int(ev.synced),
             ev.source, ev.key, _encode(ev.data)))
        return cur.lastrowid if cur.rowcount else None

    def append(self, ev: NewEvent) -> int | None:
        """Append one event durably. Returns its seq, or None if its key was already there."""
        with self.transaction():
            return self._insert(ev)

    def append_many(self, events: Iterable[NewEvent]) -> list[int | None]:
        """Append a batch in one durable transaction (all or nothing)."""
        with self.transaction():
            return [self._insert(ev) for ev in events]

    def append_stream(self, events: Iterable[NewEvent]) -> tuple[int, int]:
        """Append any number of events, taken one at a time, in one durable transaction
        (all or nothing) in bounded memory. Returns (new, already there)."""
        new = dup = 0
        with self.transaction():
            for ev in events:
                if self._insert(ev) is None:
                    dup += 1
                else:
                    new += 1
        return new, dup

    # --- reading -----------------------------------------------------------------------

    def read(self, after: int = 0, limit: int = 1000, types: Iterable[str] | None = None) -> list[Event]:
        if types:
            types = list(types)
            q = (f"SELECT {_COLS} FROM events WHERE seq > ? AND type IN ({','.join('?' * len(types))})"
                 " ORDER BY seq LIMIT ?")
            rows = self.db.execute(q, (after, *types, limit))
        else:
            rows = self.db.execute(f"SELECT {_COLS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                   (after, limit))
        return [_row(r) for r in rows]

    def iter_all(self, types: Iterable[str] | None = None, batch: int = 5000, after: int = 0) -> Iterator[Event]:
        """Every event after seq ``after`` (of these types), in seq order, read in batches."""
        while True:
            rows = self.read(after, batch, types)
            if not rows:
                return
            yield from rows
            after = rows[-1].seq

    def last_seq(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]

    # --- the settled records' index (reports) -------------------------------------------

    def index_record(self, seq: int, type: str, point: str | None, t: int, owner: str | None, data: dict) -> None:
        """Called by the core stage inside its transaction for each settled record it writes."""
        from . import records as rec
        self.db.execute(rec.INSERT, rec.columns(seq, type, point, t, owner, data))

    def count(self, type: str | None = None) -> int:
        """Events in the journal (of one type)."""
        if type is None:
            return self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM events WHERE type = ?", (type,)).fetchone()[0]

    def count_where(self, type: str, field: str, value: object) -> int:
        """Events of a type whose data field equals a value (JSON true/false as 1/0)."""
        return self.db.execute("SELECT COUNT(*) FROM events WHERE type = ? AND json_extract(data, ?) = ?",
                               (type, f"$.{field}", value)).fetchone()[0]

    def total(self, type: str, field: str) -> float:
        """The sum of one numeric field over the events of a type (summaries' counts)."""
        row = self.db.execute("SELECT TOTAL(json_extract(data, ?)) FROM events WHERE type = ?",
                              (f"$.{field}", type)).fetchone()
        return row[0]

    def count_by_type(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY 2 DESC").fetchall())

    def count_after(self, seq: int, types: Iterable[str]) -> int:
        types = list(types)
        return self.db.execute(f"SELECT COUNT(*) FROM events WHERE seq > ? AND type IN ({','.join('?' * len(types))})",
                               (seq, *types)).fetchone()[0]

    def by_id(self, event_id: str) -> Event | None:
        r = self.db.execute(f"SELECT {_COLS} FROM events WHERE id = ?", (event_id,)).fetchone()
        return _row(r) if r else None

    def by_key(self, key: str) -> Event | None:
        """The event appended with this idempotency key, if any."""
        r = self.db.execute(f"SELECT {_COLS} FROM events WHERE key = ?", (key,)).fetchone()
        return _row(r) if r else None

    def latest(self, type: str) -> Event | None:
        """The last event of a type (by seq)."""
        r = self.db.execute(f"SELECT {_COLS} FROM events WHERE type = ? ORDER BY seq DESC LIMIT 1",
                            (type,)).fetchone()
        return _row(r) if r else None

    def latest_where(self, type: str, field: str, value: object) -> Event | None:
        """The last event of a type whose data field equals a value (by seq)."""
        r = self.db.execute(f"SELECT {_COLS} FROM events WHERE type = ? AND json_extract(data, ?) = ? "
                            "ORDER BY seq DESC LIMIT 1", (type, f"$.{field}", value)).fetchone()
        return _row(r) if r else None

    def max_ts(self) -> int | None:
        """The latest event time."""
        return self.db.execute("SELECT MAX(ts) FROM events").fetchone()[0]

    def last_rf_ts(self) -> int | None:
        """The time of the radio's latest event (one seek in ``events_rf``)."""
        return self.db.execute("SELECT MAX(ts) FROM events WHERE source = 'rf'").fetchone()[0]

    def unsynced_clock_events(self) -> int:
        """Events taken before the wall clock was synchronised, not yet corrected (§3)."""
        return self.db.execute("SELECT COUNT(*) FROM events WHERE synced = 0").fetchone()[0]

    def backlog(self, stage: str) -> "Backlog":
        """What a stage has not committed yet: count, bytes and time of the oldest event."""
        cursor = self.cursor(stage)
        count, size, oldest = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0), MIN(ts) FROM events WHERE seq > ?",
            (cursor,)).fetchone()
        return Backlog(count, size, oldest, cursor, self.last_seq())

    def size_bytes(self) -> int:
        """The journal's files on disk (database, WAL, shared memory)."""
        return sum(p.stat().st_size for p in (self.path, *self.path.parent.glob(f"{self.path.name}-*"))
                   if p.exists())

    # --- stages ------------------------------------------------------------------------

    def cursor(self, stage: str) -> int:
        r = self.db.execute("SELECT cursor FROM stages WHERE name = ?", (stage,)).fetchone()
        return r[0] if r else 0

    def stage_state(self, stage: str) -> tuple[int, bytes | None]:
        r = self.db.execute("SELECT cursor, state FROM stages WHERE name = ?", (stage,)).fetchone()
        return (r[0], r[1]) if r else (0, None)

    def stages(self) -> list[dict]:
        rows = self.db.execute("SELECT name, cursor, updated, info FROM stages ORDER BY name")
        return [{"name": n, "cursor": c, "updated": u, "info": json.loads(i) if i else {}}
                for n, c, u, i in rows]

    @contextmanager
    def stage(self, name: str) -> Iterator["StageTxn"]:
        """One atomic step of a stage: its outputs and its cursor advance commit together."""
        with self.transaction() as db:
            r = db.execute("SELECT cursor FROM stages WHERE name = ?", (name,)).fetchone()
            txn = StageTxn(self, name, r[0] if r else 0)
            yield txn
            if txn.skip:
                return
            db.execute(
                "INSERT INTO stages(name, cursor, state, updated, info) VALUES (?,?,?,?,?)"
                " ON CONFLICT(name) DO UPDATE SET cursor=excluded.cursor,"
                " state=COALESCE(excluded.state, stages.state), updated=excluded.updated,"
                " info=COALESCE(excluded.info, stages.info)",
                (name, txn.cursor, txn.state, int(time.time() * 1000),
                 json.dumps(txn.info) if txn.info is not None else None))

    # --- clock correction (ARCHITECTURE §3) --------------------------------------------

    def correct_unsynced(self, boot: str, offset_ns: int) -> int:
        """Rewrite ts of this boot's pre-sync events as mono + offset; keep the original."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE events SET ts_raw = ts, ts = (mono + ?) / 1000000, synced = 1"
                " WHERE boot = ? AND synced = 0 AND mono IS NOT NULL", (offset_ns, boot))
            return cur.rowcount

    def give_back_space(self) -> None:
        """After deletions: free pages back to the file system (incremental vacuum, when the
        journal was created with it; older ones reuse them), and the WAL truncated."""
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2 and not self.db.in_transaction:
            # executescript steps the pragma to its end (execute would free a single page)
            self.db.executescript("PRAGMA incremental_vacuum;")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def oldest_ts(self) -> int | None:
        return self.db.execute("SELECT MIN(ts) FROM events").fetchone()[0]

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@dataclass(frozen=True, slots=True)
class Backlog:
    count: int                  # events after the stage's cursor
    bytes: int                  # their payload size
    oldest_ts: int | None       # wall ms of the oldest of them
    cursor: int
    last_seq: int


class StageTxn:
    """Inside :meth:`Journal.stage`: read input, append output, move the cursor."""

    def __init__(self, journal: Journal, name: str, cursor: int):
        self.journal = journal
        self.name = name
        self.cursor = cursor
        self.state: bytes | None = None
        self.info: dict | None = None
        self.skip = False
        """Set to leave the stage row untouched (nothing changed: no write, no fsync)."""

    def read(self, limit: int = 1000, types: Iterable[str] | None = None) -> list[Event]:
        return self.journal.read(self.cursor, limit, types)

    def read_batch(self, limit: int = 1000, types: Iterable[str] | None = None) -> tuple[list[Event], int]:
        """Events after the cursor and the seq the cursor may move to once they are handled.

        With a type filter, the cursor may skip past events of other types: the write lock
        held by this transaction guarantees no seq below ``last_seq`` can still appear.
        """
        events = self.read(limit, types)
        if len(events) < limit:
            return events, max(self.cursor, self.journal.last_seq())
        return events, events[-1].seq

    def append(self, ev: NewEvent) -> int | None:
        return self.journal._insert(ev)

    def advance(self, seq: int) -> None:
        if seq < self.cursor:
            raise JournalError(f"stage {self.name}: cursor cannot move back ({self.cursor} -> {seq})")
        self.cursor = seq
