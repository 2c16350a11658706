"""The reference cloud ingest (``fleetctl ingest``): journal batches in, records stored
once by id (SQLite here; the schema is plain SQL for PostgreSQL), acks out, device
online/offline from the retained ``status``.

Acks are end to end: ``upto`` is the highest seq below which the ingest holds every
record of that device, so a device never forgets a record the cloud does not have."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
import threading
import time
from pathlib import Path

from appliance.files import atomic_path, write_atomic
from appliance.cloud.mqtt import BrokerSettings, make_client
from appliance.cloud.mqtt import start as mqtt_start
from appliance.cloud.wire import ACK, Ack, WireError, decode_batch, decode_manifest, decode_status, encode, topic

log = logging.getLogger(__name__)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS devices(
        id TEXT PRIMARY KEY, online INTEGER NOT NULL DEFAULT 0, last_seen BIGINT,
        version TEXT, hw BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS records(
        device TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
        point TEXT, ts BIGINT NOT NULL, source TEXT, data TEXT NOT NULL, received BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS records_device_seq ON records(device, seq)",
    """CREATE TABLE IF NOT EXISTS clips(
        device TEXT NOT NULL, id TEXT NOT NULL, file TEXT NOT NULL, size BIGINT NOT NULL,
        sha256 TEXT NOT NULL, tags TEXT, meta TEXT, received BIGINT NOT NULL, PRIMARY KEY(device, id))""",
]
"""Plain SQL that SQLite and PostgreSQL both take."""


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
        for stmt in SCHEMA:
            self.db.execute(stmt)
        self.lock = threading.Lock()

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
        now = int(time.time() * 1000)
        with self.lock:
            self.db.execute("BEGIN" if self.pg else "BEGIN IMMEDIATE")
            try:
                self.db.execute(self._q("INSERT INTO devices(id, online, last_seen) VALUES (?, 1, ?)"
                                        " ON CONFLICT(id) DO NOTHING"), (batch.device, now))
                hw = self.db.execute(self._q("SELECT hw FROM devices WHERE id = ?"
                                             + (" FOR UPDATE" if self.pg else "")), (batch.device,)).fetchone()[0]
                self._executemany(
                    "INSERT INTO records(device, seq, id, type, point, ts, source, data, received)"
                    " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
                    [(batch.device, r.seq, r.id, r.type, r.point, r.ts, r.source, json.dumps(r.data), now)
                     for r in batch.records])
                if batch.prev <= hw:            # contiguous with what is held: the mark moves
                    hw = max(hw, batch.last)
                self.db.execute(self._q("UPDATE devices SET hw = ?, last_seen = ? WHERE id = ?"),
                                (hw, now, batch.device))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return hw

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

    def devices(self) -> list[dict]:
        with self.lock:
            rows = self.db.execute(
                "SELECT d.id, d.online, d.last_seen, d.version, (SELECT COUNT(*) FROM records r WHERE r.device = d.id)"
                " FROM devices d ORDER BY d.id").fetchall()
        return [{"id": i, "online": bool(o), "last_seen": s, "version": v, "journal_records": n}
                for i, o, s, v, n in rows]

    def close(self) -> None:
        self.db.close()


def _safe_name(name: str) -> bool:
    return bool(name) and len(name) <= 80 and all(ch.isalnum() or ch in "-_." for ch in name) and name[0] != "."


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


class Ingest:
    def __init__(self, settings: BrokerSettings, store: IngestStore, prefix: str = "ca/v1",
                 client_id: str = "ingest-1", group: str = "ingest", clips_dir: str | Path | None = None):
        self.store = store
        self.clips = ClipAssembler(Path(clips_dir)) if clips_dir else None
        self.prefix = prefix
        self.group = group
        self.client, self.host, self.port = make_client(settings, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.settings = settings
        self.stored = 0
        self.rejected = 0

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("ingest: broker refused: %s", reason_code)
            return
        client.subscribe(f"$share/{self.group}/{self.prefix}/+/journal", qos=1)
        if self.clips:
            client.subscribe(f"$share/{self.group}/{self.prefix}/+/clip/#", qos=1)
        client.subscribe(f"{self.prefix}/+/status", qos=1)
        log.info("ingest: connected to %s:%d", self.host, self.port)

    def _on_message(self, client, userdata, msg) -> None:
        parts = msg.topic.split("/")
        device, kind = parts[-2], parts[-1]
        try:
            if len(parts) >= 5 and parts[-3] == "clip":
                device = parts[-4]
                ack = self._clip(device, parts[-2], parts[-1], msg.payload)
                if ack is not None:
                    client.publish(topic(self.prefix, device, ACK), encode(ack), qos=1)
            elif kind == "journal":
                batch = decode_batch(msg.payload)
                if batch.device != device:
                    raise WireError(f"batch names device {batch.device!r} on {device!r}'s topic")
                hw = self.store.store_batch(batch)
                self.stored += len(batch.records)
                client.publish(topic(self.prefix, device, ACK), encode(Ack(upto=hw)), qos=1)
            elif kind == "status":
                st = decode_status(msg.payload)
                self.store.set_status(device, st.state, st.version)
        except WireError as exc:
            self.rejected += 1
            log.warning("ingest: rejected a message on %s: %s", msg.topic, exc)

    def _clip(self, device: str, clip: str, part: str, payload: bytes) -> Ack | None:
        if self.clips is None:
            return None
        if not _safe_name(device) or not _safe_name(clip):
            raise WireError("clip: bad device or clip id")
        if self.store.has_clip(device, clip):
            return Ack(clips=[clip])
        if part == "manifest":
            m = decode_manifest(payload)
            if m.clip != clip or not _safe_name(m.file.rsplit(".", 1)[0]):
                raise WireError("clip manifest: names another clip or a bad file name")
            path = self.clips.assemble(device, m)
            if path is None:
                return Ack(chunks={clip: self.clips.contiguous(device, clip)})
            self.store.add_clip(device, m, path)
            return Ack(clips=[clip])
        if not part.isdigit() or len(payload) > 1024 * 1024:
            raise WireError("clip: chunk number or size out of range")
        self.clips.put(device, clip, int(part), payload)
        return Ack(chunks={clip: self.clips.contiguous(device, clip)})

    def start(self) -> None:
        mqtt_start(self.client, self.host, self.port, self.settings)

    def stop(self) -> None:
        """A deliberate stop ends the session: the broker then gives this worker's share
        of the shared subscription to the others instead of queueing it for a worker that
        is not coming back (what was in flight, devices resend after their ack timeout)."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        if self.settings.protocol == "5":
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            self.client.disconnect(properties=props)
        else:
            self.client.disconnect()
        self.client.loop_stop()
