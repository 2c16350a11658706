"""The rc-switch family of fixed-code PWM remotes (protocols 1–6 of the rc-switch
library, which rpi-rf and most DIY 433 MHz code share), and its generic decoder: any
8–32-bit row at one of these timings that no more specific decoder claimed.

Timing tables are in units of the remote's own clock; the unit is measured per frame.
"""
from __future__ import annotations

from .base import Failure, Frame, RcTiming, Row, to_code

# name, sync (mark, space), zero, one, inverted — as rc-switch's `proto[]` table
TIMINGS = [
    RcTiming("rc-switch-1", (1, 31), (1, 3), (3, 1)),
    RcTiming("rc-switch-2", (1, 10), (1, 2), (2, 1)),
    RcTiming("rc-switch-3", (30, 71), (4, 11), (9, 6)),
    RcTiming("rc-switch-4", (1, 6), (1, 3), (3, 1)),
    RcTiming("rc-switch-5", (6, 14), (1, 2), (2, 1)),
    RcTiming("rc-switch-6", (23, 1), (1, 2), (2, 1), inverted=True),   # HT6P20B
]


class RcSwitch:
    """Generic: the whole row is the code. With no button split in it, each code is a
    remote of its own with one button, 0 (so it can be learned and mapped like others)."""
    bit_counts = range(8, 33)

    def __init__(self, timing: RcTiming):
        self.timing = timing.name
        self.name = timing.name

    def decode(self, row: Row) -> Frame | Failure:
        if len(row.bits) not in self.bit_counts:
            return Failure.LENGTH
        code = to_code(row.bits)
        if code == 0 or code == (1 << len(row.bits)) - 1:
            return Failure.SANITY            # all zeros / all ones: noise-like
        return Frame(self.name, code, len(row.bits), format(code, "x"), 0,
                     row.start_us, row.end_us, row.unit_us,
                     error=row.error)


DECODERS = [RcSwitch(t) for t in TIMINGS]
