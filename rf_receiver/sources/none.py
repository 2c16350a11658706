"""``[rf] source = "none"``: a box without a 433 MHz receiver. The rf daemon still runs — for
GPIO presence sensors, or idle and READY until its configuration names a receiver (the config
watch restarts it then) — instead of exiting and being restarted by systemd every few seconds."""
from __future__ import annotations

import time

from .base import RfSource


class NoSource(RfSource):
    name = "none"

    def read(self, timeout_s: float) -> list:
        time.sleep(max(0.0, timeout_s))           # nothing comes: the loop waits as it would for a radio
        return []

    def now_us(self) -> int:
        return time.monotonic_ns() // 1000
