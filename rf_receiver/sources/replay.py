"""Recorded pulse trains as a source: as fast as they are read, or paced in real time."""
from __future__ import annotations

import time

from ..pulses import merge_runs
from .base import RfSource, Run


class ReplaySource(RfSource):
    name = "replay"

    def __init__(self, pulses: list[tuple[int, int]], realtime: bool = False, chunk: int = 256):
        self.pulses = merge_runs(pulses)     # recordings put one after another: a run never splits
        self.realtime = realtime
        self.chunk = chunk
        self.i = 0
        self.t_us = 0
        self.t0 = time.monotonic()

    def read(self, timeout_s: float) -> list[Run]:
        if self.i >= len(self.pulses):
            time.sleep(min(timeout_s, 0.01))
            return []
        limit = len(self.pulses)
        if self.realtime:
            elapsed = int((time.monotonic() - self.t0) * 1e6)
            if self.t_us + self.pulses[self.i][1] > elapsed:
                time.sleep(min(timeout_s, (self.t_us + self.pulses[self.i][1] - elapsed) / 1e6))
                return []
        out = []
        while self.i < limit and len(out) < self.chunk:
            level, dur = self.pulses[self.i]
            if self.realtime and self.t_us + dur > int((time.monotonic() - self.t0) * 1e6):
                break
            out.append(Run(level, dur))
            self.t_us += dur
            self.i += 1
        return out

    def now_us(self) -> int:
        if self.realtime:
            return int((time.monotonic() - self.t0) * 1e6)
        return self.t_us

    def exhausted(self) -> bool:
        return self.i >= len(self.pulses)
