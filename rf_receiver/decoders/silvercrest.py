"""Silvercrest (Lidl) RC202-style remotes: 32 PWM bits and a sync mark at rc-switch
protocol 1 timing (marks ~260/750 µs), about 8 ms between frames; rtl_433 counts the
sync mark as a 33rd bit. The first 16 bits are a fixed prefix (0x83d9 here, 0x7c26 in
rtl_433's short-mark-is-1 convention). Remote = the first 24 bits, button = the last 8."""
from __future__ import annotations

from .base import Failure, Frame, Row, to_code

TIMING = "rc-switch-1"
PREFIX = 0x83D9


class Silvercrest:
    name = "Silvercrest"
    timing = TIMING

    def decode(self, row: Row) -> Frame | Failure:
        if len(row.bits) != 32:
            return Failure.LENGTH
        code = to_code(row.bits)
        if code >> 16 != PREFIX:
            return Failure.SANITY
        return Frame(self.name, code, 32, f"{code >> 8:06x}", code & 0xFF, row.start_us, row.end_us, row.unit_us,
                     error=row.error)


DECODERS = [Silvercrest()]
