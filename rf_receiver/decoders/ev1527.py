"""EV1527 learning-code encoders and their clones (HS1527, RT1527, FP1527): a 20-bit
factory-programmed id and 4 data bits (one per key line), 24 PWM bits at rc-switch
protocol 1 timing. The remote is the 20-bit id, the button the 4 data bits."""
from __future__ import annotations

from .base import Failure, Frame, Row, to_code

TIMING = "rc-switch-1"


class EV1527:
    name = "EV1527"
    timing = TIMING

    def decode(self, row: Row) -> Frame | Failure:
        if len(row.bits) != 24:
            return Failure.LENGTH
        code = to_code(row.bits)
        if code >> 4 in (0, 0xFFFFF):
            return Failure.SANITY            # no real remote has an all-0 / all-1 id
        return Frame(self.name, code, 24, f"{code >> 4:05x}", code & 0xF, row.start_us, row.end_us, row.unit_us,
                     error=row.error)


DECODERS = [EV1527()]
