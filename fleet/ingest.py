"""The reference cloud ingest (``fleetctl ingest``): journal batches in, records stored
once by id (SQLite here; the schema is plain SQL for PostgreSQL), acks out, device
online/offline from the retained ``status``.

Acks are end to end: ``upto`` is the highest seq below which the ingest holds every
record of that device, so a device never forgets a record the cloud does not have."""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import queue
import re
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from appliance.files import atomic_path, write_atomic
import msgspec

from appliance.cloud.mqtt import BrokerSettings, Handshake, make_client, network_alive, other_protocol
from appliance.cloud.mqtt import start as mqtt_start
from appliance.cloud.wire import (ACK, CMD, CONFIG_REPORTED, HEALTH, INFO, JOURNAL, MANIFEST, MAX_CHUNK_BYTES,
                                  MAX_PAYLOAD, RESULT, STATUS, Ack, Load, Topic, WireError, decode_batch,
                                  decode_json_object, decode_manifest, decode_reported, decode_result, decode_status,
                                  encode, load_topic, parse_topic, safe_name, topic)
from appliance.vocabulary import VocabularyError, check

from .office import facts

log = logging.getLogger(__name__)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS devices(
        id TEXT PRIMARY KEY, online INTEGER NOT NULL DEFAULT 0, last_seen BIGINT,
        version TEXT, hw BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS records(
        device TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
        point TEXT, ts BIGINT NOT NULL, source TEXT, data TEXT NOT NULL, received BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS records_device_seq ON records(device, seq)",
    """CREATE TABLE IF NOT EXISTS early_spans(
        device TEXT NOT NULL, prev BIGINT NOT NULL, last BIGINT NOT NULL, PRIMARY KEY(device, prev))""",
    """CREATE TABLE IF NOT EXISTS device_state(
        device TEXT PRIMARY KEY, health TEXT, health_at BIGINT, info TEXT, info_at BIGINT,
        reported TEXT, reported_at BIGINT)""",
    """CREATE TABLE IF NOT EXISTS command_results(
        device TEXT NOT NULL, id TEXT NOT NULL, status TEXT NOT NULL, payload TEXT NOT NULL,
        received BIGINT NOT NULL, PRIMARY KEY(device, id))""",
    """CREATE TABLE IF NOT EXISTS device_tags(device TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY(device, tag))""",
    """CREATE TABLE IF NOT EXISTS device_places(device TEXT PRIMARY KEY, store TEXT, grp TEXT)""",
    """CREATE TABLE IF NOT EXISTS clips(
        device TEXT NOT NULL, id TEXT NOT NULL, file TEXT NOT NULL, size BIGINT NOT NULL,
        sha256 TEXT NOT NULL, tags TEXT, meta TEXT, received BIGINT NOT NULL, PRIMARY KEY(device, id))""",
]
"""Plain SQL that SQLite and PostgreSQL both take."""


@dataclass(slots=True)
class Prepared:
    """A journal batch checked and turned into rows off the writer's thread: what the group
    writer does under its transaction is SQL only."""
    device: str
    prev: int
    last: int
    rows: list[tuple]               # records rows, as INSERTed
    facts: list                     # the office's rows of those records (facts.Row or None)

    @classmethod
    def of(cls, batch, payloads: list | None = None, now: int | None = None) -> "Prepared":
        """``payloads``: each record's data as the vocabulary check decoded it (else decoded here)."""
        now = int(time.time() * 1000) if now is None else now
        rows, rows_facts = [], []
        for k, r in enumerate(batch.records):
            text = _text(r.data)         # stored as it came; the office reads the same text
            rows.append((batch.device, r.seq, r.id, r.type, r.point, r.ts, r.source, text, now))
            if r.type in facts.TYPES:
                rows_facts.append(facts.row_of(batch.device, r.id, r.type, r.point, r.ts, text) if payloads is None
                                  else facts.row_from(batch.device, r.id, r.type, r.point, r.ts, payloads[k]))
        return cls(batch.device, batch.prev, batch.last, rows, rows_facts)


def _text(data) -> str:
    """A record's data as stored: the raw JSON the box sent (already checked), or a dict."""
    return bytes(data).decode("utf-8") if isinstance(data, msgspec.Raw) else json.dumps(data)


def _json(text: str | None):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


class IngestStore:
    """SQLite by default (a file path); PostgreSQL by URL (``postgresql://...``)."""

    def __init__(self, target: str | Path):
        target = str(target)
        self.pg = target.startswith(("postgresql://", "postgres://"))
        if self.pg:
            import psycopg
            self.db = psycopg.connect(target, autocommit=True)
            self.ph = "%s"
        else:
            self.db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.ph = "?"
        self.lock = threading.Lock()
        with self._transaction():
            if self.pg:                 # workers starting together: CREATE ... IF NOT EXISTS races in PostgreSQL
                self.db.execute("SELECT pg_advisory_xact_lock(7277001)")
            self._create()

    @contextmanager
    def _transaction(self):
        """One transaction on the connection (a writer's lock at once on SQLite): committed,
        or rolled back on any exception."""
        self.db.execute("BEGIN" if self.pg else "BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _create(self) -> None:
        """The tables, and the office's rows of the records held (once, for a database
        written before the office's tables existed)."""
        for stmt in SCHEMA:
            self.db.execute(stmt)
        facts.create(self.db.execute, self.pg)
        if facts.rebuild_needed(self.db.execute):
            self._rebuild_facts()
            facts.mark_built(self.db.execute, self.ph)

    def _rebuild_facts(self) -> None:
        types = list(facts.TYPES)
        cur = self.db.cursor()
        cur.execute(self._q(f"SELECT device, id, type, point, ts, data FROM records"
                            f" WHERE type IN ({','.join('?' * len(types))})"), types)
        n = 0
        while True:
            chunk = cur.fetchmany(5000)
            if not chunk:
                break
            self._add_facts(facts.row_of(*r) for r in chunk)
            n += len(chunk)
        if n:
            log.info("ingest: the web office's tables rebuilt from %d records", n)

    def _add_facts(self, rows) -> None:
        for table, values in facts.rows_by_table(rows).items():
            self._executemany(facts.INSERT[table], values)

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.ph)

    def _executemany(self, sql: str, rows: list) -> None:
        if self.pg:
            with self.db.cursor() as cur:
                cur.executemany(self._q(sql), rows)
        else:
            self.db.executemany(sql, rows)

    def store_batch(self, batch) -> int:
        """Store the batch's records (idempotent); returns the device's new high-water seq."""
        return self.write_group([("batch", batch)])[0]

    def write_group(self, items: list[tuple]) -> list[int | None]:
        """Several writes in one transaction (one commit: what lets a worker keep up with a
        thousand boxes): ``("batch", batch)`` → the device's high-water seq after the whole
        group, ``("state", device, column, text)`` → None. All or nothing. Set-based: one
        statement per kind of row for the whole group (on PostgreSQL each ``executemany`` is
        one pipelined round trip), not per batch."""
        now = int(time.time() * 1000)
        batches = [it[1] if isinstance(it[1], Prepared) else Prepared.of(it[1], now=now)
                   for it in items if it[0] == "batch"]
        states = [it for it in items if it[0] != "batch"]
        assert all(it[0] == "state" and it[2] in ("health", "info", "reported") for it in states)
        devices = sorted({_device_of_item(it) for it in items})
        senders = sorted({b.device for b in batches})
        with self.lock, self._transaction():
            # every worker takes the devices' rows in one order (the id): two workers sharing
            # the subscription wait for each other, never deadlock
            self._executemany("INSERT INTO devices(id, online, last_seen) VALUES (?, ?, ?) ON CONFLICT(id) DO NOTHING",
                              [(d, 1 if d in senders else 0, now) for d in devices])
            hw = self._marks(devices)           # every device's row locked (PostgreSQL) before any other
            if batches:
                self._store_records(batches, now)
                hw = self._move_marks(batches, hw, senders)
                self._executemany("UPDATE devices SET hw = ?, last_seen = ? WHERE id = ?",
                                  [(hw[d], now, d) for d in senders])
            for column in ("health", "info", "reported"):
                rows = sorted(((d, text, now) for _, d, col, text in states if col == column), key=lambda r: r[0])
                if rows:
                    self._executemany(
                        f"INSERT INTO device_state(device, {column}, {column}_at) VALUES (?,?,?) ON CONFLICT(device)"
                        f" DO UPDATE SET {column} = excluded.{column}, {column}_at = excluded.{column}_at", rows)
            if states:
                self._executemany("UPDATE devices SET last_seen = ? WHERE id = ?",
                                  [(now, d) for d in sorted({it[1] for it in states}) if d not in senders])
        return [hw[_device_of_item(it)] if it[0] == "batch" else None for it in items]

    def _marks(self, devices: list[str]) -> dict[str, int]:
        """The devices' high-water marks (rows locked on PostgreSQL, in id order)."""
        return dict(self._where_in("SELECT id, hw FROM devices WHERE id IN ({}) ORDER BY id"
                                   + (" FOR UPDATE" if self.pg else ""), devices))

    def _where_in(self, sql: str, keys: list[str]) -> list[tuple]:
        """``sql`` with ``{}`` standing for the keys' placeholders, run 500 keys at a time."""
        rows: list[tuple] = []
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            rows += self.db.execute(self._q(sql.format(",".join("?" * len(part)))), part).fetchall()
        return rows

    def _store_records(self, batches: list[Prepared], now: int) -> None:
        self._executemany("INSERT INTO records(device, seq, id, type, point, ts, source, data, received)"
                          " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
                          [row for b in batches for row in b.rows])
        self._add_facts(row for b in batches for row in b.facts)

    def _move_marks(self, batches: list, hw: dict[str, int], senders: list[str]) -> dict[str, int]:
        """Each device's mark moves over the batches contiguous with what it holds; a batch
        that arrived early (another worker has the one before) is kept as a span the mark
        follows once the gap is filled."""
        early: list[tuple[str, int, int]] = []
        for b in sorted(batches, key=lambda b: (b.device, b.prev)):
            if b.prev <= hw[b.device]:
                hw[b.device] = max(hw[b.device], b.last)
            elif b.last > hw[b.device]:
                early.append((b.device, b.prev, b.last))
        if early:
            self._executemany("INSERT INTO early_spans VALUES (?,?,?) ON CONFLICT(device, prev) DO UPDATE"
                              " SET last = CASE WHEN excluded.last > early_spans.last THEN excluded.last"
                              " ELSE early_spans.last END", early)
        waiting = {d for (d,) in self._where_in("SELECT DISTINCT device FROM early_spans WHERE device IN ({})",
                                                senders)}
        for d in sorted(waiting):
            hw[d] = self._follow_spans(d, hw[d])
        return hw

    def _follow_spans(self, device: str, hw: int) -> int:
        """Move the mark over batches stored early that now follow it (workers sharing the
        subscription store one device's batches in any order)."""
        while True:
            r = self.db.execute(self._q("SELECT MAX(last) FROM early_spans WHERE device = ? AND prev <= ?"),
                                (device, hw)).fetchone()
            nxt = r[0] if r else None
            self.db.execute(self._q("DELETE FROM early_spans WHERE device = ? AND last <= ?"),
                            (device, max(hw, nxt or hw)))
            if nxt is None or nxt <= hw:
                return hw
            hw = nxt

    def set_status(self, device: str, state: str, version: str) -> None:
        now = int(time.time() * 1000)
        with self.lock:
            self.db.execute(self._q(
                "INSERT INTO devices(id, online, last_seen, version) VALUES (?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET online = excluded.online, last_seen = excluded.last_seen,"
                " version = excluded.version"), (device, int(state == "online"), now, version))

    def has_clip(self, device: str, clip: str) -> bool:
        with self.lock:
            return self.db.execute(self._q("SELECT 1 FROM clips WHERE device = ? AND id = ?"),
                                   (device, clip)).fetchone() is not None

    def add_clip(self, device: str, m, path: Path) -> None:
        with self.lock:
            self.db.execute(self._q("INSERT INTO clips VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"),
                            (device, m.clip, str(path), m.size, m.sha256, json.dumps(m.tags), json.dumps(m.meta),
                             int(time.time() * 1000)))

    def set_state(self, device: str, column: str, text: str) -> None:
        """The last ``health``, ``info`` or ``config/reported`` of a device, as it came."""
        self.write_group([("state", device, column, text)])

    def add_result(self, device: str, cmd_id: str, status: str, text: str) -> None:
        with self.lock:
            self.db.execute(self._q("INSERT INTO command_results VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING"),
                            (device, cmd_id, status, text, int(time.time() * 1000)))

    def tag(self, device: str, tags: list[str], remove: bool = False) -> None:
        with self.lock:
            for t in tags:
                self.db.execute(self._q("DELETE FROM device_tags WHERE device = ? AND tag = ?" if remove else
                                        "INSERT INTO device_tags VALUES (?, ?) ON CONFLICT DO NOTHING"), (device, t))

    def place(self, rows: list[tuple[str, str | None, str | None]]) -> None:
        """Devices' stores and groups, ``(device, store, group)`` (None keeps what it had), all
        in one transaction."""
        with self.lock, self._transaction():
            for row in rows:
                self.db.execute(self._q(
                    "INSERT INTO device_places(device, store, grp) VALUES (?,?,?) ON CONFLICT(device) DO UPDATE"
                    " SET store = COALESCE(excluded.store, device_places.store),"
                    " grp = COALESCE(excluded.grp, device_places.grp)"), row)

    def devices(self, tag: str | None = None) -> list[dict]:
        """Every device the ingest has heard of: online state, versions, config, last health,
        tags, store and group, records held. ``tag``: those with that tag, in that store, or
        in that group or a group under it (``north`` takes ``north/riga``)."""
        with self.lock:
            rows = self.db.execute(
                "SELECT d.id, d.online, d.last_seen, d.version, d.hw, s.health, s.health_at, s.info, s.reported,"
                " s.reported_at, p.store, p.grp FROM devices d LEFT JOIN device_state s ON s.device = d.id"
                " LEFT JOIN device_places p ON p.device = d.id ORDER BY d.id").fetchall()
            tags: dict[str, list[str]] = {}
            for dev, t in self.db.execute("SELECT device, tag FROM device_tags ORDER BY tag"):
                tags.setdefault(dev, []).append(t)
        out = []
        for i, o, seen, ver, hw, health, health_at, info, reported, reported_at, store, grp in rows:
            if tag is not None and not (tag in tags.get(i, []) or tag == store or in_group(grp, tag)):
                continue
            out.append({"id": i, "online": bool(o), "last_seen": seen, "version": ver, "journal_records": hw,
                        "tags": tags.get(i, []), "store": store, "group": grp, "health": _json(health),
                        "health_at": health_at, "info": _json(info), "config": _json(reported),
                        "config_at": reported_at})
        return out

    def close(self) -> None:
        self.db.close()


PLACE_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,100}")
"""A store or group name: printable, at most 100 characters (groups: ``/`` separates levels)."""


