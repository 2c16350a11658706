"""A superheterodyne receiver (RXB6 and the like) on a GPIO line, through the kernel's GPIO
character device and libgpiod v2's Python bindings (PyPI ``gpiod``): the default source
on a Pi.

The kernel stamps every edge when its interrupt fires (CLOCK_MONOTONIC, ns) and queues it,
so Python's scheduling never distorts a pulse width: the daemon reads the queue in
batches. It reads the line request's file descriptor itself, in the kernel's own
``struct gpio_v2_line_event`` layout (48 bytes an event), instead of building one Python
object per edge as ``read_edge_events`` does: on receiver noise that is thousands of
objects a second. While only noise comes in, a read waits ``batch_s`` after the first edge
so each read takes many edges; while a press waits for its confirming frame the service
sets ``hurry`` and edges are handed over every 5 ms.
"""
from __future__ import annotations

import os
import struct
import time

from .base import Edges, RfSource, SourceError

EVENT_SIZE = 48
"""sizeof(struct gpio_v2_line_event): u64 timestamp_ns, u32 id, offset, seqno, line_seqno, 6 × u32 padding."""
RISING, FALLING = 1, 2
EVENT = struct.Struct("<QIIII24x")
assert EVENT.size == EVENT_SIZE
BATCH_S = 0.02
"""While only noise comes in: gather this long after the first edge before reading. Shorter
than the shortest frame (24 bits at a 150 µs unit: 19 ms), so a press's first frame is
decoded before its second one ends."""
HURRY_S = 0.005
"""While a press waits for its confirming frame: read every 5 ms."""


def parse_events(buf: bytes) -> tuple[list[int], bytes, int, int]:
    """The events in a read of the line request: (timestamps ns, event types as bytes
    (1 rising, 2 falling: the low byte of each id), first and last line sequence number).
    Costs a few C calls, not a Python object per event."""
    n = len(buf) // EVENT_SIZE
    if n == 0:
        return [], b"", 0, 0
    if len(buf) != n * EVENT_SIZE:
        buf = buf[:n * EVENT_SIZE]
    mv = memoryview(buf)
    seq = mv.cast("I")
    return mv.cast("Q")[0::6].tolist(), buf[8::EVENT_SIZE], seq[5], seq[(n - 1) * 12 + 5]


def to_edges(ts: list[int], types: bytes) -> Edges:
    """Edges with alternating levels; where the kernel reports one edge type twice in a row
    (a glitch shorter than its interrupt latency), the earlier edge starts the run."""
    if b"\x01\x01" in types or b"\x02\x02" in types:
        keep_ts, keep_types = [ts[0]], [types[0]]
        for t, ty in zip(ts[1:], types[1:], strict=True):
            if ty != keep_types[-1]:
                keep_ts.append(t)
                keep_types.append(ty)
        ts = keep_ts
    return Edges(1 if types[0] == RISING else 0, ts)


class GpiodSource(RfSource):
    name = "gpiod"
    ticks_per_us = 1000

    def __init__(self, chip: str = "/dev/gpiochip0", line: int = 27, backend=None, batch_s: float = BATCH_S,
                 max_events: int = 4096):
        if backend is None:
            try:
                import gpiod as backend
            except ImportError as exc:
                raise SourceError(f"the gpiod package (libgpiod v2 bindings) is not installed: {exc}") from None
        self.batch_s = batch_s
        self.max_events = max_events
        try:
            settings = backend.LineSettings(direction=backend.line.Direction.INPUT,
                                            edge_detection=backend.line.Edge.BOTH,
                                            event_clock=backend.line.Clock.MONOTONIC)
            self.request = backend.request_lines(chip, consumer="appliance-rf", config={line: settings},
                                                 event_buffer_size=max_events)
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot watch GPIO line {line} of {chip} ({exc}); is this a Raspberry Pi, "
                              f"and [rf] chip and pin right? (gpiodetect and gpioinfo list the chips)") from None
        self.fd = self.request.fd
        self.last_seq: int | None = None
        self.lost = 0             # edges the kernel dropped (its queue was full)

    def read(self, timeout_s: float) -> list[Edges]:
        if not self.request.wait_edge_events(timeout_s):
            return []
        wait = HURRY_S if self.hurry else self.batch_s
        if wait:
            time.sleep(wait)                 # let the kernel gather a batch
        try:
            buf = os.read(self.fd, EVENT_SIZE * self.max_events)
        except BlockingIOError:
            return []
        ts, types, first, last = parse_events(buf)
        if not ts:
            return []
        edges = to_edges(ts, types)
        gap = (first - self.last_seq - 1) if self.last_seq is not None else 0
        gap += last - first - (len(ts) - 1)
        if gap > 0:
            self.lost += gap
            edges.restart = True
        self.last_seq = last
        return [edges]

    def now_us(self) -> int:
        return time.monotonic_ns() // 1000

    def close(self) -> None:
        try:
            self.request.release()
        except Exception:  # noqa: BLE001 - closing must not raise
            pass
