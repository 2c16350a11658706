"""Slicers read a frame *back* from the space that ends it (STYLE 3: they know no devices,
decoders know no timing).

Every frame a remote sends ends in a long space: rc-switch's sync space, the gap after a
gap-framed frame, the silence after the last frame of a burst. The receiver looks only at
those (one comparison per edge, see ``receiver``); for each, the slicers here walk back
over the (mark, space) pairs before it while they keep one bit period, and say what frame
ends there, how well it fits each timing table, and whether its start is known (a sync,
a gap, or a noise spike right after one lies before it). A frame whose start is not known
is *partial*: its code may lack leading bits, so it only ever adds to a press of the code
it ends (``press``)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import repeat
from operator import floordiv, sub, truediv

from .decoders.base import FlexTiming, GapTiming, RcTiming

MIN_UNIT_US = 60
MAX_UNIT_US = 1100
GAP_US = 12_000           # a space this long is silence: it ends any frame
LONG_US = 1_000           # the shortest space that may end a frame (sync or gap)
SYNC_RATIO_TOL = math.log(1.9)
PERIOD_TOL = 0.4          # a bit's period within ±40 % of the frame's median
FRACTION_TOL = 0.2        # a bit's mark fraction within ±0.2 of its symbol's
MAX_PAIRS = 64
MIN_PAIRS = 7             # a gap-framed frame's last bit has no pair of its own
MIN_PARTIAL_BITS = 12     # a partial frame shorter than this says too little to join a press

EXACT, SILENCE, SHORT = 0, 1, 2
"""How a frame's end space fits its timing's sync: exactly; longer (silence after the last
frame); shorter (a receiver's gain came back early, or the remote frames by a gap)."""


@dataclass(slots=True)
class Pairs:
    """The data pairs before a frame's end, first bit first."""
    marks: list[int]
    periods: list[int]
    med: int                 # the median period
    consistent: bool         # every period within PERIOD_TOL of the median
    before: int              # the long part before the first data pair (a sync, a gap), 0 if none
    first: int               # edge index where the first data run starts
    mark: int                # the run before the end space
    gap: int                 # the end space


def walk(ts: list[int], j: int, end: int, scale: int, long_us: int, inverted: bool = False) -> Pairs | None:
    """The data pairs of a frame ending at the long space from ts[j] to ``end`` (edge times,
    ``scale`` ticks a µs), read back from the last while each keeps the period of the last
    three; None if fewer than MIN_PAIRS or more than MAX_PAIRS. Normal polarity: pairs
    (mark, space) from run j-3 back; inverted: (low, high) from run j-2 back."""
    i = j - 2 if inverted else j - 3
    if i < 4:
        return None
    a, b, c = ts[i + 2] - ts[i], ts[i] - ts[i - 2], ts[i - 2] - ts[i - 4]
    ref = (a + b + c) / 3
    lo, hi = ref * 0.6, ref * 1.4
    if not (lo <= a <= hi and lo <= b <= hi and lo <= c <= hi):
        return None
    k = i - 6
    stop = i - 2 * (MAX_PAIRS + 1)
    while k >= 0:
        p = ts[k + 2] - ts[k]
        if p < lo or p > hi:
            break
        k -= 2
        if k < stop:
            return None              # longer than any frame: not one
    first = k + 2
    marks = list(map(sub, ts[first + 1:i + 2:2], ts[first:i + 1:2]))
    n = len(marks)
    if n < MIN_PAIRS:
        return None
    long = long_us * scale
    if not inverted and marks[0] * 2 < min(marks[1:]) and first >= 1 and ts[first] - ts[first - 1] >= long:
        # a noise spike just before the burst, its space as long as a bit: not a bit
        k, first = first, first + 2
        marks = marks[1:]
        n -= 1
    periods = list(map(sub, ts[first + 2:i + 3:2], ts[first:i + 1:2]))
    if scale != 1:
        marks = list(map(floordiv, marks, repeat(scale)))
        periods = list(map(floordiv, periods, repeat(scale)))
    med = sorted(periods)[n // 2]
    consistent = min(periods) >= (1 - PERIOD_TOL) * med and max(periods) <= (1 + PERIOD_TOL) * med
    before = 0
    if k >= 0:
        if inverted:
            before = ts[k + 1] - ts[k]               # the previous sync's long low
        else:
            before = ts[k + 2] - ts[k + 1]           # a sync space or a gap before the first mark
            if k >= 1 and (ts[k + 1] - ts[k]) * 2 < min(marks) * scale:
                before = max(before, ts[k] - ts[k - 1])   # a noise spike just before the burst
    elif k == -1 and not inverted:
        before = ts[1] - ts[0]                       # the space the buffer starts with
    return Pairs(marks, periods, med, consistent, before // scale, first, (ts[j] - ts[j - 1]) // scale,
                 (end - ts[j]) // scale)


def symbol_fit(p: Pairs, zero: float, one: float, extra: int = 0) -> tuple[str, float] | None:
    """Bits by mark fraction (above the midpoint = 1), and the mean error against the two
    symbols; None when a bit strays more than FRACTION_TOL. ``extra``: a last mark whose
    space is the gap (a gap-framed frame's last bit), judged against the median period."""
    fracs = list(map(truediv, p.marks, p.periods))
    thr = (zero + one) / 2
    if extra:
        last = extra / p.med         # no space of its own to check it by: half the tolerance
        if abs(last - (one if last > thr else zero)) > FRACTION_TOL / 2:
            return None
        fracs.append(last)
    ones = [f for f in fracs if f > thr]
    zeros = [f for f in fracs if f <= thr]
    if ones and (min(ones) < one - FRACTION_TOL or max(ones) > one + FRACTION_TOL):
        return None
    if zeros and (min(zeros) < zero - FRACTION_TOL or max(zeros) > zero + FRACTION_TOL):
        return None
    err = (abs(sum(ones) - one * len(ones)) + abs(sum(zeros) - zero * len(zeros))) / len(fracs)
    return "".join(map("01".__getitem__, map(thr.__lt__, fracs))), err


class RcReader:
    """rc-switch PWM: data pairs, then a sync pair. Says how a frame's end fits."""

    def __init__(self, timing: RcTiming):
        self.t = timing
        self.period_units = sum(timing.zero)
        assert sum(timing.one) == self.period_units, "rc-switch zero and one have one period"
        self.symbols = (timing.zero[0] / self.period_units, timing.one[0] / self.period_units)
        # the sync's long part may stray at most half-way to a data symbol's
        sync_ratio = math.log(timing.sync[0] / timing.sync[1])
        nearest = min(abs(sync_ratio - math.log(a / b)) for a, b in (timing.zero, timing.one))
        self.sync_tol = min(SYNC_RATIO_TOL, nearest / 2)

    def known(self, p: Pairs, unit: float) -> bool:
        """The frame's start is known: this timing's sync (or silence) lies before it."""
        long = self.t.sync[0] if self.t.inverted else self.t.sync[1]
        return p.before >= min(GAP_US, long * unit * math.exp(-self.sync_tol))

    def fit_end(self, p: Pairs) -> tuple[int, float, float] | None:
        """(EXACT | SILENCE | SHORT, unit µs, sync error) for a frame ending in p's end, or None."""
        t = self.t
        if not t.min_bits <= len(p.marks) <= t.max_bits:
            return None
        unit = p.med / self.period_units
        if not MIN_UNIT_US <= unit <= MAX_UNIT_US:
            return None
        if t.inverted:                       # the end space is the sync's (inverted) mark
            want = t.sync[0] * unit
        else:
            s0 = t.sync[0] * unit
            if abs(p.mark - s0) > 0.5 * s0:
                return None
            want = t.sync[1] * unit
        lr = math.log(p.gap / want)
        if abs(lr) <= self.sync_tol:
            return EXACT, unit, abs(lr)
        if lr > 0 or p.gap >= GAP_US:
            return SILENCE, unit, 1.0
        if t.inverted:
            return None
        return SHORT, unit, 1.0


class GapReader:
    """PWM frames framed by a gap alone: the end's mark is the last bit."""

    def __init__(self, timing: GapTiming):
        self.t = timing
        self.symbols = [(z / (z + o), o / (z + o)) for z, o in timing.symbols]

    def read(self, p: Pairs) -> tuple[str, float, float] | None:
        """(bits, unit µs, error) or None."""
        t = self.t
        n = len(p.marks) + 1
        gap = t.min_gap_periods * p.med
        if not t.min_bits <= n <= t.max_bits or p.gap < gap or p.before < gap:
            return None              # a gap after it and one before it (its start is known)
        best = None
        for (zero, one), (z, o) in zip(self.symbols, self.t.symbols, strict=True):
            fit = symbol_fit(p, zero, one, extra=p.mark)
            if fit is not None and (best is None or fit[1] < best[2]):
                best = (fit[0], p.med / (z + o), fit[1])
        if best is None or not MIN_UNIT_US <= best[1] <= MAX_UNIT_US:
            return None
        return best


class FlexReader:
    """Fixed-timing OOK (rtl_433 flex style): PWM by mark width after an optional sync
    mark, PPM by space width after a header; the frame ends at a space ≥ gap_us."""

    def __init__(self, timing: FlexTiming):
        self.t = timing

    def _near(self, value: int, target: int) -> bool:
        return abs(value - target) <= self.t.tolerance * target

    def _symbol(self, width: int) -> str | None:
        if self._near(width, self.t.short_us):
            return "0"
        if self._near(width, self.t.long_us):
            return "1"
        return None

    def could_end(self, mark_us: float, gap_us: float) -> bool:
        """Cheap: may a frame of this timing end with this mark and this space?"""
        t = self.t
        if gap_us < t.gap_us:
            return False
        if t.modulation == "pwm":
            return self._near(mark_us, t.short_us) or self._near(mark_us, t.long_us)
        return self._near(mark_us, t.short_us)

    def read(self, r: list[int]) -> tuple[str, int] | None:
        """(bits, window index of the first data run) of the frame whose end space is
        r[-1], or None (not this timing, or its start is not known)."""
        t = self.t
        j = len(r) - 1
        if r[j] < t.gap_us or j < 2:
            return None
        near = self._near
        pwm = t.modulation == "pwm"
        if pwm:                                  # the last mark is a bit; in PPM, the stop mark
            last = self._symbol(r[j - 1])
            if last is None:
                return None
            bits = [last]
        elif near(r[j - 1], t.short_us):
            bits = []
        else:
            return None
        known = False
        i = j - 3
        while i >= 0:
            mark, space = r[i], r[i + 1]
            if t.sync_us and near(mark, t.sync_us) and (pwm or near(space, t.header_space_us)):
                known = True                     # the sync mark (PWM) or the header (PPM)
                break
            if space >= t.gap_us:
                known = not t.sync_us            # the previous frame's gap
                break
            s = self._symbol(mark) if pwm else self._symbol(space) if near(mark, t.short_us) else None
            if s is None:
                break
            bits.append(s)
            if len(bits) > t.max_bits:
                return None
            i -= 2
        if not known or not t.min_bits <= len(bits) <= t.max_bits:
            return None
        return "".join(reversed(bits)), i + 2
