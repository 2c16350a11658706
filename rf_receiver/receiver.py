"""The OOK pipeline (STYLE 3): runs -> (mark, space) pairs -> one slicer per timing ->
bit rows -> decoders -> frames. Pure and streaming: feed runs as they come."""
from __future__ import annotations

from collections import Counter

from .decoders import registry
from .decoders.base import Failure, Frame, RcTiming, Row
from .pulses import PairBuilder
from .slicer import GAP_US, FlexSlicer, RcSlicer


class Receiver:
    def __init__(self, timings=None, decoders=None, declared=()):
        """The registry's timings and decoders, plus remotes declared in the config."""
        timings = list(timings if timings is not None else registry.TIMINGS)
        decoders = list(decoders if decoders is not None else registry.DECODERS)
        for d in declared:
            timings.append(d.timing_table)
            decoders.insert(0, d)
        self.decoders = registry.by_timing(decoders)
        self.normal: list = []
        self.inverted: list = []
        for t in timings:
            if t.name not in self.decoders:
                continue
            slicer = RcSlicer(t) if isinstance(t, RcTiming) else FlexSlicer(t)
            (self.inverted if isinstance(t, RcTiming) and t.inverted else self.normal).append(slicer)
        self.pairs = PairBuilder()
        self.inv_pairs = PairBuilder(invert=True) if self.inverted else None
        self.failures: Counter = Counter()     # (decoder, failure) -> count
        self.rows = 0

    @classmethod
    def from_config(cls, cfg) -> "Receiver":
        """Every registered protocol plus the remotes declared in ``[rf.decoders]``."""
        from .decoders.declared import from_config
        return cls(declared=from_config(cfg.rf.decoders))

    def feed(self, level: int, duration: int) -> list[Frame]:
        """One run (level 0/1, µs). Returns the frames it completed."""
        frames: list[Frame] = []
        p = self.pairs.feed(level, duration)
        if p is not None:
            for s in self.normal:
                row = s.feed(p)
                if row is not None:
                    self._decode(row, frames)
        if self.inv_pairs is not None:
            q = self.inv_pairs.feed(level, duration)
            if q is not None:
                for s in self.inverted:
                    row = s.feed(q)
                    if row is not None:
                        self._decode(row, frames)
        return frames

    def silence(self, elapsed_us: int) -> list[Frame]:
        """No edge for elapsed_us since a mark ended: long enough, that ends a frame."""
        frames: list[Frame] = []
        if elapsed_us < GAP_US:
            return frames
        p = self.pairs.silence(elapsed_us)
        if p is not None:
            for s in self.normal:
                row = s.feed(p)
                if row is not None:
                    self._decode(row, frames)
        return frames

    def flush(self) -> list[Frame]:
        """End of a recording: a frame cut by it is not a frame."""
        for builder in (self.pairs, self.inv_pairs):
            if builder is not None:
                builder.flush()
        return []

    def _decode(self, row: Row, frames: list[Frame]) -> None:
        self.rows += 1
        for d in self.decoders.get(row.timing, ()):
            result = d.decode(row)
            if isinstance(result, Failure):
                self.failures[(d.name, result)] += 1
                continue
            # rc-switch 3 and 5 are one waveform at different units: the first timing
            # in the registry that reads a transmission names it, once
            if not any(f.code == result.code and f.bits == result.bits for f in frames):
                frames.append(result)
            return

    def decode_pulses(self, pulses: list[tuple[int, int]]) -> list[Frame]:
        frames: list[Frame] = []
        for level, duration in pulses:
            frames += self.feed(level, duration)
        return frames + self.flush()
