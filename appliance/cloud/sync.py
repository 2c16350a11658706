"""The sync stage (``appliance-sync``): store-and-forward of the journal to the cloud.

Records go out in sequence order, in batches bounded by count and bytes, QoS 1, with a
window of batches in flight (:class:`AckWindow`). They count as delivered only when the
ingest's ``ack`` says it has stored them (end to end, not the broker's PUBACK); then, and
only then, the stage cursor ``sync`` moves, in a journal transaction. After a reconnect
everything after the cursor is sent again; the ingest keeps records by id, so a duplicate
is harmless. Clips follow once every record is out (:mod:`.clip_upload`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import random
import threading
import time
from pathlib import Path


from .. import __version__
from .. import health as box_health
from .. import vocabulary as v
from ..config import config_hash
from ..config.schema import Config, schema_json
from ..files import write_atomic
from ..ids import device_id
from ..journal import Journal
from ..logs import fields
from .clip_upload import PROBE, SEND, ClipUpload, TokenBucket
from .mqtt import BrokerSettings, Handshake, make_client, network_alive, other_protocol
from .mqtt import start as mqtt_start
from .wire import (ACK, HEALTH, INFO, JOURNAL, LOAD, STATUS, Batch, Record, Status, WireError, clip_topic,
                   decode_ack, decode_load, encode, topic)

log = logging.getLogger(__name__)

STAGE = box_health.SYNC_STAGE
STATUS_FILE = "sync-status.json"
PROTOCOL_FILE = "sync-protocol"
"""With ``protocol = "auto"``: the MQTT version the broker last accepted, tried first next time."""
MAX_BATCH_BYTES = 256 * 1024
WINDOW = 4                      # batches in flight before an ack must come
CLIP_WINDOW = 8                 # clips uploading at once


class AckWindow:
    """Batches in flight and what the ingest acknowledged, and the pace of resending. Acks
    come on paho's thread, the cursor moves on the stage's: everything here is under one
    lock. An ack never moves the box past what it has sent (ARCHITECTURE §11). Pure: every
    method is given the time (monotonic seconds) and the randomness.

    How a box keeps from stampeding an ingest that is catching up:

    - after a *re*connect it waits a random delay in [0, ``jitter_s``) before sending
      (``reconnected``): a thousand boxes coming back together spread over seconds;
    - no ack within the timeout while the link is up and the broker took every publish:
      the ingest is slow, not deaf. Only the oldest batch goes again (``probe``) and the
      timeout doubles, up to ``max_timeout_s``; any progress brings it back to
      ``timeout_s``. A link that lost publishes (or a new connection) sends everything after
      the cursor again (``rewind``);
    - the timeout never ends before the time the ingest says it needs (``busy``: its
      retained load hint, ``wait_s`` from when the box heard it).
    """

    def __init__(self, acked: int, timeout_s: float = 30.0, max_timeout_s: float = 600.0, jitter_s: float = 0.0,
                 now: float | None = None):
        self.lock = threading.Lock()
        self.acked = acked              # committed: the stage cursor
        self.sent = acked               # the last seq sent on this connection
        self.highest_sent = acked       # the last seq ever sent by this process
        self.in_flight: list[int] = []  # last seq of each batch sent and not yet acked
        self.pending: int | None = None  # acked by the ingest, not yet committed
        self.progress_at = time.monotonic() if now is None else now
        self.base_timeout_s = timeout_s
        self.max_timeout_s = max(timeout_s, max_timeout_s)
        self.timeout_s = timeout_s      # doubles on each timeout without progress
        self.jitter_s = jitter_s
        self.hold_until = 0.0           # after a reconnect: no journal batch before this
        self.connections = 0
        self.busy: dict[str, float] = {}  # ingest worker -> until when it said it is busy
        self.probes = 0                 # oldest batches resent after a timeout
        self.rewinds = 0                # everything after the cursor sent again (not counting connects)

    def on_ack(self, upto: int) -> None:
        with self.lock:
            if upto > self.highest_sent:
                log.warning("sync: ignored an ack up to seq %d: only %d was sent", upto, self.highest_sent)
                return
            if upto > (self.pending or self.acked):
                self.pending = upto

    def take_pending(self) -> int | None:
        with self.lock:
            upto, self.pending = self.pending, None
        return upto if upto is not None and upto > self.acked else None

    def committed(self, upto: int, now: float) -> None:
        with self.lock:
            self.acked = upto
            self.sent = max(self.sent, upto)    # a rewind on paho's thread may have just set it lower
            self.in_flight = [s for s in self.in_flight if s > upto]
            self.progress_at = now
            self.timeout_s = self.base_timeout_s       # the ingest answers: back to the normal pace

    def may_send(self, now: float) -> bool:
        """Not holding back after a reconnect, and room in the window."""
        with self.lock:
            return now >= self.hold_until and len(self.in_flight) < WINDOW

    def sent_batch(self, last: int, now: float) -> None:
        with self.lock:
            if not self.in_flight:
                self.progress_at = now
            self.sent = last
            self.highest_sent = max(self.highest_sent, last)
            self.in_flight.append(last)

    def reconnected(self, now: float, rng) -> None:
        """A connection is up: everything after the cursor goes again — at once on the
        process's first connection, after a random delay in [0, jitter) on a reconnect."""
        with self.lock:
            self.connections += 1
            delay = rng.uniform(0, self.jitter_s) if self.connections > 1 and self.jitter_s > 0 else 0.0
            self.hold_until = now + delay
            self.sent, self.in_flight = self.acked, []
            self.progress_at = now + delay
            self.timeout_s = self.base_timeout_s

    def rewind(self, now: float | None = None, to: int | None = None) -> None:
        """Send everything after the cursor again (a link that lost publishes), or after
        ``to`` (a resync asked by the fleet; the committed cursor does not move back)."""
        with self.lock:
            self.sent, self.in_flight = self.acked if to is None else to, []
            if now is not None:
                self.progress_at = now

    def deadline(self) -> float:
        """When the batches in flight count as unanswered: the timeout after the last
        progress, and never before the ingest said it would be through its backlog."""
        with self.lock:
            return max([self.progress_at + self.timeout_s, *self.busy.values()])

    def stalled(self, now: float) -> bool:
        with self.lock:
            if not self.in_flight:
                return False
        return now > self.deadline()

    def on_busy(self, worker: str, wait_s: float, now: float) -> None:
        """An ingest worker's load hint: it needs ``wait_s`` more seconds for what it holds
        (capped at the longest timeout; 0 clears it)."""
        with self.lock:
            if wait_s <= 0:
                self.busy.pop(worker, None)
            elif worker in self.busy or len(self.busy) < 64:
                self.busy[worker] = now + min(wait_s, self.max_timeout_s)

    def probe(self, now: float, last: int) -> None:
        """No ack in time though the broker took every publish: the oldest batch (up to
        ``last``) went again, the others stay in flight, and the next timeout is twice as
        long (capped)."""
        with self.lock:
            self.highest_sent = max(self.highest_sent, last)
            self.probes += 1
            self.progress_at = now
            self.timeout_s = min(self.timeout_s * 2, self.max_timeout_s)

    def resend_all(self, now: float) -> None:
        """No ack in time and the link lost publishes: everything after the cursor again."""
        self.rewind(now)
        with self.lock:
            self.rewinds += 1


