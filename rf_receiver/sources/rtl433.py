"""An RTL-SDR dongle through ``rtl_433 -F json`` (Debian package ``rtl-433``): rtl_433
demodulates and decodes; this source turns its fixed-code remote messages into frames.

Messages of other devices (weather sensors, car keys) are not remotes and are skipped.
Any rtl_433 argument list can be given (``-r file.ook`` replays a recording in tests).
"""
from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time

from ..decoders.base import Frame
from ..decoders.registry import frame_from_code
from .base import RfSource, SourceError

# rtl_433 model -> (our protocol, bits, how to get the code)
MODELS = {
    # rtl_433's Generic-Remote reads SC226x/PT2262 and EV1527 alike
    "Generic-Remote": (("PT2262", "EV1527"), 24, lambda m: (int(m["id"]) << 8) | int(m["cmd"])),
    # rtl_433's GS 558 decoder prints the 24 bits last-first
    "Smoke-GS558": ("EV1527", 24, lambda m: int(format(int(str(m["code"]), 16), "024b")[::-1], 2)),
}


def frame_from_message(msg: dict, t_us: int) -> Frame | None:
    spec = MODELS.get(msg.get("model", ""))
    if spec is None:
        return None
    protocol, bits, code_of = spec
    try:
        code = code_of(msg)
    except (KeyError, ValueError, TypeError):
        return None
    return frame_from_code(protocol, code, bits, t_us)


class Rtl433Source(RfSource):
    name = "rtl_433"

    def __init__(self, args: list[str] | None = None, binary: str = "rtl_433"):
        path = shutil.which(binary)
        if path is None:
            raise SourceError(f"{binary} not found: apt install rtl-433")
        cmd = [path, "-F", "json", "-M", "level"] + (args or [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True)
        self.q: queue.Queue = queue.Queue()
        self.t0 = time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._pump, name="rtl_433", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            f = frame_from_message(msg, self.now_us())
            if f is not None:
                self.q.put(f)
        self.done.set()

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

    def exhausted(self) -> bool:
        return self.done.is_set() and self.q.empty()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
