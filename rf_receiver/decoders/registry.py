"""The registry: every timing the receiver slices, and the decoders that read its rows,
most specific first (the first decoder that accepts a row names it)."""
from __future__ import annotations

from . import cardin, ev1527, gap, pt2262, rcswitch, silvercrest, x10
from .base import FlexTiming, GapTiming, RcTiming

TIMINGS: list[RcTiming | FlexTiming | GapTiming] = [*rcswitch.TIMINGS, *cardin.TIMINGS, *x10.TIMINGS,
                                                  *gap.TIMINGS]

DECODERS = [
    *pt2262.DECODERS,        # 24-bit tri-state rows at protocol-1 timing
    *ev1527.DECODERS,        # other 24-bit rows at protocol-1 timing
    *silvercrest.DECODERS,   # 33-bit rows at protocol-1 timing
    *cardin.DECODERS,
    *x10.DECODERS,
    *rcswitch.DECODERS,      # anything else at rc-switch timings
    *gap.DECODERS,           # gap-framed PWM
]


def frame_from_code(protocols: str | tuple[str, ...], code: int, bits: int, t_us: int):
    """A frame for a code a source decoded by itself (rtl_433, an nRF24 link), labelled
    (remote, button) by the first of ``protocols`` whose decoder accepts it, exactly as
    if it had been read off the air."""
    from .base import Failure, Row
    names = (protocols,) if isinstance(protocols, str) else protocols
    for name in names:
        for d in DECODERS:
            if d.name == name:
                f = d.decode(Row(d.timing, format(code, f"0{bits}b"), 0.0, t_us, t_us))
                if not isinstance(f, Failure):
                    return f
    return None


def by_timing(decoders=None) -> dict[str, list]:
    out: dict[str, list] = {}
    for d in decoders or DECODERS:
        out.setdefault(d.timing, []).append(d)
    return out
