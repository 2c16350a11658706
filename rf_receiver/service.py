"""Source -> OOK pipeline -> press detector, as one loop the daemon, ``rf listen`` and
``rf learn`` share. Times stay in the source's µs; callers map them to wall time."""
from __future__ import annotations

from typing import Callable

from .decoders.base import Frame
from .press import PressDetector, Press
from .receiver import Receiver
from .sources.base import Edges, RfSource, Run

OnPress = Callable[[str, Press, int], None]
"""on_press(event, press, latency_reference_us): event is confirmed | long | ended."""


class RfService:
    def __init__(self, source: RfSource, detector: PressDetector, on_press: OnPress,
                 on_frame: Callable[[Frame], None] | None = None, receiver: Receiver | None = None):
        self.source = source
        self.receiver = receiver or Receiver(ticks_per_us=source.ticks_per_us)
        self.scale = source.ticks_per_us
        self.detector = detector
        self.on_press = on_press
        self.on_frame = on_frame
        self.t_us = 0            # the end of the last input taken, in the source's timebase
        self.runs = 0            # edges or runs taken
        self.frames = 0

    @classmethod
    def from_config(cls, cfg, source: RfSource, on_press: OnPress) -> "RfService":
        return cls(source, PressDetector.from_config(cfg), on_press,
                   receiver=Receiver.from_config(cfg, ticks_per_us=source.ticks_per_us))

    def step(self, timeout_s: float = 0.05) -> int:
        """Take what the source has; returns the number of frames decoded."""
        # a press waiting for its confirming frame: no batching of edges now
        self.source.hurry = self.detector.pending(self.t_us)
        items = self.source.read(timeout_s)
        n = 0
        runs: list[int] = []                     # consecutive runs (a replay's) are fed together
        run_level = 0
        for item in items:
            if isinstance(item, Run):
                if runs and item.level == run_level ^ ((len(runs) - 1) & 1):
                    runs[-1] += item.duration_us * self.scale        # the same level again: one run
                else:
                    if not runs:
                        run_level = item.level
                    runs.append(item.duration_us * self.scale)
                self.t_us += item.duration_us
                continue
            n += self._runs(run_level, runs)
            runs = []
            if isinstance(item, Edges):
                if item.restart:
                    self.receiver.restart()
                self.runs += len(item.ts)
                self.t_us = item.ts[-1] // self.scale
                n += self._frames(self.receiver.feed_edges(item.level, item.ts))
            else:
                self.t_us = max(self.t_us, item.end_us)
                n += self._frames([item])
        n += self._runs(run_level, runs)
        now = max(self.t_us, self.source.now_us())
        if not items:                            # a space may be going on since the last edge
            n += self._frames(self.receiver.silence(now * self.scale))
        for event, press in self.detector.advance(now):
            self.on_press(event, press, now)
        self.frames += n
        return n

    def _runs(self, level: int, runs: list[int]) -> int:
        if not runs:
            return 0
        self.runs += len(runs)
        return self._frames(self.receiver.feed_runs(level, runs))

    def _frames(self, frames: list[Frame]) -> int:
        for f in frames:
            if self.on_frame:
                self.on_frame(f)
            for event, press in self.detector.frame(f):
                self.on_press(event, press, f.end_us)
        return len(frames)

    def run(self, stop: Callable[[], bool], timeout_s: float = 0.05) -> None:
        while not stop():
            self.step(timeout_s)
            if self.source.exhausted():
                for event, press in self.detector.finish():
                    self.on_press(event, press, self.t_us)
                return


def wall_ms_of(source_us: int, source_now_us: int, now_ms: int) -> int:
    """A source time as wall ms, given the source's and the wall clock's now."""
    return now_ms - (source_now_us - source_us) // 1000
