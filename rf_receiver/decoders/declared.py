"""Remotes declared as data in the config (``[rf.decoders.<name>]``): a flex timing table
and a bit count; the last ``button_bits`` bits are the button."""
from __future__ import annotations

from .base import Failure, FlexTiming, Frame, Row, to_code


class Declared:
    def __init__(self, name: str, spec):
        self.name = name
        self.timing = f"config:{name}"
        self.bits = spec.bits
        self.button_bits = spec.button_bits
        self.timing_table = FlexTiming(self.timing, spec.modulation, spec.short_us, spec.long_us, spec.gap_us,
                                       spec.sync_us, spec.header_space_us, spec.tolerance, spec.bits, spec.bits)

    def decode(self, row: Row) -> Frame | Failure:
        if len(row.bits) != self.bits:
            return Failure.LENGTH
        code = to_code(row.bits)
        remote = code >> self.button_bits
        button = code & ((1 << self.button_bits) - 1) if self.button_bits else None
        return Frame(self.name, code, self.bits, format(remote, "x"), button, row.start_us, row.end_us, row.unit_us,
                     error=row.error)


def from_config(decoders: dict) -> list[Declared]:
    return [Declared(name, spec) for name, spec in decoders.items()]
