"""Delivery: each destination is its own journal stage with an outbox (ARCHITECTURE §2).

:class:`RouteStage` reads the routed event types after its cursor, asks the destination's
rules for a message and puts it in the outbox — message and cursor advance in one
transaction, so routing neither loses nor doubles anything. :class:`Courier` (a thread per
destination, its own journal connection) sends what is due: on success the message leaves the
outbox and a ``notification_sent`` event is journalled in the same transaction; a failure is
retried with exponential backoff and jitter; after ``max_attempts`` failures the message stays
in the outbox as a dead letter and a ``notification_dead`` event says so. A message is sent at
least once and never again after a confirmed success (webhooks carry an idempotency key, the
CSV log recognises its own lines). A clip not cut yet is waited for, ``clip_wait_s`` at most;
then the message goes without it and says so. A slow destination only delays itself.
"""
from __future__ import annotations

import logging
import os
import random
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import msgspec

from .. import vocabulary as v
from ..config.schema import Config, Notification
from ..journal import Journal
from ..routing import ROUTED_TYPES, Message, Rules
from ..timefmt import parse_ts
from . import chart
from .destinations import ClipFile, DeliveryError, Destination, open_destination

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 3600.0
DEAD_KEPT = 1000
"""Dead letters kept per destination (the oldest go first)."""
MIME = {"opus": "audio/ogg", "ogg": "audio/ogg", "wav": "audio/wav", "flac": "audio/flac"}
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Message).decode


def stage_name(name: str) -> str:
    return f"notify.{name}"


def backoff_s(attempts: int, first_s: float, rnd: random.Random) -> float:
    """The delay before attempt ``attempts + 1``: doubling from ``first_s``, ±25 % jitter,
    an hour at most."""
    base = min(MAX_BACKOFF_S, first_s * 2 ** max(0, attempts - 1))
    return base * rnd.uniform(0.75, 1.25)


class RouteStage:
    """One destination's routing stage: journal events -> outbox messages."""

    def __init__(self, cfg: Config, journal: Journal, name: str, device: str,
                 extend: Callable[[Message], Message] | None = None, clock: Callable[[], float] = time.time):
        self.journal = journal
        self.clock = clock                  # the outbox's times are the couriers' (wall) clock
        self.name = stage_name(name)
        self.rules = Rules(name, cfg.notifications[name], cfg, device)
        self.extend = extend or (lambda m: m)
        with journal.transaction() as db:             # a new destination starts from now, not from history
            db.execute("INSERT OR IGNORE INTO stages(name, cursor, updated) VALUES (?, (SELECT COALESCE(MAX(seq), 0)"
                       " FROM events), ?)", (self.name, int(self.clock() * 1000)))

    def step(self, batch: int = 500) -> int:
        """Route what came since the cursor. Returns the number of messages queued."""
        now_ms = int(self.clock() * 1000)
        if self.journal.last_seq() <= self.journal.cursor(self.name):
            return 0                            # nothing new: no write transaction
        queued = 0
        with self.journal.stage(self.name) as txn:
            events, upto = txn.read_batch(batch, ROUTED_TYPES)
            for ev in events:
                try:
                    msg = self.rules.select(ev)
                    if msg is not None:
                        msg = self.extend(msg)
                except (v.VocabularyError, KeyError, ValueError) as exc:   # one bad record fails alone
                    log.warning("%s: event %s not routed: %s", self.name, ev.id, exc)
                    continue
                if msg is None:
                    continue
                cur = txn.journal.db.execute(
                    "INSERT OR IGNORE INTO outbox(destination, key, created, due, message) VALUES (?,?,?,?,?)",
                    (msg.destination, msg.key, now_ms, now_ms, _encode(msg)))
                queued += cur.rowcount
            if upto == txn.cursor:
                txn.skip = True
            else:
                txn.advance(upto)
        return queued