def place_problem(kind: str, name: str) -> str | None:
    """Why ``name`` is not a store's or (``kind`` "group") a group's name; None when it is one."""
    if not PLACE_NAME.fullmatch(name):
        return "give 1-100 printable characters"
    if kind == "group" and any(not part.strip() for part in name.split("/")):
        return "empty level (write division/region, no leading, trailing or double /)"
    return None


def in_group(group: str | None, scope: str) -> bool:
    """``group`` is ``scope`` or lies under it: groups are paths (division/region/...)."""
    return group is not None and (group == scope or group.startswith(scope.rstrip("/") + "/"))


def _device_of_item(item: tuple) -> str:
    """The device a group item writes for (``("batch", batch)`` or ``("state", device, …)``)."""
    return item[1].device if item[0] == "batch" else item[1]


class _Mismatch(Exception):
    """A reassembled clip whose size or sha256 is not the manifest's."""


class ClipAssembler:
    """Chunks on disk until the manifest comes; then the whole file, verified by size and
    sha256, written atomically. A clip that fails verification starts over."""

    def __init__(self, root: Path):
        self.root = root

    def _parts(self, device: str, clip: str) -> Path:
        return self.root / device / f".{clip}.parts"

    def put(self, device: str, clip: str, n: int, data: bytes) -> None:
        d = self._parts(device, clip)
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(d / str(n), data)

    def contiguous(self, device: str, clip: str) -> int:
        d = self._parts(device, clip)
        n = 0
        while (d / str(n)).exists():
            n += 1
        return n

    def assemble(self, device: str, m) -> Path | None:
        d = self._parts(device, m.clip)
        if self.contiguous(device, m.clip) < m.chunks:
            return None
        out = self.root / device / m.file
        try:
            with atomic_path(out) as tmp:
                digest = hashlib.sha256()
                with open(tmp, "wb") as f:
                    for n in range(m.chunks):
                        data = (d / str(n)).read_bytes()
                        digest.update(data)
                        f.write(data)
                if tmp.stat().st_size != m.size or digest.hexdigest() != m.sha256:
                    raise _Mismatch
        except _Mismatch:
            log.warning("ingest: clip %s/%s failed verification; asking for it again", device, m.clip)
            shutil.rmtree(d, ignore_errors=True)
            return None
        shutil.rmtree(d, ignore_errors=True)
        return out


