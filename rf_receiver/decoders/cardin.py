"""Cardin S466 garage remotes: a ~6.2 ms sync mark, then 24 PWM bits by mark width
(~730 / ~1410 µs), ~30 ms between frames. Declared as data: a flex timing table."""
from __future__ import annotations

from .base import Failure, FlexTiming, Frame, Row, to_code

TIMING = FlexTiming("cardin", "pwm", short_us=730, long_us=1410, gap_us=4000, sync_us=6150,
                    tolerance=0.25, min_bits=24, max_bits=24)


class Cardin:
    name = "Cardin"
    timing = TIMING.name

    def decode(self, row: Row) -> Frame | Failure:
        if len(row.bits) != 24:
            return Failure.LENGTH
        code = to_code(row.bits)
        return Frame(self.name, code, 24, f"{code >> 4:05x}", code & 0xF, row.start_us, row.end_us, row.unit_us,
                     error=row.error)


TIMINGS = [TIMING]
DECODERS = [Cardin()]
