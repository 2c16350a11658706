"""Microphone health (pure): RMS and peak per second in dBFS, and the state a technician
and the cloud need — ``ok``, ``silent`` (a dead or unplugged microphone reads as digital
silence or a flat noise floor), ``clipping`` — plus ``lost`` set by the capture loop when
the device itself goes away."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop    # C speed for RMS and peak; in the standard library up to 3.12 (the Pi's is 3.11)

FULL_SCALE = 32768.0


def dbfs(x: float) -> float:
    return 20 * math.log10(x / FULL_SCALE) if x > 0 else -120.0


@dataclass(slots=True)
class Level:
    second: int            # which second of capture
    rms_db: float
    peak_db: float
    clipped: float         # share of samples at full scale


class LevelMeter:
    def __init__(self, rate: int, silent_db: float = -75.0, silent_s: int = 10, clip_share: float = 0.01):
        self.rate = rate
        self.silent_db = silent_db
        self.silent_s = silent_s
        self.clip_share = clip_share
        self.sum_sq = 0.0
        self.peak = 0
        self.clipped = 0
        self.n = 0
        self.second = 0
        self.quiet_run = 0
        self.state = "ok"
        self.history: list[Level] = []

    def feed(self, data: bytes) -> list[Level]:
        """Samples in; the seconds they completed out."""
        out = []
        data = data[: len(data) // 2 * 2]
        i = 0
        total = len(data) // 2
        while i < total:
            take = min(self.rate - self.n, total - i)
            part = data[i * 2:(i + take) * 2]
            rms = audioop.rms(part, 2)
            self.sum_sq += rms * rms * take
            self.peak = max(self.peak, audioop.max(part, 2))
            if self.peak >= 32767:
                self.clipped += _count16(part, b"\xff\x7f") + _count16(part, b"\x00\x80")
            self.n += take
            i += take
            if self.n >= self.rate:
                out.append(self._second())
        return out

    def _second(self) -> Level:
        lvl = Level(self.second, round(dbfs(math.sqrt(self.sum_sq / self.n)), 1), round(dbfs(self.peak), 1),
                    self.clipped / self.n)
        self.second += 1
        self.sum_sq, self.peak, self.clipped, self.n = 0.0, 0, 0, 0
        self.quiet_run = self.quiet_run + 1 if lvl.rms_db < self.silent_db else 0
        if self.quiet_run >= self.silent_s:
            self.state = "silent"
        elif lvl.clipped >= self.clip_share:
            self.state = "clipping"
        else:
            self.state = "ok"
        self.history = (self.history + [lvl])[-60:]
        return lvl


def _count16(data: bytes, sample: bytes) -> int:
    """How many aligned 16-bit samples equal ``sample``."""
    n, start = 0, 0
    while (i := data.find(sample, start)) >= 0:
        if i % 2 == 0:
            n += 1
            start = i + 2
        else:
            start = i + 1
    return n


def noise_floor_db(levels: list[Level]) -> float:
    """The 10th percentile of per-second RMS: the room with nobody talking."""
    if not levels:
        return -120.0
    vals = sorted(lv.rms_db for lv in levels)
    return vals[len(vals) // 10]
