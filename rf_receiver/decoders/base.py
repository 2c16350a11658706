"""What slicers and decoders hand each other: timing tables, bit rows, frames, failures."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class RcTiming:
    """rc-switch style PWM: data bits, then a sync pair that ends the frame. Units are
    multiples of the remote's own unit, which is measured per frame (cheap remotes'
    RC oscillators run anywhere from ~150 to ~600 µs)."""
    name: str
    sync: tuple[int, int]      # (mark, space) in units
    zero: tuple[int, int]
    one: tuple[int, int]
    inverted: bool = False
    min_bits: int = 8
    max_bits: int = 40


@dataclass(frozen=True, slots=True)
class FlexTiming:
    """Fixed-timing OOK, rtl_433 flex style: ``pwm`` tells bits by the mark width
    (long mark = 1), ``ppm`` by the space width (long space = 1). A frame starts after a
    sync mark (pwm) or a header mark+space (ppm) when given, and ends at a space of at
    least ``gap_us``."""
    name: str
    modulation: str            # "pwm" | "ppm"
    short_us: int
    long_us: int
    gap_us: int
    sync_us: int = 0           # pwm: sync mark before the data; ppm: header mark
    header_space_us: int = 0   # ppm: header space
    tolerance: float = 0.3     # relative
    min_bits: int = 8
    max_bits: int = 64


@dataclass(frozen=True, slots=True)
class GapTiming:
    """PWM frames with no sync mark, framed by a gap alone (as some doorbells send, and
    as rtl_433 declares such decoders: by short, long and gap). Symbols are (mark, space)
    in units; a frame's last bit is followed by a space of at least ``min_gap_periods``
    bit periods instead of its own."""
    name: str
    symbols: tuple[tuple[int, int], ...]      # the zero symbols; a one is the zero reversed
    min_gap_periods: float = 2.0
    min_bits: int = 8
    max_bits: int = 40


@dataclass(frozen=True, slots=True)
class Row:
    """A run of bits one slicer found: rc-switch convention, long mark (PWM) or long
    space (PPM) = 1, first bit first."""
    timing: str
    bits: str
    unit_us: float
    start_us: int
    end_us: int
    error: float = 0.0         # how far the frame's timing strays from its table (0 = exact)


@dataclass(frozen=True, slots=True)
class Frame:
    protocol: str
    code: int
    bits: int
    remote: str
    button: int | None
    start_us: int
    end_us: int
    unit_us: float
    partial: bool = False      # its first bits may be missing: the code is a suffix (never a press alone)
    error: float = 0.0         # timing error of the frame against its table: 0 exact, 0.2 the limit


class Failure(Enum):
    """Why a decoder turned a row down (counted per decoder, like rtl_433's account_event)."""
    LENGTH = "wrong bit count"
    SANITY = "fails the protocol's checks"
    TIMING = "not this protocol's timing"


def to_code(bits: str) -> int:
    return int(bits, 2)
