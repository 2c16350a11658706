"""The reference cloud ingest (``fleetctl ingest``): journal batches in, records stored
once by id (SQLite here; the schema is plain SQL for PostgreSQL), acks out, device
online/offline from the retained ``status``.

Acks are end to end: ``upto`` is the highest seq below which the ingest holds every
record of that device, so a device never forgets a record the cloud does not have."""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

from appliance.mqtt import BrokerSettings, connect_properties, make_client
from appliance.wire import ACK, Ack, WireError, decode_batch, decode_status, encode, topic

log = logging.getLogger(__name__)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS devices(
        id TEXT PRIMARY KEY, online INTEGER NOT NULL DEFAULT 0, last_seen INTEGER,
        version TEXT, hw INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS records(
        device TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
        point TEXT, ts INTEGER NOT NULL, source TEXT, data TEXT NOT NULL, received INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS records_device_seq ON records(device, seq)",
]


class IngestStore:
    def __init__(self, path: str | Path):
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        for stmt in SCHEMA:
            self.db.execute(stmt)
        self.lock = threading.Lock()

    def store_batch(self, batch) -> int:
        """Store the batch's records (idempotent); returns the device's new high-water seq."""
        now = int(time.time() * 1000)
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("INSERT OR IGNORE INTO devices(id, online, last_seen) VALUES (?, 1, ?)",
                                (batch.device, now))
                hw = self.db.execute("SELECT hw FROM devices WHERE id = ?", (batch.device,)).fetchone()[0]
                self.db.executemany(
                    "INSERT OR IGNORE INTO records(device, seq, id, type, point, ts, source, data, received)"
                    " VALUES (?,?,?,?,?,?,?,?,?)",
                    [(batch.device, r.seq, r.id, r.type, r.point, r.ts, r.source, json.dumps(r.data), now)
                     for r in batch.records])
                if batch.prev <= hw:            # contiguous with what is held: the mark moves
                    hw = max(hw, batch.last)
                self.db.execute("UPDATE devices SET hw = ?, last_seen = ? WHERE id = ?", (hw, now, batch.device))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return hw

    def set_status(self, device: str, state: str, version: str) -> None:
        now = int(time.time() * 1000)
        with self.lock:
            self.db.execute("INSERT INTO devices(id, online, last_seen, version) VALUES (?,?,?,?)"
                            " ON CONFLICT(id) DO UPDATE SET online = excluded.online, last_seen = excluded.last_seen,"
                            " version = excluded.version", (device, int(state == "online"), now, version))

    def devices(self) -> list[dict]:
        rows = self.db.execute(
            "SELECT d.id, d.online, d.last_seen, d.version, (SELECT COUNT(*) FROM records r WHERE r.device = d.id)"
            " FROM devices d ORDER BY d.id").fetchall()
        return [{"id": i, "online": bool(o), "last_seen": s, "version": v, "journal_records": n}
                for i, o, s, v, n in rows]

    def close(self) -> None:
        self.db.close()


class Ingest:
    def __init__(self, settings: BrokerSettings, store: IngestStore, prefix: str = "ca/v1",
                 client_id: str = "ingest-1", group: str = "ingest"):
        self.store = store
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
        client.subscribe(f"{self.prefix}/+/status", qos=1)
        log.info("ingest: connected to %s:%d", self.host, self.port)

    def _on_message(self, client, userdata, msg) -> None:
        parts = msg.topic.split("/")
        device, kind = parts[-2], parts[-1]
        try:
            if kind == "journal":
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

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False,
                                  properties=connect_properties())
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