class Courier:
    """Sends one destination's outbox (run in a thread of its own by the core daemon)."""

    def __init__(self, cfg: Config, journal_path: str | Path, name: str, destination: Destination | None = None,
                 clock: Callable[[], float] = time.time, seed: int | None = None):
        self.cfg = cfg
        self.name = name
        self.n: Notification = cfg.notifications[name]
        self.destination = destination or open_destination(self.n)
        self.journal_path = journal_path
        self.clock = clock
        self.rnd = random.Random(seed)
        self.clips_dir = Path(cfg.device.state_dir) / "clips"
        self.sent = 0
        self.failed = 0
        self.wake = threading.Event()
        """Set by the routing stage when it queued something: the courier goes at once."""

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def run(self, stop: threading.Event, idle_s: float = 0.5) -> None:
        """Until ``stop``. An error here ends the thread: the core daemon then reports itself
        unhealthy and systemd restarts it (the outbox is in the journal: nothing is lost)."""
        try:
            with Journal(self.journal_path) as j:
                while not stop.is_set():
                    if not self.step(j):
                        self.wake.wait(idle_s)
                        self.wake.clear()
        except Exception:
            log.exception("notify %s: the courier stopped", self.name)
            raise

    def due(self, j: Journal, limit: int = 20) -> list[tuple[str, int, int, bytes]]:
        return j.db.execute("SELECT key, created, attempts, message FROM outbox WHERE destination = ? AND dead = 0"
                            " AND due <= ? ORDER BY due, created LIMIT ?", (self.name, self.now_ms(), limit)).fetchall()

    def step(self, j: Journal) -> int:
        """Try every message due now. Returns how many were tried."""
        rows = self.due(j)
        for key, created, attempts, raw in rows:
            msg = _decode(raw)
            if msg.kind == "report":
                self.send_report(j, key, attempts, msg)
                continue
            clip, wait = self.clip_for(j, msg, created)
            if wait:
                with j.transaction() as db:
                    db.execute("UPDATE outbox SET due = ? WHERE destination = ? AND key = ?",
                               (self.now_ms() + 2000, self.name, key))
                continue
            self.attempt(j, key, attempts, msg, clip)
        return len(rows)

    def attempt(self, j: Journal, key: str, attempts: int, msg: Message, clip: ClipFile | None) -> bool:
        """One send; its outcome journalled. True when it got through."""
        try:
            self.destination.send(msg, clip)
        except DeliveryError as exc:
            self.failed += 1
            self.fail(j, msg, attempts + 1, str(exc))
            return False
        except Exception as exc:            # a destination's bug fails this message, not the courier
            log.exception("notify %s: sending %s failed", self.name, key)
            self.failed += 1
            self.fail(j, msg, attempts + 1, f"{type(exc).__name__}: {exc}")
            return False
        self.sent += 1
        with j.transaction() as db:
            db.execute("DELETE FROM outbox WHERE destination = ? AND key = ?", (self.name, key))
            j._insert(v.NotificationSent(destination=self.name, key=key, kind=msg.kind, attempts=attempts + 1,
                                         clip=clip.clip if clip and clip.clip else None)
                      .as_event(self.now_ms(), msg.point, "core", f"sent:{self.name}:{key}"))
        log.info("notify %s: sent %s %s", self.name, msg.kind, key)
        return True

    def send_report(self, j: Journal, key: str, attempts: int, msg: Message) -> None:
        """A report, with its chart drawn in a short-lived process when the rule asks for one."""
        r = msg.body.get("report", {})
        if not r.get("chart") or not r.get("hours"):
            self.attempt(j, key, attempts, msg, None)
            return
        try:
            png = chart.render_in_child(r["hours"])
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            log.warning("notify %s: report chart not drawn (%s): sent without it", self.name, exc)
            self.attempt(j, key, attempts, msg, None)
            return
        fd, tmp = tempfile.mkstemp(prefix="report-", suffix=".png")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(png)
            name = f"report-{r['start'][:10]}-{r['every']}.png"
            self.attempt(j, key, attempts, msg, ClipFile(Path(tmp), name, "image/png", "", "", 0.0))
        finally:
            os.unlink(tmp)

    def fail(self, j: Journal, msg: Message, attempts: int, error: str) -> None:
        error = error[:500]
        with j.transaction() as db:
            if attempts >= self.n.max_attempts:
                db.execute("UPDATE outbox SET dead = 1, attempts = ?, last_error = ?, due = ? WHERE destination = ? "
                           "AND key = ?", (attempts, error, self.now_ms(), self.name, msg.key))
                j._insert(v.NotificationDead(destination=self.name, key=msg.key, kind=msg.kind, attempts=attempts,
                                             error=error).as_event(self.now_ms(), msg.point, "core",
                                                                   f"dead:{self.name}:{msg.key}"))
                db.execute("DELETE FROM outbox WHERE destination = ? AND dead = 1 AND key NOT IN (SELECT key FROM "
                           "outbox WHERE destination = ? AND dead = 1 ORDER BY due DESC LIMIT ?)",
                           (self.name, self.name, DEAD_KEPT))
                log.error("notify %s: %s given up after %d attempts: %s", self.name, msg.key, attempts, error)
                return
            delay = backoff_s(attempts, self.n.retry_s, self.rnd)
            db.execute("UPDATE outbox SET attempts = ?, last_error = ?, due = ? WHERE destination = ? AND key = ?",
                       (attempts, error, self.now_ms() + round(delay * 1000), self.name, msg.key))
        log.warning("notify %s: %s failed (attempt %d, next in %.1f s): %s", self.name, msg.key, attempts, delay, error)

    def clip_for(self, j: Journal, msg: Message, created: int) -> tuple[ClipFile | None, bool]:
        """(the clip to attach, whether to wait for it)."""
        if msg.clip is None:
            return None, False
        kind, ref = msg.clip
        field = "contact" if kind == "contact" else "event"
        row = j.db.execute(f"SELECT data FROM events WHERE ts >= ? AND type = ? AND json_extract(data, '$.{field}') = ?"
                           " ORDER BY seq DESC LIMIT 1", (msg.t - 86_400_000, v.CLIP, ref)).fetchone()
        if row is not None:
            c = msgspec.json.decode(row[0], type=v.Clip)
            path = self.clips_dir / c.file
            if path.exists():
                start = time.strftime("%Y%m%d-%H%M%S", time.gmtime(parse_ts(c.start) / 1000))
                return ClipFile(path, f"{msg.point or 'box'}-{start}-{kind}{path.suffix}",
                                MIME.get(c.format, "application/octet-stream"), c.clip, c.sha256, c.duration_s), False
            return None, False                  # cut, then removed by retention: goes without
        waited_s = (self.now_ms() - created) / 1000
        return None, waited_s < self.n.clip_wait_s
