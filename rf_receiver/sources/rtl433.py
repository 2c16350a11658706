"""An RTL-SDR dongle through ``rtl_433 -F json`` (Debian package ``rtl-433``): rtl_433
demodulates and decodes; this source turns its fixed-code remote messages into frames.

Messages of other devices (weather sensors, car keys) are not remotes and are skipped.
Any rtl_433 argument list can be given (``-r file.ook`` replays a recording in tests).
"""
from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import threading
import time

import msgspec

from appliance.limits import MAX_DEPTH, nesting_depth

from ..decoders.base import Frame
from ..decoders.registry import frame_from_code
from .base import RfSource, SourceError
from .rtl433_models import MODELS

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024

def frame_from_message(msg: object, t_us: int) -> Frame | None:
    """A remote's frame from one rtl_433 message; None for anything else (other devices,
    odd values: the message fails alone)."""
    if not isinstance(msg, dict) or not isinstance(msg.get("model"), str):
        return None
    mapping = MODELS.get(msg["model"])
    if mapping is None:
        return None
    try:
        protocol, bits, code = mapping(msg)
        if not 0 <= code < 1 << bits:
            return None
        return frame_from_code(protocol, code, bits, t_us)
    except Exception:  # noqa: BLE001 - whatever the message holds
        return None


def parse_line(line: bytes) -> object | None:
    """One line of rtl_433's JSON output, or None when it is not one (bounded, never raises)."""
    if len(line) > MAX_LINE or nesting_depth(line) > MAX_DEPTH:
        return None
    try:
        return msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError, UnicodeError, ValueError):
        return None


class Rtl433Source(RfSource):
    """rtl_433 as a supervised subprocess: when it exits (the dongle was pulled, it
    crashed), it is started again with backoff, and the outage shows in ``state``. With
    ``-r FILE`` (a recording) it runs once and the source is then exhausted."""
    name = "rtl_433"

    def __init__(self, args: list[str] | None = None, binary: str = "rtl_433", backoff_s: tuple[float, float] = (1.0, 30.0)):
        path = shutil.which(binary)
        if path is None:
            raise SourceError(f"{binary} not found: apt install rtl-433")
        self.cmd = [path, "-F", "json", "-M", "level"] + (args or [])
        self.once = "-r" in (args or [])
        self.backoff_s = backoff_s
        self.q: queue.Queue = queue.Queue()
        self.t0 = time.monotonic()
        self.done = threading.Event()
        self.closing = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.state, self.error = "starting", ""
        self.restarts = 0
        self.garbage = 0
        self.thread = threading.Thread(target=self._supervise, name="rtl_433", daemon=True)
        self.thread.start()

    def _supervise(self) -> None:
        delay = self.backoff_s[0]
        while not self.closing.is_set():
            started = time.monotonic()
            try:
                self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                             stdin=subprocess.DEVNULL)
                self.state, self.error = "ok", ""
                self._pump(self.proc)
                rc = self.proc.wait()
                why = f"rtl_433 exited with status {rc}"
            except Exception as exc:  # noqa: BLE001 - the supervisor itself must not die
                why = f"rtl_433 could not run: {exc}"
            if self.once or self.closing.is_set():
                break
            self.state, self.error = "lost", why
            self.restarts += 1
            if time.monotonic() - started > 60:
                delay = self.backoff_s[0]               # it ran a while: start again soon
            log.warning("rf: %s; starting it again in %.0f s", why, delay)
            self.closing.wait(delay)
            delay = min(delay * 2, self.backoff_s[1])
        self.done.set()

    def _pump(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            msg = parse_line(line)
            f = frame_from_message(msg, self.now_us()) if msg is not None else None
            if f is not None:
                self.q.put(f)
            elif msg is None and line.strip():
                self.garbage += 1
    def read(self, timeout_s: float) -> list[Frame]:
        out = []
        try:
            out.append(self.q.get(timeout=timeout_s))
            while True:
                out.append(self.q.get_nowait())
        except queue.Empty:
            pass
        return out

    def now_us(self) -> int:
        return int((time.monotonic() - self.t0) * 1e6)

    def alive(self) -> bool:
        return self.thread.is_alive() or self.done.is_set()

    def exhausted(self) -> bool:
        return self.done.is_set() and self.q.empty()

    def close(self) -> None:
        self.closing.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.thread.join(5)