class Extension:
    """More than the journal on the same connection (the provisioning agent: remote config,
    commands, certificate renewal). ``topics`` are suffixes under the device's root;
    ``on_message`` and ``on_connected`` run on paho's thread and contain their own failures;
    ``step`` runs on the stage's thread."""
    topics: tuple[str, ...] = ()

    def on_connected(self, stage: "SyncStage") -> None:
        pass

    def on_message(self, stage: "SyncStage", suffix: str, payload: bytes) -> None:
        pass

    def on_foreign(self, topic: str, payload: bytes) -> None:
        """A message on a topic outside the device's root that the extension subscribed to."""

    def step(self, stage: "SyncStage") -> None:
        pass

    def info(self) -> dict:
        """Fields added to the retained ``info`` (any thread)."""
        return {}


class SyncStage:
    def __init__(self, cfg: Config, journal: Journal, device: str | None = None,
                 settings: BrokerSettings | None = None, extensions: list[Extension] | None = None):
        self.cfg = cfg
        self.journal = journal
        self.device = device or device_id(cfg)
        self.prefix = cfg.sync.prefix
        self.settings = settings or BrokerSettings.from_config(cfg.sync)
        self.extensions = list(extensions or [])
        self.fallback_allowed = cfg.sync.protocol == "auto"
        if self.fallback_allowed:
            remembered = remembered_protocol(cfg.device.state_dir)
            if remembered:
                self.settings = dataclasses.replace(self.settings, protocol=remembered)
        self.worked: str | None = None          # a protocol the broker accepted, to remember (main thread)
        self.lock = threading.Lock()            # clip state shared with paho's thread
        self.connected = threading.Event()
        s = cfg.sync
        self.window = AckWindow(journal.cursor(STAGE), s.ack_timeout_s, s.ack_timeout_max_s, s.reconnect_jitter_s)
        self.rng = random.Random()
        self.load_root = f"{self.prefix}/{LOAD}/"
        self.published: dict[int, object] = {}  # last seq of a batch in flight -> paho's MQTTMessageInfo
        self.last_ack_time: float | None = None
        self.batches = 0
        self.clips_dir = Path(cfg.device.state_dir) / "clips"
        self.uploading: dict[str, ClipUpload] = {}  # clips being uploaded (a window of them)
        self.clip_queue: list = []              # clip events not yet uploaded, in upload order
        self.clip_done: set[str] = set()        # acknowledged or deleted
        self.clip_scan = 0                      # the last clip-related seq the queue has taken
        self.clip_progress: dict[str, int] = {}  # from the ingest: leading chunks it holds
        self.sent_clips: set[str] = set()        # clips this process has begun to upload
        self.clips_acked: set[str] = set()       # acked by the ingest, not yet journalled
        self.chunk_bytes = cfg.sync.chunk_kib * 1024
        self.bucket = TokenBucket(cfg.sync.rate_limit_kbps * 1000 / 8)
        self.uploaded_bytes = 0
        self.rejected = 0                       # bad messages from the cloud, contained and logged
        self.last_error: str | None = None      # why the link is down (for status), None while up
        self.offline_since: float | None = time.time()
        self._new_client()

    @property
    def acked(self) -> int:
        return self.window.acked

    @property
    def sent(self) -> int:
        return self.window.sent

    def _new_client(self) -> None:
        self.client, self.host, self.port = make_client(
            self.settings, f"{self.device}", (self._t(STATUS), encode(Status(state="offline"))))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail
        self.handshake = Handshake()
        self.handshake.attach(self.client)
        self.client_started = False
        self._status_written: dict | None = None

    def _t(self, name: str) -> str:
        return topic(self.prefix, self.device, name)

    # --- paho callbacks (its network thread) ---------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.handshake.connack(reason_code)
        if reason_code.is_failure:
            log.warning("sync: broker refused the connection: %s", reason_code)
            self.last_error = f"the broker refused the connection: {reason_code}"
            return
        self.worked = self.settings.protocol
        client.subscribe(self._t(ACK), qos=1)
        client.subscribe(self.load_root + "+", qos=0)   # retained: each worker's load comes at once
        for ext in self.extensions:
            for t in ext.topics:
                client.subscribe(self._t(t), qos=1)
        client.publish(self._t(STATUS), encode(Status(state="online")), qos=1, retain=True)
        self.publish_info()
        self.window.reconnected(time.monotonic(), self.rng)   # resend what the ingest has not acknowledged
        self.published = {}
        with self.lock:
            for c in self.uploading.values():   # resume each clip where the ingest's ack says
                c.reconnected(self.clip_progress.get(c.clip))
        self.connected.set()
        self.last_error = self.offline_since = None
        log.info("sync: connected to %s:%d as %s", self.host, self.port, self.device)
        for ext in self.extensions:
            try:
                ext.on_connected(self)
            except Exception:  # noqa: BLE001 - paho's thread must live on
                log.exception("sync: %s failed on connect", type(ext).__name__)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.handshake.closed()
        self.connected.clear()
        self.offline_since = self.offline_since or time.time()
        if self.last_error is None or not self.last_error.startswith("the broker refused"):
            self.last_error = f"disconnected: {reason_code}"
        log.warning("sync: disconnected (%s); will reconnect", reason_code)

    def _on_connect_fail(self, client, userdata) -> None:
        self.last_error = f"cannot reach the broker at {self.host}:{self.port} (network, address or TLS)"

    def _on_message(self, client, userdata, msg) -> None:
        """An ack from the ingest. It may only confirm what this box sent: anything else is
        ignored and logged, and nothing it holds stops paho's network loop."""
        if msg.topic != self._t(ACK):
            if msg.topic.startswith(self.load_root):
                self._on_load(msg)
            else:
                self._dispatch(msg)
            return
        try:
            ack = decode_ack(msg.payload)
            self.window.on_ack(ack.upto)
            with self.lock:
                strangers = sorted(set(ack.clips) - self.sent_clips)
                self.clip_progress.update({c: n for c, n in ack.chunks.items() if c in self.sent_clips})
                self.clips_acked.update(c for c in ack.clips if c in self.sent_clips)
            if strangers:
                log.warning("sync: ignored an ack for %d clip(s) this box has not sent, e.g. %s",
                            len(strangers), strangers[0])
        except WireError as exc:
            self.rejected += 1
            log.warning("sync: ignored a bad ack: %s", exc)
        except Exception:  # noqa: BLE001 - paho's thread must live on
            self.rejected += 1
            log.exception("sync: an ack could not be handled")

    def _on_load(self, msg) -> None:
        worker = msg.topic[len(self.load_root):]
        try:
            load = decode_load(msg.payload)
        except WireError as exc:
            self.rejected += 1
            log.warning("sync: ignored a bad load hint from %s: %s", worker[:64], exc)
            return
        self.window.on_busy(worker[:64], load.wait_s, time.monotonic())

    def _dispatch(self, msg) -> None:
        root = self._t("")
        for ext in self.extensions:
            try:
                if msg.topic.startswith(root):
                    ext.on_message(self, msg.topic[len(root):], msg.payload)
                else:
                    ext.on_foreign(msg.topic, msg.payload)
            except Exception:  # noqa: BLE001 - one bad message fails alone
                self.rejected += 1
                log.exception("sync: %s could not handle a message on %s", type(ext).__name__, msg.topic[:200])

    def publish_info(self) -> None:
        """Retained ``info``, with what the extensions add (the last update's state)."""
        doc = info_payload(self.cfg, self.device)
        for ext in self.extensions:
            try:
                doc.update(ext.info())
            except Exception:  # noqa: BLE001 - info goes out without that part
                log.exception("sync: %s could not add to info", type(ext).__name__)
        self.client.publish(self._t(INFO), json.dumps(doc).encode(), qos=1, retain=True)

    def publish(self, suffix: str, payload: bytes, retain: bool = False, qos: int = 1):
        """Publish under this device's root (any thread)."""
        return self.client.publish(self._t(suffix), payload, qos=qos, retain=retain)

    def resend_from(self, seq: int) -> int:
        """Send the journal again from ``seq`` (the ingest keeps records by id: duplicates
        are harmless); the committed cursor does not move back. Returns the seq it starts at."""
        seq = max(1, min(seq, self.journal.last_seq() + 1))
        self.window.rewind(time.monotonic(), to=seq - 1)
        return seq

    def reconnect_with(self, settings: BrokerSettings) -> None:
        """A new client with new settings (another MQTT version, a renewed certificate);
        paho's thread of the old one is stopped first, so nothing changes under a running
        thread. The journal's place is the stage cursor and does not move."""
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
        self.client_started = False
        self.settings = settings
        self._new_client()
        self.start()

    # --- the loop (main thread) ------------------------------------------------------------

    def start(self) -> None:
        mqtt_start(self.client, self.host, self.port, self.settings)
        self.client_started = True

    def stop(self) -> None:
        if self.connected.is_set():
            info = self.client.publish(self._t(STATUS), encode(Status(state="offline")), qos=1, retain=True)
            try:
                info.wait_for_publish(2)
            except (RuntimeError, ValueError):   # the link went in the meantime: the will says it
                pass
        self.client.disconnect()
        self.client.loop_stop()

    def _switch_protocol(self) -> None:
        """``auto``: the broker did not take this MQTT version (refused, closed, or silent):
        a new client with the other one (paho's thread of the old one is stopped first;
        nothing is changed under a running thread)."""
        new = other_protocol(self.settings.protocol)
        log.warning("sync: the broker did not accept MQTT %s (refused, closed or no answer within %.0f s); "
                    "trying MQTT %s", self.settings.protocol, self.handshake.timeout_s, new)
        self.reconnect_with(dataclasses.replace(self.settings, protocol=new))

    def _remember_protocol(self) -> None:
        worked, self.worked = self.worked, None
        if worked and self.fallback_allowed and remembered_protocol(self.cfg.device.state_dir) != worked:
            try:
                write_atomic(Path(self.cfg.device.state_dir) / PROTOCOL_FILE, worked + "\n")
                log.info("sync: the broker speaks MQTT %s; remembered for the next start", worked)
            except OSError as exc:
                log.warning("sync: could not remember the MQTT version: %s", exc.strerror or exc)

    def alive(self) -> bool:
        """paho's network thread runs (once started): a dead one would leave the box deaf."""
        return not self.client_started or network_alive(self.client)

    def step(self) -> int:
        """Commit acks, send what the window allows. Returns records sent."""
        if not self.alive():
            raise RuntimeError("sync: the MQTT network loop has stopped")
        if self.fallback_allowed and self.client_started and self.handshake.failed():
            self._switch_protocol()
        if self.worked:
            self._remember_protocol()
        for ext in self.extensions:
            ext.step(self)
        upto = self.window.take_pending()
        if upto is not None:
            upto = min(upto, self.journal.last_seq())
            with self.journal.stage(STAGE) as txn:
                txn.advance(max(txn.cursor, upto))
            self.window.committed(upto, time.monotonic())
            self.published = {k: i for k, i in self.published.items() if k > upto}
            self.last_ack_time = time.time()
        now = time.monotonic()
        if self.window.stalled(now):
            self._unanswered(now)
        self._journal_clip_acks()
        if not self.connected.is_set():
            return 0
        sent = 0
        while self.window.may_send(time.monotonic()):
            prev = self.window.sent
            rows = self.journal.read(prev, self.cfg.sync.batch_max)
            if not rows:                        # every record is out: now audio
                self._upload_clips()
                return sent
            batch = self._batch(prev, rows)
            info = self.client.publish(self._t(JOURNAL), encode(batch), qos=1)
            if info.rc != 0:
                return sent
            self.published[batch.last] = info
            self.window.sent_batch(batch.last, time.monotonic())
            self.batches += 1
            sent += len(batch.records)
        return sent

    def _unanswered(self, now: float) -> None:
        """No ack by the deadline. The broker took every batch in flight and the link is up:
        the ingest is busy — only the oldest batch goes again, and the next timeout is longer.
        Otherwise publishes were lost with the link: everything after the cursor goes again."""
        w = self.window
        with w.lock:
            flight = list(w.in_flight)
        self.published = {k: i for k, i in self.published.items() if k in flight}
        took_all = all(k in self.published and broker_took(self.published[k]) for k in flight)
        if self.connected.is_set() and took_all:
            rows = self.journal.read(self.acked, self.cfg.sync.batch_max)
            if rows:
                batch = self._batch(self.acked, rows)
                if self.client.publish(self._t(JOURNAL), encode(batch), qos=1).rc == 0:
                    w.probe(now, batch.last)
                    self.batches += 1
                    log.warning("sync: no acknowledgement in time though the broker took every batch: the ingest is "
                                "busy; sent the oldest batch (seq %d-%d) again, next timeout %.0f s",
                                batch.records[0].seq, batch.last, w.timeout_s)
                    return
        log.warning("sync: no acknowledgement in time and the link lost publishes; sending from seq %d again",
                    self.acked + 1)
        w.resend_all(now)
        self.published = {}

    def _batch(self, prev: int, rows: list) -> Batch:
        records, size = [], 0
        for e in rows:
            r = Record(seq=e.seq, id=e.id, type=e.type, ts=e.ts, point=e.point, source=e.source, data=e.data)
            size += len(encode(r))
            if records and size > MAX_BATCH_BYTES:
                break
            records.append(r)
        return Batch(device=self.device, prev=prev, last=records[-1].seq, records=records)

    # --- clips ------------------------------------------------------------------------------

    def _journal_clip_acks(self) -> None:
        with self.lock:
            done, self.clips_acked = self.clips_acked, set()
        done -= self.clip_done
        if not done:
            return
        now = int(time.time() * 1000)
        self.journal.append_many([v.ClipAcked(clip=c).as_event(now, None, "sync", f"sync:clip_acked:{c}")
                                  for c in sorted(done)])
        self.clip_done |= done
        for c in done:
            self.uploading.pop(c, None)
            log.info("sync: clip %s acknowledged", c, extra=fields(clip=c))

    def _refresh_clip_queue(self) -> None:
        """Add clips journalled since the last look; drop acknowledged or deleted ones."""
        new = False
        for ev in self.journal.iter_all(v.CLIP_LIFECYCLE, after=self.clip_scan):
            self.clip_scan = ev.seq
            if ev.type == v.CLIP:
                self.clip_queue.append((ev, v.read(ev, v.Clip)))
                new = True
            else:
                done = v.read(ev, v.ClipAcked) if ev.type == v.CLIP_ACKED else v.read(ev, v.ClipDeleted)
                self.clip_done.add(done.clip)
        if new and self.cfg.sync.audio_order == "newest":
            self.clip_queue.sort(key=lambda e: e[0].seq, reverse=True)
        self.clip_queue = [e for e in self.clip_queue if e[1].clip not in self.clip_done]
        # nothing here grows with uptime: only clips still queued or uploading are remembered
        # (a late second ack of an old clip is deduplicated by its journal key)
        live = {c.clip for _, c in self.clip_queue} | set(self.uploading)
        self.clip_done &= live | {c for c in self.clip_done if c in self.clips_acked}
        with self.lock:
            self.sent_clips &= live

    def _start_clip(self, ev, clip: v.Clip) -> ClipUpload | None:
        path = self.clips_dir / clip.file
        if not path.exists():
            return None
        with self.lock:
            known = self.clip_progress.get(clip.clip)
        meta = {"kind": clip.kind, "start": clip.start, "end": clip.end, "format": clip.format,
                "contact": clip.contact, "point": ev.point}
        return ClipUpload.start(clip.clip, path, clip.file, clip.sha256, self.chunk_bytes, known, clip.tags, meta)

    def _upload_clips(self) -> None:
        self._refresh_clip_queue()
        while len(self.uploading) < CLIP_WINDOW and self.clip_queue:
            ev, clip = self.clip_queue.pop(0)
            if clip.clip in self.uploading:
                continue
            c = self._start_clip(ev, clip)
            if c is not None:
                self.uploading[c.clip] = c
                with self.lock:
                    self.sent_clips.add(c.clip)
        for c in list(self.uploading.values()):
            if not self._send_clip(c):
                return

    def _send_clip(self, c: ClipUpload) -> bool:
        """Do what the clip's plan says; False when the link or the upload cap says stop."""
        with self.lock:
            known = self.clip_progress.get(c.clip)
        action = c.plan(known, time.monotonic(), self.cfg.sync.ack_timeout_s)
        if action == PROBE:
            if not self._publish_manifest(c):
                return False
            c.probe_sent = time.monotonic()
            return True
        if action != SEND:
            return True
        with open(c.path, "rb") as f:
            while c.next < c.chunks:
                if not self.bucket.take(min(self.chunk_bytes, c.size)):
                    return False                # over the upload cap: later
                f.seek(c.next * self.chunk_bytes)
                data = f.read(self.chunk_bytes)
                if self.client.publish(clip_topic(self.prefix, self.device, c.clip, c.next), data, qos=1).rc != 0:
                    return False
                self.uploaded_bytes += len(data)
                c.next += 1
        if not self._publish_manifest(c):
            return False
        c.manifest_sent = time.monotonic()
        return True

    def _publish_manifest(self, c: ClipUpload) -> bool:
        return self.client.publish(clip_topic(self.prefix, self.device, c.clip, "manifest"),
                                   encode(c.manifest()), qos=1).rc == 0

    # --- reports ----------------------------------------------------------------------------

    def backlog(self) -> dict:
        return box_health.backlog(self.journal)

    def publish_health(self) -> None:
        if self.connected.is_set():
            doc = box_health.report(self.cfg, self.journal, self.device)
            self.client.publish(self._t(HEALTH), json.dumps(doc).encode(), qos=0)

    def busy(self) -> bool:
        """Records or clips on their way (acks to commit soon): the loop keeps its fast pace."""
        return self.window.sent > self.window.acked or bool(self.uploading) or bool(self.clip_queue)

    def status_line(self) -> str:
        backlog = self.journal.last_seq() - self.acked
        if self.connected.is_set():
            return f"sync: connected to {self.host}:{self.port}, {backlog} records not yet acknowledged"
        since = time.strftime("%H:%M:%S", time.localtime(self.offline_since)) if self.offline_since else "?"
        return (f"sync: offline since {since}" + (f" ({self.last_error})" if self.last_error else "")
                + f", {backlog} records wait")

    def status_doc(self) -> dict:
        return {"device": self.device, "connected": self.connected.is_set(), "broker": f"{self.host}:{self.port}",
                "acked_upto": self.acked, "sent_upto": self.sent, "batches": self.batches,
                "last_ack": self.last_ack_time, "uploaded_clip_bytes": self.uploaded_bytes,
                "clips_uploading": sorted(self.uploading), "rejected_messages": self.rejected, "pid": os.getpid(),
                "last_error": self.last_error, "offline_since": self.offline_since,
                "ack_timeout_s": self.window.timeout_s, "resent_oldest": self.window.probes,
                "resent_all": self.window.rewinds}

    def write_status(self) -> None:
        """For ``appliancectl sync status``, only when it changed: an idle box writes nothing
        to its SD card. A full disk delays it, never stops the sync."""
        doc = self.status_doc()
        if doc == self._status_written:
            return
        try:
            write_atomic(Path(self.cfg.device.state_dir) / STATUS_FILE, json.dumps({**doc, "time": time.time()}))
            self._status_written = doc
        except OSError as exc:
            log.warning("sync: status file not written: %s", exc.strerror or exc)


