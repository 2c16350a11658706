"""Synthetic 433 MHz signals for tests, the benchmark and demos: what a remote of a
given protocol sends, with a chosen unit, timing jitter, repeats and receiver noise."""
from __future__ import annotations

import random

from .decoders.base import RcTiming
from .decoders.rcswitch import TIMINGS
from .pulses import merge_runs

RC = {t.name: t for t in TIMINGS}


def frame(code: int, bits: int, timing: RcTiming, unit: float, rnd: random.Random,
          jitter: float = 0.0) -> list[tuple[int, int]]:
    """One frame: data bits, then the sync pair (rc-switch order), as (level, µs) runs."""
    def d(units: float) -> int:
        return max(1, round(units * unit * (1 + rnd.uniform(-jitter, jitter))))
    mark, space = (0, 1) if timing.inverted else (1, 0)
    out = []
    for i in range(bits - 1, -1, -1):
        h, l = timing.one if (code >> i) & 1 else timing.zero
        out += [(mark, d(h)), (space, d(l))]
    out += [(mark, d(timing.sync[0])), (space, d(timing.sync[1]))]
    return out


def press(code: int, bits: int, timing: str | RcTiming = "rc-switch-1", unit: float = 350,
          repeats: int = 6, jitter: float = 0.0, seed: int = 0, lead_us: int = 20_000,
          tail_us: int = 50_000) -> list[tuple[int, int]]:
    """A button press: a lead-in gap, the first frame's sync, ``repeats`` frames, silence."""
    t = RC[timing] if isinstance(timing, str) else timing
    rnd = random.Random(seed)
    mark, space = (0, 1) if t.inverted else (1, 0)
    out = [(space, lead_us), (mark, round(t.sync[0] * unit)), (space, round(t.sync[1] * unit))]
    for _ in range(repeats):
        out += frame(code, bits, t, unit, rnd, jitter)
    out.append((space, tail_us))
    return merge(out)


def noise(duration_us: int, seed: int = 0, min_us: int = 20, max_us: int = 3000,
          mean_us: int = 400) -> list[tuple[int, int]]:
    """A receiver's AGC noise: random toggles (what an RXB6 outputs with no signal)."""
    rnd = random.Random(seed)
    out, t, level = [], 0, 0
    while t < duration_us:
        d = min(int(rnd.expovariate(1 / mean_us)) + min_us, max_us)
        out.append((level, d))
        t += d
        level ^= 1
    return out


merge = merge_runs
"""Join neighbouring runs of one level (the train alternates)."""


def insert_noise(runs: list[tuple[int, int]], rnd: random.Random, count: int,
                 width_us: tuple[int, int] = (20, 120)) -> list[tuple[int, int]]:
    """Short noise spikes of the other level inside random runs."""
    out = list(runs)
    for _ in range(count):
        i = rnd.randrange(len(out))
        level, d = out[i]
        w = rnd.randint(*width_us)
        if d <= 3 * w:
            continue
        cut = rnd.randint(w, d - 2 * w)
        out[i:i + 1] = [(level, cut), (level ^ 1, w), (level, d - cut - w)]
    return merge(out)


def gap_press(code: int, bits: int, unit: float = 350, repeats: int = 6, gap_units: float = 12,
              symbols: tuple[int, int] = (1, 3), jitter: float = 0.0, seed: int = 0, lead_us: int = 20_000,
              tail_us: int = 50_000) -> list[tuple[int, int]]:
    """A remote that frames its code by a gap alone (no sync mark): each frame's last bit's
    space is a gap of ``gap_units``."""
    rnd = random.Random(seed)

    def d(units: float) -> int:
        return max(1, round(units * unit * (1 + rnd.uniform(-jitter, jitter))))
    z, o = symbols
    out = [(0, lead_us)]
    for _ in range(repeats):
        for i in range(bits - 1, -1, -1):
            h, l = (o, z) if (code >> i) & 1 else (z, o)
            out += [(1, d(h)), (0, d(l) if i else d(gap_units))]
    out.append((0, tail_us))
    return merge(out)


def flex_press(code: int, timing, repeats: int = 6, seed: int = 0, jitter: float = 0.0, lead_us: int = 20_000,
               tail_us: int = 50_000) -> list[tuple[int, int]]:
    """A fixed-timing remote (a FlexTiming): PWM bits by mark width after its sync mark, or
    PPM bits by space width after its header, then its gap."""
    rnd = random.Random(seed)
    t = timing
    bits = t.max_bits

    def d(us: float) -> int:
        return max(1, round(us * (1 + rnd.uniform(-jitter, jitter))))
    out = [(0, lead_us)]
    period = t.short_us + t.long_us
    for _ in range(repeats):
        if t.modulation == "pwm":
            if t.sync_us:
                out += [(1, d(t.sync_us)), (0, d(t.short_us))]
            for i in range(bits - 1, -1, -1):
                mark = t.long_us if (code >> i) & 1 else t.short_us
                out += [(1, d(mark)), (0, d(period - mark) if i else d(t.gap_us * 1.5))]
        else:
            out += [(1, d(t.sync_us)), (0, d(t.header_space_us))]
            for i in range(bits - 1, -1, -1):
                out += [(1, d(t.short_us)), (0, d(t.long_us if (code >> i) & 1 else t.short_us))]
            out += [(1, d(t.short_us)), (0, d(t.gap_us * 1.5))]
    out.append((0, tail_us))
    return merge(out)
