"""Slicers: (mark, space) pairs -> bit rows, one slicer per timing table. They know no
devices (STYLE 3); decoders know no timing."""
from __future__ import annotations

import math
from statistics import median

from .decoders.base import FlexTiming, RcTiming, Row
from .pulses import Pair

MIN_UNIT_US = 60
MAX_UNIT_US = 1100
GAP_US = 12_000           # a space this long ends any frame
SYNC_RATIO_TOL = math.log(1.9)
PERIOD_TOL = 0.4          # a bit's period within ±40 % of the frame's
FRACTION_TOL = 0.2        # a bit's mark fraction within ±0.2 of its symbol's
UNIT_TOL = 0.4            # the frame's unit within ±40 % of the sync's


class RcSlicer:
    """rc-switch PWM: buffer the pairs since the last frame boundary; when a pair matching
    this timing's sync arrives, the buffered pairs must be exactly one frame: each a zero
    or a one at one consistent unit, which also agrees with the sync's. A frame whose
    start is unknown (the buffer overflowed with pairs since the last boundary) is not
    decoded, so a longer transmission never yields its tail as a frame."""

    def __init__(self, timing: RcTiming):
        self.t = timing
        self.sync_log_ratio = math.log(timing.sync[0] / timing.sync[1])
        self.sync_units = sum(timing.sync)
        self.period_units = sum(timing.zero)
        assert sum(timing.one) == self.period_units, "rc-switch zero and one have one period"
        self.zero_frac = timing.zero[0] / self.period_units
        self.one_frac = timing.one[0] / self.period_units
        self.threshold = (self.zero_frac + self.one_frac) / 2
        self.sync_split = (1 + self.sync_units / self.period_units) / 2
        # a sync's mark/space ratio may stray at most half-way to a data symbol's
        nearest = min(abs(self.sync_log_ratio - math.log(a / b)) for a, b in (timing.zero, timing.one))
        self.sync_tol = min(SYNC_RATIO_TOL, nearest / 2)
        self.wide_lo = math.exp(self.sync_log_ratio - SYNC_RATIO_TOL)
        self.wide_hi = math.exp(self.sync_log_ratio + SYNC_RATIO_TOL)
        self.buf: list[Pair] = []
        self.buf_sum = 0           # sum of the buffered pairs' periods
        self.known_start = False   # what came before the first pair is unknown
        self.last_unit = 0.0

    def _is_sync(self, p: Pair) -> float:
        """The sync's unit if p is this timing's sync pair, else 0.

        With a unit to compare against (the frame so far, or the last sync), a sync must
        also be longer than a bit by at least half the way to a sync's period: rc-switch
        3 and 5 syncs have nearly a data symbol's mark/space ratio, and under jitter
        rc-switch 4's ratios overlap, but their periods never do."""
        h, l = p.high, p.low
        if h <= 0 or l <= 0:
            return 0.0
        r = h / l
        if not self.wide_lo <= r <= self.wide_hi:      # most pairs stop here, cheaply
            return 0.0
        if len(self.buf) >= 2:
            ref = self.buf_sum / len(self.buf) / self.period_units      # mean bit period
        else:
            ref = self.last_unit
        if not ref and abs(math.log(r) - self.sync_log_ratio) > self.sync_tol:
            return 0.0
        if ref and p.high + p.low < ref * self.period_units * self.sync_split:
            return 0.0
        unit = (p.high + p.low) / self.sync_units
        return unit if MIN_UNIT_US <= unit <= MAX_UNIT_US else 0.0

    def feed(self, p: Pair) -> Row | None:
        sync_unit = self._is_sync(p)
        if sync_unit:
            row = self._frame(sync_unit, p) if self.known_start else None
            self.buf = []
            self.buf_sum = 0
            self.known_start = True
            self.last_unit = row.unit_us if row else sync_unit
            return row
        if p.low >= GAP_US or p.high >= GAP_US:
            # the last frame of a burst ends in silence, not in a sync space: take its
            # unit from the frame itself and check the mark against the sync's
            row = self._frame(0.0, p) if self.known_start and p.low >= GAP_US else None
            self.buf = []
            self.buf_sum = 0
            self.known_start = True
            self.last_unit = 0.0     # after silence, the next remote may be another
            return row
        self.buf.append(p)
        self.buf_sum += p.high + p.low
        if len(self.buf) > self.t.max_bits:
            old = self.buf.pop(0)
            self.buf_sum -= old.high + old.low
            self.known_start = False
        return None

    def _frame(self, sync_unit: float, sync: Pair) -> Row | None:
        buf = self.buf
        if not self.t.min_bits <= len(buf) <= self.t.max_bits:
            return None
        period = median(p.high + p.low for p in buf)
        unit = period / self.period_units
        if not MIN_UNIT_US <= unit <= MAX_UNIT_US:
            return None
        if sync_unit:
            if abs(unit - sync_unit) > UNIT_TOL * sync_unit:
                return None
        elif abs(sync.high - self.t.sync[0] * unit) > 0.5 * self.t.sync[0] * unit:
            return None
        lo, hi = period * (1 - PERIOD_TOL), period * (1 + PERIOD_TOL)
        bits = []
        for p in buf:
            per = p.high + p.low
            if not lo <= per <= hi:
                return None
            frac = p.high / per
            one = frac > self.threshold
            if abs(frac - (self.one_frac if one else self.zero_frac)) > FRACTION_TOL:
                return None
            bits.append("1" if one else "0")
        return Row(self.t.name, "".join(bits), unit, buf[0].start, sync.start + sync.high, bool(sync_unit))


