"""The registry: every timing the receiver slices, and the decoders that read its rows,
most specific first (the first decoder that accepts a row names it)."""
from __future__ import annotations

from . import cardin, ev1527, pt2262, rcswitch, silvercrest, x10
from .base import FlexTiming, RcTiming

TIMINGS: list[RcTiming | FlexTiming] = [*rcswitch.TIMINGS, *cardin.TIMINGS, *x10.TIMINGS]

DECODERS = [
    *pt2262.DECODERS,        # 24-bit tri-state rows at protocol-1 timing
    *ev1527.DECODERS,        # other 24-bit rows at protocol-1 timing
    *silvercrest.DECODERS,   # 33-bit rows at protocol-1 timing
    *cardin.DECODERS,
    *x10.DECODERS,
    *rcswitch.DECODERS,      # anything else at rc-switch timings
]


def by_timing(decoders=None) -> dict[str, list]:
    out: dict[str, list] = {}
    for d in decoders or DECODERS:
        out.setdefault(d.timing, []).append(d)
    return out
