"""Remotes that frame their code by a gap alone (some doorbells and PIR sensors): PWM bits
at rc-switch's 1:3 or 1:2 symbols, and after the last bit a gap of at least 1.25 bit
periods (longer than any data space) instead of a sync pair. The code is the remote; it has
one button, 0."""
from __future__ import annotations

from .base import Failure, Frame, GapTiming, Row, to_code

TIMING = GapTiming("pwm-gap", ((1, 3), (1, 2)), min_gap_periods=1.25, max_bits=32)


class GapPwm:
    name = "pwm-gap"
    timing = TIMING.name

    def decode(self, row: Row) -> Frame | Failure:
        if not TIMING.min_bits <= len(row.bits) <= TIMING.max_bits:
            return Failure.LENGTH
        code = to_code(row.bits)
        if code == 0 or code == (1 << len(row.bits)) - 1:
            return Failure.SANITY            # all zeros / all ones: noise-like
        return Frame(self.name, code, len(row.bits), format(code, "x"), 0, row.start_us, row.end_us, row.unit_us,
                     error=row.error)


TIMINGS = [TIMING]
DECODERS = [GapPwm()]
