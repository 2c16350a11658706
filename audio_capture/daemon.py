"""``appliancectl run audio``: the appliance-audio daemon. A capture thread reads the
microphone into the spool (re-opening it with backoff when it goes away, never crashing),
meters its level; the main loop runs the clip stage and retention, and journals the
microphone's state changes."""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from appliance import vocabulary as v
from appliance.clock import clock_from_env
from appliance.config.schema import Config
from appliance.daemon import Job, run_loop
from appliance.files import write_atomic
from appliance.health import LEVEL_FILE
from appliance.journal import Journal
from appliance.update_lock import BusyFlag

from .ledger import ClipLedger
from .level import LevelMeter
from .retention import plan
from .sources import open_source
from .sources.base import AudioError
from .spool import SegmentSpool
from .stage import AudioStage

log = logging.getLogger(__name__)


class Capture(threading.Thread):
    """Source -> spool + level meter, forever; device loss -> state 'lost', re-open."""

    def __init__(self, cfg: Config, spool: SegmentSpool, opener, stop: threading.Event,
                 level_dir: Path | None = None):
        super().__init__(name="capture", daemon=True)
        self.level_file = LevelFile(level_dir / LEVEL_FILE) if level_dir is not None else None
        self.cfg = cfg
        self.spool = spool
        self.opener = opener
        self.stop = stop
        self.meter = LevelMeter(cfg.audio.rate)
        self.state = "starting"
        self.error = ""
        self.reopens = 0
        self.spool_error = ""
        self.lock = threading.Lock()

    def run(self) -> None:
        backoff = 1.0
        gap = False
        while not self.stop.is_set():
            try:
                src = self.opener()
            except AudioError as exc:
                self._lost(str(exc))
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                gap = True
                continue
            backoff = 1.0
            self.reopens += 1
            try:
                with src:
                    while not self.stop.is_set():
                        chunk = src.read()
                        if chunk is None:
                            break
                        if gap:
                            chunk.gap_before, gap = True, False
                        gap = not self._spool(chunk)
                        if self.meter.feed(chunk.data):        # a second completed: state and level file
                            self.state = self.meter.state
                            self.write_level()
            except AudioError as exc:
                self._lost(str(exc))
                gap = True
                self.stop.wait(backoff)
            except Exception as exc:  # noqa: BLE001 - a source's bug must not end capture for good
                log.exception("audio: capture failed; opening the microphone again")
                self._lost(f"capture failed: {exc}")
                gap = True
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _spool(self, chunk) -> bool:
        """Write a chunk to the spool. A full spool file system makes room by dropping its
        oldest segments (the ring shrinks to what fits) and the chunk is lost as a gap, never
        the capture."""
        try:
            with self.lock:
                self.spool.write(chunk)
            self.spool_error = ""
            return True
        except OSError as exc:
            with self.lock:
                freed = self.spool.make_room()
            if not self.spool_error:
                log.warning("audio: the spool cannot take audio (%s); dropped %d old segments, ring now %d",
                            exc.strerror or exc, freed, self.spool.keep)
            self.spool_error = str(exc)
            return False

    def _lost(self, why: str) -> None:
        if self.state != "lost":
            log.warning("audio: microphone lost: %s", why)
        self.state, self.error = "lost", why
        self.write_level()

    def write_level(self) -> None:
        """The live level file (``appliancectl audio level``, status, health), written by the
        capture thread as each second completes — or as the microphone is lost — so an idle
        daemon wakes only to read the microphone."""
        if self.level_file is None:
            return
        h = self.meter.history[-1] if self.meter.history else None
        self.level_file.write({"time": time.time(), "state": self.state, "error": self.error,
                               "rms_db": h.rms_db if h else None, "peak_db": h.peak_db if h else None})


