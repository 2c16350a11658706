"""Source -> OOK pipeline -> press detector, as one loop the daemon, ``rf listen`` and
``rf learn`` share. Times stay in the source's µs; callers map them to wall time."""
from __future__ import annotations

from typing import Callable

from .decoders.base import Frame
from .press import PressDetector, Press
from .receiver import Receiver
from .sources.base import RfSource, Run

OnPress = Callable[[str, Press, int], None]
"""on_press(event, press, latency_reference_us): event is confirmed | long | ended."""


class RfService:
    def __init__(self, source: RfSource, detector: PressDetector, on_press: OnPress,
                 on_frame: Callable[[Frame], None] | None = None, receiver: Receiver | None = None):
        self.source = source
        self.receiver = receiver or Receiver()
        self.detector = detector
        self.on_press = on_press
        self.on_frame = on_frame
        self.t_us = 0            # the end of the last run taken, in the source's timebase
        self.last_level = 0
        self.runs = 0
        self.frames = 0

    @classmethod
    def from_config(cls, cfg, source: RfSource, on_press: OnPress) -> "RfService":
        return cls(source, PressDetector.from_config(cfg), on_press, receiver=Receiver.from_config(cfg))

    def step(self, timeout_s: float = 0.05) -> int:
        """Take what the source has; returns the number of frames decoded."""
        items = self.source.read(timeout_s)
        n = 0
        for item in items:
            if isinstance(item, Run):
                self.runs += 1
                self.t_us += item.duration_us
                self.last_level = item.level
                frames = self.receiver.feed(item.level, item.duration_us)
            else:
                frames = [item]
                self.t_us = max(self.t_us, item.end_us)
            for f in frames:
                n += 1
                if self.on_frame:
                    self.on_frame(f)
                for event, press in self.detector.frame(f):
                    self.on_press(event, press, f.end_us)
        now = max(self.t_us, self.source.now_us())
        if not items and self.last_level == 1:      # a space is going on since the last mark
            for f in self.receiver.silence(now - self.t_us):
                n += 1
                if self.on_frame:
                    self.on_frame(f)
                for event, press in self.detector.frame(f):
                    self.on_press(event, press, f.end_us)
        for event, press in self.detector.advance(now):
            self.on_press(event, press, now)
        self.frames += n
        return n

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
