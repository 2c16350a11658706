"""A fake GPIO chip with libgpiod v2's Python API (STYLE 1: fake at the hardware edge, with
a full backend): ``request_lines``, ``LineSettings``, ``line.Direction/Edge/Clock``, and a
line request with ``fd``, ``wait_edge_events``, ``read_edge_events`` and ``release``.

A test drives a line's level (``chip.drive(offset, level)``); the chip stamps the edge
with CLOCK_MONOTONIC like the kernel and queues it on the request's file descriptor in the
kernel's ``struct gpio_v2_line_event`` layout, so the source reads exactly what it reads
from ``/dev/gpiochipN``. The queue holds ``event_buffer_size`` events; when it is full the
newest edge is dropped and the line's sequence number still counts it, as a reader of
the real device would see the loss (the kernel drops the oldest instead; either way the
numbers have a gap).
"""
from __future__ import annotations

import fcntl
import os
import select
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from types import SimpleNamespace

from .gpiod import EVENT, EVENT_SIZE, FALLING, RISING

try:                                     # the real enums when the bindings are installed
    from gpiod.line import Clock, Direction, Edge
except ImportError:  # pragma: no cover - gpiod is a dependency
    Direction = Enum("Direction", "AS_IS INPUT OUTPUT")            # type: ignore[misc]
    Edge = Enum("Edge", "NONE RISING FALLING BOTH")                # type: ignore[misc]
    Clock = Enum("Clock", "MONOTONIC REALTIME HTE")                # type: ignore[misc]

F_SETPIPE_SZ = 1031


@dataclass
class LineSettings:
    direction: object = None
    edge_detection: object = None
    event_clock: object = None
    bias: object = None
    debounce_period: object = None
    active_low: bool = False


@dataclass
class FakeEdgeEvent:
    event_type: int
    timestamp_ns: int
    line_offset: int
    global_seqno: int
    line_seqno: int


@dataclass
class FakeRequest:
    chip: "FakeChip"
    offsets: list[int]
    capacity: int
    rfd: int = -1
    wfd: int = -1
    released: bool = False
    seq: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rfd, self.wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.wfd, F_SETPIPE_SZ, max(4096, self.capacity * EVENT_SIZE))
        except OSError:
            pass

    @property
    def fd(self) -> int:
        if self.released:
            raise ValueError("the line request was released")
        return self.rfd

    def fileno(self) -> int:
        return self.fd

    def wait_edge_events(self, timeout=None) -> bool:
        t = timeout.total_seconds() if hasattr(timeout, "total_seconds") else timeout
        return bool(select.select([self.fd], [], [], t)[0])

    def read_edge_events(self, max_events: int | None = None) -> list[FakeEdgeEvent]:
        buf = os.read(self.fd, EVENT_SIZE * (max_events or self.capacity))
        out = []
        for i in range(0, len(buf) // EVENT_SIZE * EVENT_SIZE, EVENT_SIZE):
            ts, kind, offset, seqno, line_seqno = EVENT.unpack_from(buf, i)
            out.append(FakeEdgeEvent(kind, ts, offset, seqno, line_seqno))
        return out

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.chip._release(self)
            os.close(self.rfd)
            os.close(self.wfd)

    def _queue(self, kind: int, ts: int, offset: int, seqno: int) -> bool:
        line_seqno = self.seq[offset] = self.seq.get(offset, 0) + 1
        try:
            os.write(self.wfd, EVENT.pack(ts, kind, offset, seqno, line_seqno))
            return True
        except BlockingIOError:
            return False                     # the queue is full: this edge is lost


class FakeChip:
    """One GPIO chip of ``lines`` lines at ``path``, all low; use it as the ``backend`` of
    GpiodSource (it is the module-like object the source calls)."""

    LineSettings = LineSettings
    line = SimpleNamespace(Direction=Direction, Edge=Edge, Clock=Clock)

    def __init__(self, path: str = "/dev/gpiochip0", lines: int = 54):
        self.path = path
        self.lines = lines
        self.levels = [0] * lines
        self.requests: dict[int, FakeRequest] = {}
        self.seqno = 0
        self.lost = 0
        self.lock = threading.Lock()

    def request_lines(self, path: str, consumer: str | None = None, config: dict | None = None,
                      output_values=None, event_buffer_size: int | None = None) -> FakeRequest:
        if path != self.path:
            raise FileNotFoundError(2, "No such file or directory", path)
        offsets = list(config or {})
        for o in offsets:
            if not isinstance(o, int) or not 0 <= o < self.lines:
                raise ValueError(f"invalid line offset {o!r} for {self.path} ({self.lines} lines)")
            if o in self.requests:
                raise OSError(16, "Device or resource busy", f"line {o}")
        req = FakeRequest(self, offsets, max(16, event_buffer_size or 16 * len(offsets)))
        for o in offsets:
            self.requests[o] = req
        return req

    def _release(self, req: FakeRequest) -> None:
        for o in req.offsets:
            self.requests.pop(o, None)

    def drive(self, offset: int, level: int, t_ns: int | None = None) -> None:
        """The line goes to ``level``: an edge (stamped now, or at ``t_ns``) if it changed."""
        with self.lock:
            level = 1 if level else 0
            if self.levels[offset] == level:
                return
            self.levels[offset] = level
            req = self.requests.get(offset)
            if req is None or req.released:
                return
            self.seqno += 1
            if not req._queue(RISING if level else FALLING, time.monotonic_ns() if t_ns is None else t_ns,
                              offset, self.seqno):
                self.lost += 1