class FlexSlicer:
    """Fixed-timing PWM/PPM framed by gaps (and an optional sync mark or header)."""

    def __init__(self, timing: FlexTiming):
        self.t = timing
        self.bits: list[str] = []
        self.start = 0
        self.active = not (timing.sync_us or timing.header_space_us)
        self.mid = (timing.short_us + timing.long_us) / 2

    def _near(self, value: int, target: int) -> bool:
        return abs(value - target) <= self.t.tolerance * target

    def _symbol(self, width: int) -> str | None:
        if self._near(width, self.t.short_us):
            return "0"
        if self._near(width, self.t.long_us):
            return "1"
        return None

    def _header(self, p: Pair) -> bool:
        t = self.t
        if t.modulation == "pwm":
            return bool(t.sync_us) and self._near(p.high, t.sync_us)
        return bool(t.sync_us) and self._near(p.high, t.sync_us) and self._near(p.low, t.header_space_us)

    def _reset(self) -> None:
        self.bits = []
        self.active = not (self.t.sync_us or self.t.header_space_us)

    def feed(self, p: Pair) -> Row | None:
        t = self.t
        if self._header(p):
            self.bits, self.active, self.start = [], True, p.start + p.high + (p.low if t.modulation == "ppm" else 0)
            if t.modulation == "pwm" and p.low >= t.gap_us:
                self._reset()
            return None
        if not self.active:
            return None
        end = p.low >= t.gap_us
        if t.modulation == "pwm":
            sym = self._symbol(p.high)
        else:
            sym = None if end else self._symbol(p.low)
            if not self._near(p.high, t.short_us):
                sym = "x"
        if sym is None or sym == "x":
            row = self._row(p) if end and sym is None and t.modulation == "ppm" else None
            self._reset()
            return row
        if not self.bits:
            self.start = p.start
        self.bits.append(sym)
        if end:
            row = self._row(p)
            self._reset()
            return row
        if len(self.bits) > t.max_bits:
            self._reset()
        return None

    def _row(self, last: Pair) -> Row | None:
        if not self.t.min_bits <= len(self.bits) <= self.t.max_bits:
            return None
        return Row(self.t.name, "".join(self.bits), float(self.t.short_us), self.start, last.start + last.high, True)
