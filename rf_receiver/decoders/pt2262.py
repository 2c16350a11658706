"""PT2262 / PT2260 / SC2262 tri-state encoders (Princeton): 12 tri-state positions sent
as 24 PWM bits at rc-switch protocol 1 timing (1:3 marks, 1:31 sync). Pairs 00 = 0,
11 = 1, 01 = F (floating); 10 never occurs. Usually 8 address positions then 4 data
positions: the remote is the first 16 bits, the button the last 8."""
from __future__ import annotations

from .base import Failure, Frame, Row, to_code

TIMING = "rc-switch-1"
TRISTATE = {"00": "0", "11": "1", "01": "F"}


def tristate(bits: str) -> str | None:
    out = []
    for i in range(0, len(bits), 2):
        s = TRISTATE.get(bits[i:i + 2])
        if s is None:
            return None
        out.append(s)
    return "".join(out)


class PT2262:
    name = "PT2262"
    timing = TIMING

    def decode(self, row: Row) -> Frame | Failure:
        if len(row.bits) != 24:
            return Failure.LENGTH
        if tristate(row.bits) is None:
            return Failure.SANITY            # a 10 pair: not tri-state (EV1527 takes it)
        code = to_code(row.bits)
        return Frame(self.name, code, 24, f"{code >> 8:04x}", code & 0xFF, row.start_us, row.end_us, row.unit_us,
                     error=row.error)


DECODERS = [PT2262()]
