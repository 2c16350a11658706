"""The sync stage (``appliance-sync``): store-and-forward of the journal to the cloud.

Records go out in sequence order, in batches bounded by count and bytes, QoS 1, with a
window of batches in flight. They count as delivered only when the ingest's ``ack`` says
it has stored them (end to end, not the broker's PUBACK); then, and only then, the stage
cursor ``sync`` moves, in a journal transaction. After a reconnect everything after the
cursor is sent again; the ingest keeps records by id, so a duplicate is harmless.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from .config.schema import Config
from .journal import Journal
from .mqtt import BrokerSettings, make_client, refused_for_protocol
from .mqtt import start as mqtt_start
from .wire import (ACK, HEALTH, INFO, JOURNAL, STATUS, Batch, ClipManifest, Record, Status, WireError, clip_topic,
                   decode_ack, encode, topic)

log = logging.getLogger(__name__)

STAGE = "sync"
STATUS_FILE = "sync-status.json"
MAX_BATCH_BYTES = 256 * 1024
WINDOW = 4                      # batches in flight before an ack must come
CLIP_WINDOW = 8                 # clips uploading at once


def device_id(cfg: Config) -> str:
    if cfg.device.id:
        return cfg.device.id
    try:
        return "ca-" + open("/etc/machine-id").read().strip()[:12]
    except OSError:
        return "ca-" + os.uname().nodename


class SyncStage:
    def __init__(self, cfg: Config, journal: Journal, device: str | None = None):
        self.cfg = cfg
        self.journal = journal
        self.device = device or device_id(cfg)
        self.prefix = cfg.sync.prefix
        s = cfg.sync
        self.settings = BrokerSettings(s.broker, s.ca_file, s.cert_file, s.key_file, s.username, s.password,
                                       protocol="3.1.1" if s.protocol == "3.1.1" else "5")
        self.fallback_allowed = s.protocol == "auto"
        self.wants_fallback = False
        self._new_client()
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.acked = journal.cursor(STAGE)
        self.sent = self.acked
        self.in_flight: list[int] = []         # last seq of each batch sent and not yet acked
        self.pending_ack: int | None = None
        self.last_ack_time: float | None = None
        self.batches = 0
        self.clips_dir = Path(cfg.device.state_dir) / "clips"
        self.uploading: dict[str, dict] = {}    # clips being uploaded (a window of them)
        self.clip_queue: list = []              # clip events not yet uploaded, in upload order
        self.clip_done: set[str] = set()        # acknowledged or deleted
        self.clip_scan = 0                      # the last clip-related seq the queue has taken
        self.clip_progress: dict[str, int] = {}  # from the ingest: leading chunks it holds
        self.clips_acked: set[str] = set()       # acked by the ingest, not yet journalled
        self.chunk_bytes = cfg.sync.chunk_kib * 1024
        self.bucket = TokenBucket(cfg.sync.rate_limit_kbps * 1000 / 8)
        self.uploaded_bytes = 0
        self.progress_at = time.monotonic()      # the last ack that moved the cursor (or a fresh send)

    def _new_client(self) -> None:
        self.client, self.host, self.port = make_client(
            self.settings, f"{self.device}", (self._t(STATUS), encode(Status(state="offline"))))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def _t(self, name: str) -> str:
        return topic(self.prefix, self.device, name)

    # --- paho callbacks (its network thread) ---------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("sync: broker refused the connection: %s", reason_code)
            if self.fallback_allowed and self.settings.protocol == "5" and refused_for_protocol(reason_code):
                self.wants_fallback = True
            return
        client.subscribe(self._t(ACK), qos=1)
        client.publish(self._t(STATUS), encode(Status(state="online")), qos=1, retain=True)
        client.publish(self._t(INFO), json.dumps(info_payload(self.cfg, self.device)).encode(), qos=1, retain=True)
        with self.lock:
            self.sent = self.acked              # resend what the ingest has not acknowledged
            self.in_flight = []
            for c in self.uploading.values():   # resume each clip where the ingest's ack says
                c["next"] = self.clip_progress.get(c["id"], 0)
                c["manifest_sent"] = False
        self.connected.set()
        log.info("sync: connected to %s:%d as %s", self.host, self.port, self.device)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.warning("sync: disconnected (%s); will reconnect", reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            ack = decode_ack(msg.payload)
        except WireError as exc:
            log.warning("sync: ignored a bad ack: %s", exc)
            return
        with self.lock:
            if ack.upto > (self.pending_ack or self.acked):
                self.pending_ack = ack.upto
            self.clip_progress.update(ack.chunks)
            self.clips_acked.update(ack.clips)

    # --- the loop (main thread) ------------------------------------------------------------

    def start(self) -> None:
        mqtt_start(self.client, self.host, self.port, self.settings)

    def stop(self) -> None:
        if self.connected.is_set():
            info = self.client.publish(self._t(STATUS), encode(Status(state="offline")), qos=1, retain=True)
            try:
                info.wait_for_publish(2)
            except (RuntimeError, ValueError):   # the link went in the meantime: the will says it
                pass
        self.client.disconnect()
        self.client.loop_stop()

    def step(self) -> int:
        """Commit acks, send what the window allows. Returns records sent."""
        if self.wants_fallback:                 # the broker speaks MQTT 3.1.1 only
            log.warning("sync: the broker refused MQTT 5; falling back to 3.1.1")
            self.wants_fallback = False
            self.client.disconnect()
            self.client.loop_stop()
            self.connected.clear()
            self.settings.protocol = "3.1.1"
            self._new_client()
            self.start()
        with self.lock:
            upto = self.pending_ack
            self.pending_ack = None
        if upto is not None and upto > self.acked:
            upto = min(upto, self.journal.last_seq())
            with self.journal.stage(STAGE) as txn:
                txn.advance(max(txn.cursor, upto))
            with self.lock:
                self.acked = upto
                self.in_flight = [s for s in self.in_flight if s > upto]
            self.last_ack_time = time.time()
            self.progress_at = time.monotonic()
        with self.lock:
            if self.in_flight and time.monotonic() - self.progress_at > self.cfg.sync.ack_timeout_s:
                log.warning("sync: no acknowledgement for %.0f s; sending from seq %d again",
                            self.cfg.sync.ack_timeout_s, self.acked + 1)
                self.sent, self.in_flight = self.acked, []
                self.progress_at = time.monotonic()
        self._journal_clip_acks()
        if not self.connected.is_set():
            return 0
        sent = 0
        while True:
            with self.lock:
                if len(self.in_flight) >= WINDOW:
                    return sent
                prev = self.sent
            rows = self.journal.read(prev, self.cfg.sync.batch_max)
            if not rows:                        # every record is out: now audio
                self._upload_clips()
                return sent
            records, size = [], 0
            for e in rows:
                r = Record(seq=e.seq, id=e.id, type=e.type, ts=e.ts, point=e.point, source=e.source, data=e.data)
                size += len(encode(r))
                if records and size > MAX_BATCH_BYTES:
                    break
                records.append(r)
            batch = Batch(device=self.device, prev=prev, last=records[-1].seq, records=records)
            info = self.client.publish(self._t(JOURNAL), encode(batch), qos=1)
            if info.rc != 0:
                return sent
            with self.lock:
                if not self.in_flight:
                    self.progress_at = time.monotonic()
                self.sent = batch.last
                self.in_flight.append(batch.last)
            self.batches += 1
            sent += len(records)

    # --- clips ------------------------------------------------------------------------------

    def _journal_clip_acks(self) -> None:
        with self.lock:
            done, self.clips_acked = self.clips_acked, set()
        done -= self.clip_done
        if not done:
            return
        from .journal import NewEvent
        now = int(time.time() * 1000)
        self.journal.append_many([NewEvent("clip_acked", now, {"clip": c}, None, "sync", f"sync:clip_acked:{c}")
                                  for c in sorted(done)])
        self.clip_done |= done
        for c in done:
            self.uploading.pop(c, None)

    def _refresh_clip_queue(self) -> None:
        """Add clips journalled since the last look; drop acknowledged or deleted ones."""
        new = False
        for ev in self.journal.iter_all(["clip", "clip_acked", "clip_deleted"], after=self.clip_scan):
            self.clip_scan = ev.seq
            if ev.type == "clip":
                self.clip_queue.append(ev)
                new = True
            else:
                self.clip_done.add(ev.data["clip"])
        if new and self.cfg.sync.audio_order == "newest":
            self.clip_queue.sort(key=lambda e: e.seq, reverse=True)
        self.clip_queue = [e for e in self.clip_queue if e.data["clip"] not in self.clip_done]

    def _start_clip(self, ev) -> dict | None:
        path = self.clips_dir / ev.data["file"]
        if not path.exists():
            return None
        size = path.stat().st_size
        cid = ev.data["clip"]
        with self.lock:
            known = self.clip_progress.get(cid)
        return {"id": cid, "path": path, "size": size, "sha256": ev.data["sha256"],
                "chunks": max(1, -(-size // self.chunk_bytes)), "next": known or 0,
                # after a restart we do not know what the ingest holds: ask with the manifest first
                "probe": known is None, "probe_sent": 0.0, "manifest_sent": False, "tags": ev.data.get("tags", []), "file": ev.data["file"],
                "meta": {k: ev.data.get(k) for k in ("kind", "start", "end", "format", "contact", "point")}}

    def _upload_clips(self) -> None:
        self._refresh_clip_queue()
        while len(self.uploading) < CLIP_WINDOW and self.clip_queue:
            ev = self.clip_queue.pop(0)
            if ev.data["clip"] in self.uploading:
                continue
            c = self._start_clip(ev)
            if c is not None:
                self.uploading[c["id"]] = c
        for c in list(self.uploading.values()):
            if not self._send_clip(c):
                return

    def _send_clip(self, c: dict) -> bool:
        """Send what is left of one clip; False when the link or the cap says stop."""
        if c["probe"]:
            with self.lock:
                known = self.clip_progress.get(c["id"])
            if known is not None:               # the ingest told us where to resume
                c["next"], c["probe"] = known, False
            elif not c["probe_sent"]:
                if self.client.publish(clip_topic(self.prefix, self.device, c["id"], "manifest"),
                                       encode(self._manifest(c)), qos=1).rc != 0:
                    return False
                c["probe_sent"] = time.monotonic()
                return True
            elif time.monotonic() - c["probe_sent"] > self.cfg.sync.ack_timeout_s:
                c["probe"] = False              # no answer: send it all
            else:
                return True
        with open(c["path"], "rb") as f:
            while c["next"] < c["chunks"]:
                if not self.bucket.take(min(self.chunk_bytes, c["size"])):
                    return False                # over the upload cap: later
                f.seek(c["next"] * self.chunk_bytes)
                data = f.read(self.chunk_bytes)
                if self.client.publish(clip_topic(self.prefix, self.device, c["id"], c["next"]), data, qos=1).rc != 0:
                    return False
                self.uploaded_bytes += len(data)
                c["next"] += 1
        if not c["manifest_sent"]:
            m = self._manifest(c)
            if self.client.publish(clip_topic(self.prefix, self.device, c["id"], "manifest"), encode(m), qos=1).rc != 0:
                return False
            c["manifest_sent"] = True
            c["sent_at"] = time.monotonic()
        elif time.monotonic() - c.get("sent_at", 0) > self.cfg.sync.ack_timeout_s:
            c["next"] = self.clip_progress.get(c["id"], 0)      # no ack: send what is missing again
            c["manifest_sent"] = False
        return True

    def _manifest(self, c: dict) -> ClipManifest:
        return ClipManifest(clip=c["id"], file=c["file"], size=c["size"], sha256=c["sha256"], chunks=c["chunks"],
                            chunk_size=self.chunk_bytes, tags=c["tags"], meta=c["meta"])

    def backlog(self) -> dict:
        return backlog(self.journal)

    def publish_health(self) -> None:
        if self.connected.is_set():
            self.client.publish(self._t(HEALTH), json.dumps(health_payload(self.cfg, self.journal, self.device)).encode(),
                                qos=0)

    def status_doc(self) -> dict:
        return {"device": self.device, "connected": self.connected.is_set(), "broker": f"{self.host}:{self.port}",
                "acked_upto": self.acked, "sent_upto": self.sent, "batches": self.batches,
                "last_ack": self.last_ack_time, "uploaded_clip_bytes": self.uploaded_bytes,
                "clips_uploading": sorted(self.uploading), "time": time.time()}


def backlog(journal: Journal) -> dict:
    """Journal records the ingest has not acknowledged: count, bytes, age of the oldest."""
    cursor = journal.cursor(STAGE)
    count, size, oldest = journal.db.execute(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0), MIN(ts) FROM events WHERE seq > ?", (cursor,)).fetchone()
    age = round((time.time() * 1000 - oldest) / 1000, 1) if oldest is not None else None
    return {"count": count, "bytes": size, "oldest_age_s": age, "acked_upto": cursor, "last_seq": journal.last_seq()}


def info_payload(cfg: Config, device: str) -> dict:
    """Retained on ``info``: who the box is, what it runs, which config (never secrets)."""
    import hashlib
    import platform

    import msgspec

    from . import __version__
    from .config.schema import schema_json
    return {"device": device, "versions": {"appliance": __version__, "python": platform.python_version()},
            "config_hash": hashlib.sha256(msgspec.json.encode(cfg)).hexdigest()[:16],
            "points": list(cfg.points), "schema": schema_json()}


def health_payload(cfg: Config, journal: Journal, device: str) -> dict:
    """ARCHITECTURE §7 health: uptime, load, temperature, disk, backlog, microphone, RF, clock."""
    import platform
    import shutil

    from . import __version__
    from .clock import kernel_synced
    doc: dict = {"device": device, "time": int(time.time() * 1000)}
    try:
        doc["uptime_s"] = float(open("/proc/uptime").read().split()[0])
    except OSError:
        pass
    doc["load"] = list(os.getloadavg())
    try:
        doc["temperature_c"] = int(open("/sys/class/thermal/thermal_zone0/temp").read()) / 1000
    except (OSError, ValueError):
        doc["temperature_c"] = None
    du = shutil.disk_usage(cfg.device.state_dir)
    doc["disk"] = {"free_bytes": du.free, "total_bytes": du.total}
    doc["backlog"] = backlog(journal)
    try:
        doc["microphone"] = json.loads((Path(cfg.audio.spool_dir) / "level.json").read_text())
    except (OSError, ValueError):
        doc["microphone"] = None
    row = journal.db.execute("SELECT MAX(ts) FROM events WHERE source = 'rf'").fetchone()
    doc["rf_last_seen"] = row[0]
    doc["time_synced"] = kernel_synced()
    doc["versions"] = {"appliance": __version__, "python": platform.python_version()}
    return doc


class TokenBucket:
    """Bytes per second, with a second's worth of burst (0: no limit)."""

    def __init__(self, rate_bytes_s: float):
        self.rate = rate_bytes_s
        self.tokens = rate_bytes_s
        self.t = time.monotonic()

    def take(self, n: int) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(max(self.rate, n), self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


def run(cfg: Config, stop: threading.Event | None = None) -> int:
    import signal

    from .sdnotify import Notifier
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if not cfg.sync.broker:
        log.error('sync: [sync] broker is empty: nothing to sync to')
        return 3
    journal = Journal.in_dir(cfg.device.state_dir)
    stage = SyncStage(cfg, journal)
    stage.start()
    notifier = Notifier()
    notifier.ready("sync")
    last_ping = last_health = last_status = 0.0
    status_file = Path(cfg.device.state_dir) / STATUS_FILE
    try:
        while not stop.is_set():
            stage.step()
            mono = time.monotonic()
            if mono - last_ping >= notifier.ping_interval_s:
                notifier.watchdog()
                last_ping = mono
            if mono - last_health >= cfg.sync.health_interval_s:
                stage.publish_health()
                last_health = mono
            if mono - last_status >= 1.0:
                tmp = status_file.with_name(f".{STATUS_FILE}")
                tmp.write_text(json.dumps(stage.status_doc()))
                os.replace(tmp, status_file)
                last_status = mono
            stop.wait(0.05)
    finally:
        notifier.stopping()
        stage.stop()
        journal.close()
    return 0