def broker_took(info) -> bool:
    """The broker acknowledged the publish (paho raises for one that failed outright: the
    link was down — not acknowledged)."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return False


def remembered_protocol(state_dir: str) -> str | None:
    try:
        text = (Path(state_dir) / PROTOCOL_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text in ("5", "3.1.1") else None


def info_payload(cfg: Config, device: str) -> dict:
    """Retained on ``info``: who the box is, what it runs, which config (never secrets)."""
    return {"device": device, "versions": {"appliance": __version__, "python": platform.python_version()},
            "config_hash": config_hash(cfg),
            "points": list(cfg.points), "schema": schema_json()}


def run(cfg: Config, stop: threading.Event | None = None) -> int:
    """The sync stage alone (``appliancectl run sync`` adds the fleet agent: provisioning.agent)."""
    if not cfg.sync.broker:
        log.error('sync: [sync] broker is empty: nothing to sync to')
        return 3
    journal = Journal.in_dir(cfg.device.state_dir)
    return loop(SyncStage(cfg, journal), journal, stop)


def loop(stage: SyncStage, journal: Journal, stop: threading.Event | None = None) -> int:
    from ..daemon import Job, run_loop
    stage.start()

    def close() -> None:
        stage.stop()
        journal.close()
    def step() -> bool:
        sent = stage.step()
        return bool(sent or stage.busy())
    return run_loop("sync", step, tick_s=0.05, idle_tick_s=1.0, stop=stop, on_stop=close,
                    jobs=[Job("health", stage.cfg.sync.health_interval_s, stage.publish_health),
                          Job("status file", 1.0, stage.write_status)],
                    status=stage.status_line)
