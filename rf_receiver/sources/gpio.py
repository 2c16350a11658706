"""A superheterodyne receiver (RXB6 and the like) on a GPIO pin, through gpiozero's pin
factory: lgpio on a Pi, ``MockFactory`` in tests (``GPIOZERO_PIN_FACTORY=mock``).

The edge callback does the least it can (a receiver toggles thousands of times a second
on noise): it appends ``(ticks, state)`` to a deque. ``read`` hands the edges over as µs
since the first, using the factory's own tick arithmetic. On a Pi the ``gpiod`` source is
the better one: there the kernel stamps each edge, here the callback's thread does.
"""
from __future__ import annotations

import threading
from collections import deque

from .base import Edges, RfSource, SourceError


class GpioSource(RfSource):
    name = "gpio"

    def __init__(self, pin: int, factory=None, max_edges: int = 200_000):
        try:
            from gpiozero import Device
        except ImportError as exc:  # pragma: no cover - gpiozero is a dependency
            raise SourceError(f"gpiozero is not installed: {exc}") from None
        if factory is None:
            if Device.pin_factory is None:
                try:
                    Device.pin_factory = Device._default_pin_factory()
                except Exception as exc:  # noqa: BLE001 - gpiozero raises many kinds here
                    raise SourceError(f"no GPIO pin factory (is this a Raspberry Pi? set "
                                      f"GPIOZERO_PIN_FACTORY): {exc}") from None
            factory = Device.pin_factory
        self.factory = factory
        try:
            self.pin = factory.pin(pin)
            self.pin.function = "input"
            self.pin.edges = "both"
        except Exception as exc:  # noqa: BLE001
            raise SourceError(f"cannot use GPIO{pin} as an input: {exc}") from None
        self.edges: deque = deque(maxlen=max_edges)
        self.event = threading.Event()
        self.dropped = 0
        self.last: tuple[float, bool] | None = None
        self.first_ticks = None
        self._callback = self._on_edge     # gpiozero keeps only a weak reference
        self.pin.when_changed = self._callback

    def _on_edge(self, ticks, state) -> None:
        if len(self.edges) == self.edges.maxlen:
            self.dropped += 1
        self.edges.append((ticks, bool(state)))
        self.event.set()

    def read(self, timeout_s: float) -> list[Edges]:
        if not self.edges:
            self.event.wait(timeout_s)
        self.event.clear()
        ts: list[int] = []
        level = 0
        diff = self.factory.ticks_diff
        while self.edges:
            ticks, state = self.edges.popleft()
            if self.last is None:
                self.first_ticks = ticks      # this source's time 0
            elif state == self.last[1]:
                continue                      # a repeated level: keep the earlier edge as the start
            if not ts:
                level = int(state)
            ts.append(round(diff(ticks, self.first_ticks) * 1e6))
            self.last = (ticks, state)
        return [Edges(level, ts)] if ts else []

    def now_us(self) -> int:
        if self.last is None:
            return 0
        return round(self.factory.ticks_diff(self.factory.ticks(), self.first_ticks) * 1e6)

    def close(self) -> None:
        try:
            self.pin.when_changed = None
            self.pin.close()
        except Exception:  # noqa: BLE001 - closing must not raise
            pass