class LevelFile:
    """``level.json`` in the spool (RAM), rewritten in place every second: one ``pwrite`` of
    the JSON padded to a fixed size, no new file and no rename, so the once-a-second write
    costs the capture thread next to nothing. A reader that catches a write half done gets
    text that does not parse and reads again (``read_level``); a document too long for the
    slot is written whole by rename instead."""

    SIZE = 512

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def write(self, doc: dict) -> None:
        data = json.dumps(doc).encode()
        try:
            if len(data) > self.SIZE:
                self.close()
                write_atomic(self.path, data, durable=False)
                return
            if self.fd is None:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o666)
                os.ftruncate(self.fd, self.SIZE)
            os.pwrite(self.fd, data.ljust(self.SIZE), 0)
        except OSError as exc:                  # a full spool: the level waits, capture goes on
            self.close()
            log.debug("audio: level file not written: %s", exc)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def run(cfg: Config, stop: threading.Event | None = None, wav: str | None = None) -> int:
    if wav:                                    # a file given on the command line must be usable now
        try:
            open_source(cfg, wav).close()
        except AudioError as exc:
            log.error("audio: --wav %s", exc)
            return 2
    stop = stop or threading.Event()
    clock = clock_from_env()
    state_dir = Path(cfg.device.state_dir)
    spool_dir = Path(cfg.audio.spool_dir)
    spool = SegmentSpool(spool_dir, cfg.audio.rate, cfg.audio.segment_s, cfg.audio.spool_minutes)
    journal = Journal.in_dir(state_dir)
    stage = AudioStage(cfg, journal, spool_dir, state_dir / "clips")
    ledger = ClipLedger(journal, state_dir / "clips")
    capture = Capture(cfg, spool, lambda: open_source(cfg, wav), stop, spool_dir)
    capture.start()
    last_state = None
    clip_lock = BusyFlag(state_dir, "clip")

    def step() -> bool:
        nonlocal last_state
        worked = False
        try:
            worked = stage.step(clock.now_ms()) > 0 or stage.took or bool(stage.jobs)
            clip_lock.set(bool(stage.jobs))     # no update while a track waits to be cut
        except OSError as exc:                  # a full disk: free space by retention, then retry
            log.warning("audio: a clip could not be written (%s); applying retention", exc.strerror or exc)
            enforce_retention(cfg, ledger, clock.now_ms())
            stop.wait(1.0)
        except Exception:  # noqa: BLE001 - one bad clip must not stop capture
            log.exception("audio: clip stage failed; retrying")
            stop.wait(1.0)
        if capture.state != last_state and capture.state != "starting":
            journal.append(v.MicState(state=capture.state, error=capture.error or None).as_event(
                clock.now_ms(), None, "audio"))
            last_state = capture.state
            worked = True
        return worked

    def status() -> str:
        h = capture.meter.history[-1] if capture.meter.history else None
        text = f"audio: microphone {capture.state}"
        if capture.error and capture.state != "ok":
            text += f" ({capture.error})"
        if h is not None and capture.state == "ok":
            text += f", {h.rms_db:.0f} dBFS"
        return text + f", {stage.clips_cut} clips cut"

    def close() -> None:
        clip_lock.close()
        stop.set()
        capture.join(5)
        with capture.lock:
            spool.close()
        journal.close()
    return run_loop("audio", step, tick_s=0.1, idle_tick_s=1.0, stop=stop, on_stop=close, healthy=capture.is_alive,
                    jobs=[Job("retention", 60.0,
                              lambda: enforce_retention(cfg, ledger, clock.now_ms()))],
                    status=status)


def enforce_retention(cfg: Config, ledger: ClipLedger, now_ms: int) -> int:
    """Apply ARCHITECTURE §6 retention; every deletion is journalled with its reason."""
    ledger.update()
    r = cfg.retention
    free = shutil.disk_usage(ledger.clips_dir).free
    headroom = int(r.headroom_s * cfg.audio.bitrate_kbps * 1000 / 8)
    doomed = plan(ledger.on_disk(), now_ms, int(r.max_age_days * 86_400_000), int(r.quota_mb * 1_000_000), free,
                  headroom)
    for c, reason in doomed:
        ledger.path(c.id).unlink(missing_ok=True)
        ledger.journal.append(v.ClipDeleted(clip=c.id, reason=reason, acked=c.acked, size=c.size).as_event(
            now_ms, None, "audio", f"audio:deleted:{c.id}"))
        ledger.forget(c.id)
        if not c.acked:
            log.warning("audio: deleted clip %s before the cloud acknowledged it (%s)", c.id, reason)
    return len(doomed)