@dataclass(frozen=True)
class Quotas:
    """What one box may send (ARCHITECTURE §11): a box over its quota is refused (no ack:
    it sends again later) and cannot fill the store or starve the others."""
    records_per_min: int = 60_000
    bytes_per_min: int = 64 * 1024 * 1024
    clips_per_hour: int = 3_600
    clip_bytes: int = 64 * 1024 * 1024


class DeviceQuota:
    """Token buckets of one device (refilled continuously)."""

    def __init__(self, q: Quotas, now: float):
        self.q = q
        self.t = now
        self.records, self.bytes, self.clips = float(q.records_per_min), float(q.bytes_per_min), float(q.clips_per_hour)

    def take(self, now: float, records: int = 0, size: int = 0, clips: int = 0) -> str | None:
        """Spend; or the name of the quota that is exhausted (nothing spent)."""
        dt, self.t = max(0.0, now - self.t), now
        q = self.q
        self.records = min(q.records_per_min, self.records + dt * q.records_per_min / 60)
        self.bytes = min(q.bytes_per_min, self.bytes + dt * q.bytes_per_min / 60)
        self.clips = min(q.clips_per_hour, self.clips + dt * q.clips_per_hour / 3600)
        if records > self.records:
            return "records per minute"
        if size > self.bytes:
            return "bytes per minute"
        if clips > self.clips:
            return "clips per hour"
        self.records -= records
        self.bytes -= size
        self.clips -= clips
        return None


