"""X10 RF (PalmPad, keychain remotes): NEC-style PPM, a 9 ms header mark and 4.5 ms
space, 32 bits by space width (~550 / ~1650 µs after ~560 µs marks), each byte followed
by its complement. Remote = house code byte, button = the command byte."""
from __future__ import annotations

from .base import Failure, FlexTiming, Frame, Row, to_code

TIMING = FlexTiming("x10", "ppm", short_us=560, long_us=1660, gap_us=6000, sync_us=9000,
                    header_space_us=4500, tolerance=0.3, min_bits=32, max_bits=32)


class X10:
    name = "X10"
    timing = TIMING.name

    def decode(self, row: Row) -> Frame | Failure:
        if len(row.bits) != 32:
            return Failure.LENGTH
        code = to_code(row.bits)
        b = code.to_bytes(4, "big")
        if b[0] ^ b[1] != 0xFF or b[2] ^ b[3] != 0xFF:
            return Failure.SANITY            # each byte is followed by its complement
        return Frame(self.name, code, 32, f"{b[0]:02x}", b[2], row.start_us, row.end_us, row.unit_us,
                     error=row.error)


TIMINGS = [TIMING]
DECODERS = [X10()]