class Rejections:
    """Rejected messages counted per device and reason; logged at most once per device
    every ``every_s`` (a flood must not flood the log)."""

    def __init__(self, every_s: float = 10.0):
        self.every_s = every_s
        self.counts: dict[tuple[str, str], int] = {}
        self.logged: dict[str, float] = {}
        self.total = 0
        self.lock = threading.Lock()            # the network thread and the group writer both reject

    def add(self, device: str, reason: str, now: float) -> None:
        key = (device, reason)
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            self.total += 1
            if now - self.logged.get(device, -1e9) < self.every_s:
                return
            self.logged[device] = now
            n = sum(c for (d, _), c in self.counts.items() if d == device)
        log.warning("ingest: rejected a message from %s: %s (%d rejected from it so far)", device, reason, n)


class Inbox:
    """A FIFO bounded by the bytes it holds (and a count): a full inbox blocks the one who
    puts — the network thread, so the broker keeps the rest (QoS 1 flow control) instead of
    this process's memory. One item larger than the bound still goes in alone."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024, max_items: int = 100_000):
        self.max_bytes, self.max_items = max_bytes, max_items
        self.items: collections.deque = collections.deque()
        self.bytes = 0
        self.cond = threading.Condition()

    def put(self, item, size: int = 0) -> None:
        with self.cond:
            while self.items and (self.bytes + size > self.max_bytes or len(self.items) >= self.max_items):
                self.cond.wait(0.5)
            self.items.append((item, size))
            self.bytes += size
            self.cond.notify_all()

    def get(self, timeout: float) -> tuple:
        """The oldest item and its size, or raise queue.Empty after ``timeout``."""
        with self.cond:
            if not self.items and not self.cond.wait_for(lambda: bool(self.items), timeout):
                raise queue.Empty
            return self._pop()

    def get_nowait(self) -> tuple:
        with self.cond:
            if not self.items:
                raise queue.Empty
            return self._pop()

    def _pop(self) -> tuple:
        item, size = self.items.popleft()
        self.bytes -= size
        self.cond.notify_all()
        return item, size

    def qsize(self) -> int:
        return len(self.items)

    def empty(self) -> bool:
        return not self.items


class Throughput:
    """Messages handled per second over the last ``span_s`` (what the load hint divides by)."""

    def __init__(self, span_s: float = 5.0):
        self.span_s = span_s
        self.marks: collections.deque = collections.deque()    # (time, messages) per group
        self.lock = threading.Lock()

    def add(self, n: int, now: float) -> None:
        with self.lock:
            self.marks.append((now, n))
            self._forget(now)

    def rate(self, now: float) -> float:
        with self.lock:
            self._forget(now)
            if not self.marks:
                return 0.0
            n = sum(m for _, m in self.marks)
            return n / max(now - self.marks[0][0], 1.0)

    def _forget(self, now: float) -> None:
        while self.marks and now - self.marks[0][0] > self.span_s:
            self.marks.popleft()


class GroupWriter(threading.Thread):
    """Stores what the decoder validated, many messages per transaction (one commit for all
    that arrived meanwhile, bounded by count and bytes), then acks each device once with
    its new high-water mark — after the commit, never before. A full queue blocks the
    decoder (and so the network thread: the broker holds the rest). A group that fails is
    retried message by message, so one bad write fails alone."""

    MAX_GROUP = 500
    MAX_GROUP_BYTES = 16 * 1024 * 1024

    def __init__(self, ingest: "Ingest", max_bytes: int = 32 * 1024 * 1024, q: Inbox | None = None):
        super().__init__(name="ingest-writer", daemon=True)
        self.ingest = ingest
        self.queue: Inbox = q if q is not None else Inbox(max_bytes, 20_000)
        self.stopping = threading.Event()
        self.groups = 0
        self.throughput = Throughput()

    def put(self, item: tuple, size: int = 0) -> None:
        self.queue.put(item, size)

    def run(self) -> None:
        while not (self.stopping.is_set() and self.queue.empty()):
            try:
                item, size = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            group = [item]
            while len(group) < self.MAX_GROUP and size < self.MAX_GROUP_BYTES:
                try:
                    item, n = self.queue.get_nowait()
                except queue.Empty:
                    break
                group.append(item)
                size += n
            self.write(group)

    def write(self, group: list[tuple]) -> None:
        ing = self.ingest
        try:
            results = ing.store.write_group([item[1:] for item in group])
        except Exception:  # noqa: BLE001 - find the one that fails; the others go on
            results = []
            for item in group:
                try:
                    results.extend(ing.store.write_group([item[1:]]))
                except Exception as exc:  # noqa: BLE001
                    results.append(exc)
        self.groups += 1
        now = time.monotonic()
        self.throughput.add(len(group), now)
        acks: dict[str, int] = {}
        for (device, *item), hw in zip(group, results, strict=True):
            if isinstance(hw, Exception):
                ing.rejections.add(device, f"internal error: {type(hw).__name__}: {hw}", now)
                log.error("ingest: a write for %s failed: %s", device, hw)
            elif item[0] == "batch":
                ing.stored += len(item[1].rows)
                acks[device] = max(acks.get(device, -1), hw)
        for device, hw in acks.items():     # one ack per device per commit, its highest contiguous seq
            ing.client.publish(topic(ing.prefix, device, ACK), encode(Ack(upto=hw)), qos=ACK_QOS)


ACK_QOS = 0
"""Acks go at QoS 0: they are idempotent (the highest contiguous seq held) and a box sends
again when one does not come, so none may wait behind the inbound backlog for a PUBACK
(paho allows only a few QoS 1 messages in flight)."""


class Decoder(threading.Thread):
    """Takes messages as the network thread received them and decodes, checks and routes
    them (:meth:`Ingest._process`), so paho's thread only reads the socket and acknowledges
    to the broker — it keeps reading while the writer commits."""

    STOP_S = 10.0
    """Stopping, what the inbox still holds is handled for this long at most; the rest was
    never acked, and the boxes send it again."""

    def __init__(self, ingest: "Ingest", inbox: Inbox):
        super().__init__(name="ingest-decoder", daemon=True)
        self.ingest = ingest
        self.inbox = inbox
        self.stopping = threading.Event()

    def run(self) -> None:
        stop_at = None
        while not (self.stopping.is_set() and self.inbox.empty()):
            if self.stopping.is_set():
                stop_at = stop_at or time.monotonic()
                if time.monotonic() - stop_at > self.STOP_S:
                    log.info("ingest: stopping; %d messages left to the boxes' resend", self.inbox.qsize())
                    return
            try:
                (t, payload, now), _ = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            self.ingest._process(self.ingest.client, t, payload, now)


def device_of(prefix: str, name: str) -> str:
    """For logs: the device id a topic names at its position, if it is a safe name."""
    rest = name[len(prefix) + 1:] if name.startswith(prefix + "/") else ""
    first = rest.split("/", 1)[0]
    return first if safe_name(first) else "?"


class Ingest:
    """``protocol_auto``: try the settings' MQTT version, switch to the other when the broker
    does not take it (:class:`Handshake`). ``shared``: ``auto`` shares the journal and clip
    subscriptions among workers (``$share/<group>/...``) where the broker says it can (MQTT 5
    CONNACK), else one worker subscribes plainly; ``yes``/``no`` force it."""

    MAX_RESTARTS = 5                    # network loops restarted within RESTART_WINDOW_S before giving up
    RESTART_WINDOW_S = 600.0

    def __init__(self, settings: BrokerSettings, store: IngestStore, prefix: str = "ca/v1",
                 client_id: str = "ingest-1", group: str = "ingest", clips_dir: str | Path | None = None,
                 quotas: Quotas | None = None, protocol_auto: bool = False, shared: str = "auto",
                 inbox_mb: float = 256.0):
        self.store = store
        self.clips = ClipAssembler(Path(clips_dir)) if clips_dir else None
        self.prefix = prefix
        self.group = group
        self.client_id = client_id
        self.protocol_auto = protocol_auto
        self.shared = shared
        self.sharing: bool | None = None        # what the last connect chose
        self.settings = settings
        self.subscribed = threading.Event()     # every subscription granted (set on each connect)
        self._pending_subs: dict[int, str] = {}
        self.restarts: list[float] = []
        self._new_client()
        self.quotas = quotas or Quotas()
        self.quota: dict[str, DeviceQuota] = {}
        self.rejections = Rejections()
        self.stored = 0
        self.started = False
        self.writer: GroupWriter | None = None   # started with the network loop; handled inline before
        self.inbox = Inbox(int(inbox_mb * 1024 * 1024))
        self.decoder: Decoder | None = None
        self.accepting = True                    # False while stopping: what comes is left to the boxes' resend
        self.worker = client_id if safe_name(client_id) else "worker"
        self._load_sent: tuple[float, float] = (0.0, -1e9)   # the last load hint published: (wait_s, when)

    @property
    def rejected(self) -> int:
        return self.rejections.total

    def _new_client(self) -> None:
        self.client, self.host, self.port = make_client(self.settings, self.client_id)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.handshake = Handshake()
        self.handshake.attach(self.client)

    def _share(self, properties) -> bool:
        if self.shared != "auto":
            return self.shared == "yes"
        if self.settings.protocol != "5":
            return False                # MQTT 3.1.1 has no shared subscriptions in its standard
        return getattr(properties, "SharedSubscriptionAvailable", 1) != 0

    def topics(self, share: bool) -> list[str]:
        """Journal (and clip) topics, shared among workers or not; status always plain."""
        base = f"$share/{self.group}/{self.prefix}/+" if share else f"{self.prefix}/+"
        plain = f"{self.prefix}/+"              # retained: every worker keeps the latest (idempotent)
        return ([f"{base}/{JOURNAL}", f"{base}/{HEALTH}", f"{base}/{CMD}/+/{RESULT}", f"{plain}/{STATUS}",
                 f"{plain}/{INFO}", f"{plain}/{CONFIG_REPORTED}"] + ([f"{base}/clip/+/+"] if self.clips else []))

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.handshake.connack(reason_code)
        if reason_code.is_failure:
            log.warning("ingest: broker refused: %s", reason_code)
            return
        share = self._share(properties)
        if share != self.sharing:
            log.info("ingest: %s", f"sharing the subscription with the other workers of group {self.group!r}"
                     if share else "no shared subscriptions on this broker: one worker takes every device")
        self.sharing = share
        self._subscribe(client, self.topics(share))
        log.info("ingest: connected to %s:%d (MQTT %s)", self.host, self.port, self.settings.protocol)

    def _subscribe(self, client, topics: list[str]) -> None:
        self.subscribed.clear()
        self._pending_subs = {client.subscribe(t, qos=1)[1]: t for t in topics}

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.handshake.closed()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        t = self._pending_subs.pop(mid, "")
        if any(rc.is_failure for rc in reason_codes):
            if t.startswith("$share/") and self.shared == "auto":
                plain = t.split("/", 2)[2]
                log.warning("ingest: the broker refused the shared subscription %s; one worker subscribes to %s",
                            t, plain)
                self.sharing = False
                self._pending_subs[client.subscribe(plain, qos=1)[1]] = plain
                return
            log.error("ingest: the broker refused the subscription %s: %s", t, reason_codes)
            return
        if not self._pending_subs:
            self.subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        """paho's thread: into the inbox for the decoder (handled here when it is not running)."""
        now = time.monotonic()
        if not self.accepting:
            return                      # stopping: not acked, so the box sends it again
        if self.decoder is not None:
            self.inbox.put((msg.topic, msg.payload, now), len(msg.payload))
        else:
            self._process(client, msg.topic, msg.payload, now)

    def _process(self, client, name: str, payload: bytes, now: float) -> None:
        """One containment point: whatever a message holds, it fails alone (counted and
        logged with its device) and the decoder goes on."""
        device = device_of(self.prefix, name)
        try:
            t = parse_topic(self.prefix, name)
            device = t.device
            ack = self._handle(t, payload, now)
            if ack is not None:
                client.publish(topic(self.prefix, device, ACK), encode(ack), qos=ACK_QOS)
        except (WireError, VocabularyError) as exc:
            self.rejections.add(device, str(exc), now)
        except Exception as exc:  # noqa: BLE001 - a bug or a store error must not stop the ingest for everyone
            self.rejections.add(device, f"internal error: {type(exc).__name__}: {exc}", now)
            log.exception("ingest: a message from %s on %s could not be handled", device, name[:200])

    def _quota(self, device: str, now: float, **spend: int) -> None:
        q = self.quota.get(device)
        if q is None:
            q = self.quota[device] = DeviceQuota(self.quotas, now)
        over = q.take(now, **spend)
        if over:
            raise WireError(f"over its quota of {over}")

    def _handle(self, t: Topic, payload: bytes, now: float) -> Ack | None:
        if t.kind == JOURNAL:
            batch = decode_batch(payload)
            if batch.device != t.device:
                raise WireError(f"batch names device {batch.device!r} on {t.device!r}'s topic")
            payloads = []
            for r in batch.records:
                try:
                    payloads.append(check(r.type, r.data))
                except VocabularyError as exc:
                    raise VocabularyError(f"record {r.seq}: {exc}") from None
            self._quota(t.device, now, records=len(batch.records), size=len(payload))
            if self.writer is not None:         # stored and acked by the group writer
                self.writer.put((t.device, "batch", Prepared.of(batch, payloads)), len(payload))
                return None
            hw = self.store.store_batch(batch)
            self.stored += len(batch.records)
            return Ack(upto=hw)
        if t.kind == STATUS:
            st = decode_status(payload)
            self.store.set_status(t.device, st.state, st.version)
            return None
        if t.kind in (HEALTH, INFO):
            self._quota(t.device, now, size=len(payload))
            doc = decode_json_object(payload, t.kind, MAX_PAYLOAD[t.kind])
            if self.writer is not None:
                self.writer.put((t.device, "state", t.device, t.kind, json.dumps(doc)), len(payload))
            else:
                self.store.set_state(t.device, t.kind, json.dumps(doc))
            return None
        if t.kind == CONFIG_REPORTED:
            r = decode_reported(payload)
            self.store.set_state(t.device, "reported", json.dumps(msgspec.to_builtins(r)))
            return None
        if t.kind == RESULT:
            r = decode_result(payload)
            if r.id != t.clip:
                raise WireError("command result: names another command")
            self._quota(t.device, now, size=len(payload))
            self.store.add_result(t.device, r.id, r.status, json.dumps(msgspec.to_builtins(r)))
            return None
        if t.kind != "clip":
            raise WireError(f"topic kind {t.kind!r} is not for the ingest")
        return self._clip(t, payload, now)

    def _clip(self, t: Topic, payload: bytes, now: float) -> Ack | None:
        if self.clips is None:
            return None
        device, clip = t.device, t.clip
        if self.store.has_clip(device, clip):
            return Ack(clips=[clip])
        if t.part == MANIFEST:
            m = decode_manifest(payload)
            if m.clip != clip:
                raise WireError("clip manifest: names another clip")
            if m.size > self.quotas.clip_bytes:
                raise WireError(f"clip of {m.size} bytes is over the clip size quota")
            path = self.clips.assemble(device, m)
            if path is None:
                return Ack(chunks={clip: self.clips.contiguous(device, clip)})
            self._quota(device, now, clips=1)
            self.store.add_clip(device, m, path)
            return Ack(clips=[clip])
        if len(payload) > MAX_CHUNK_BYTES:
            raise WireError(f"clip chunk of {len(payload)} bytes, more than {MAX_CHUNK_BYTES}")
        self._quota(device, now, size=len(payload))
        self.clips.put(device, clip, t.chunk, payload)
        return Ack(chunks={clip: self.clips.contiguous(device, clip)})

    def alive(self) -> bool:
        """The network loop, the decoder and the group writer run; False means nothing is
        stored any more."""
        return not self.started or (network_alive(self.client) and self.writer is not None
                                    and self.writer.is_alive()
                                    and (self.decoder is None or self.decoder.is_alive()))

    def start(self) -> None:
        if self.writer is None or not self.writer.is_alive():
            self.writer = GroupWriter(self)
            self.writer.start()
        if self.decoder is None or not self.decoder.is_alive():
            self.decoder = Decoder(self, self.inbox)
            self.decoder.start()
        mqtt_start(self.client, self.host, self.port, self.settings)
        self.started = True

    def _replace_client(self, protocol: str) -> None:
        try:
            self.client.disconnect()
            self.client.loop_stop()
        except Exception:  # noqa: BLE001 - the old client may be half dead; it is dropped either way
            log.debug("ingest: stopping the old client failed", exc_info=True)
        self.settings = dataclasses.replace(self.settings, protocol=protocol)
        self.sharing = None
        self._new_client()
        self.start()

    def step(self, now: float | None = None) -> None:
        """On the owner's thread: switch protocol when ``protocol_auto`` and the broker did not
        take this one; restart a network loop that died (a bug in paho or in a callback), at
        most ``MAX_RESTARTS`` times in ``RESTART_WINDOW_S``, then raise (the process exits and
        its supervisor restarts it: never up and deaf)."""
        now = time.monotonic() if now is None else now
        if self.protocol_auto and self.started and self.handshake.failed(now):
            new = other_protocol(self.settings.protocol)
            log.warning("ingest: the broker did not accept MQTT %s; trying MQTT %s", self.settings.protocol, new)
            self._replace_client(new)
            return
        if not self.alive():
            self.restarts = [t for t in self.restarts if now - t < self.RESTART_WINDOW_S] + [now]
            if len(self.restarts) > self.MAX_RESTARTS:
                raise RuntimeError(f"the MQTT network loop, the decoder or the group writer died "
                                   f"{len(self.restarts)} times in {self.RESTART_WINDOW_S:.0f} s")
            if self.writer is not None and not self.writer.is_alive():
                log.error("ingest: the group writer had stopped; restarting it")
                self.writer = GroupWriter(self, q=self.writer.queue)   # what it had taken in is not lost
                self.writer.start()
            if self.decoder is not None and not self.decoder.is_alive():
                log.error("ingest: the decoder had stopped; restarting it")
                self.decoder = Decoder(self, self.inbox)               # the inbox it read is kept
                self.decoder.start()
            if not network_alive(self.client):
                log.error("ingest: the MQTT network loop had stopped; restarting it")
                self._replace_client(self.settings.protocol)
        if self.started:
            self.publish_load(now)

    def load(self, now: float) -> Load:
        """How long this worker needs for what it holds: messages waiting (inbox and writer)
        over the rate it stored them in the last seconds."""
        queued = self.inbox.qsize() + (self.writer.queue.qsize() if self.writer is not None else 0)
        rate = self.writer.throughput.rate(now) if self.writer is not None else 0.0
        # on the safe side: a box whose batch waits behind these must not give up first (a
        # wait overestimated only delays the resend of a batch that was really lost)
        wait = (queued / rate * 1.25 + 1.0 if rate > 0 else queued * 0.005) if queued else 0.0
        return Load(wait_s=round(min(wait, 86_400.0), 1), queued=queued, rate=round(rate, 1))

    def publish_load(self, now: float) -> None:
        """The load hint, retained on ``<prefix>/ingest/load/<worker>``: when it moved by
        more than 2 s or a quarter, at least every 10 s while busy, and once when idle again.
        Boxes never count an ack as late before it."""
        load = self.load(now)
        last, at = self._load_sent
        if load.wait_s == 0 and last == 0:
            return
        if load.wait_s > 0 and abs(load.wait_s - last) < max(2.0, 0.25 * last) and now - at < 10:
            return
        if self.client.publish(load_topic(self.prefix, self.worker), encode(load), qos=1, retain=True).rc == 0:
            self._load_sent = (load.wait_s, now)

    def stop(self) -> None:
        """A deliberate stop ends the session: the broker then gives this worker's share
        of the shared subscription to the others instead of queueing it for a worker that
        is not coming back (what was in flight, devices resend after their ack timeout).
        What the group writer had taken in is stored and acked first."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        self.accepting = False
        if self.decoder is not None:
            self.decoder.stopping.set()
            self.decoder.join(30)
        if self.writer is not None:
            self.writer.stopping.set()
            self.writer.join(30)
        if self.started:                        # no hint left behind for a worker that is gone
            self.client.publish(load_topic(self.prefix, self.worker), b"", qos=1, retain=True)
        if self.settings.protocol == "5":
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            self.client.disconnect(properties=props)
        else:
            self.client.disconnect()
        for q in (self.inbox, self.writer.queue if self.writer is not None else None):
            while q is not None:                # a thread blocked on a full queue goes on
                try:                            # (what it held was not acked: the boxes send it again)
                    q.get_nowait()
                except queue.Empty:
                    break
        self.client.loop_stop()
