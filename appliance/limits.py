"""Bounds on what comes from outside (ARCHITECTURE §11): a window for event times and a
cap on JSON nesting, checked before anything is decoded or stored."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import sub

EARLIEST_MS = 1_577_836_800_000
"""2020-01-01T00:00:00Z: no event of this product is older."""
LATEST_FIXED_MS = 4_102_444_800_000
"""2100-01-01T00:00:00Z: the bound while the box's clock is not synchronised (§3)."""
MAX_DEPTH = 32
"""JSON nested deeper than this is refused before decoding."""


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Event times a box accepts: from 2020-01-01 to its clock plus ``ahead_ms`` once the
    clock is synchronised; only the fixed bounds before that."""
    lo: int = EARLIEST_MS
    hi: int = LATEST_FIXED_MS

    @classmethod
    def around(cls, now_ms: int, synced: bool, ahead_ms: int) -> "TimeWindow":
        return cls(EARLIEST_MS, min(LATEST_FIXED_MS, now_ms + ahead_ms) if synced else LATEST_FIXED_MS)

    @classmethod
    def live(cls, stamp, max_ahead_s: float) -> "TimeWindow":
        """The window for an event arriving now (``stamp``: the clock's now)."""
        return cls.around(stamp.ts, stamp.synced, round(max_ahead_s * 1000))

    def problem(self, ts: int) -> str | None:
        """Why ``ts`` is refused, or None."""
        from .timefmt import iso_ms
        if ts < self.lo:
            return f"time {iso_ms(ts)} is before {iso_ms(self.lo)}"
        if ts >= self.hi:
            return f"time {iso_ms(ts)} is not before {iso_ms(self.hi)} (more than allowed ahead of the box's clock)"
        return None


FIXED = TimeWindow()

_KEEP = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def nesting_depth(payload: bytes | str) -> int:
    """How deep a JSON text's arrays and objects nest (brackets inside strings ignored),
    without decoding: escaped backslashes and quotes are dropped, everything but quotes and
    brackets is dropped, strings are dropped, and the brackets are counted — all at C speed,
    in linear time."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    skeleton = payload.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _KEEP)
    steps = b"".join(skeleton.split(b'"')[::2]).translate(_STEP)   # even parts: outside strings
    return max(accumulate(map(sub, steps, repeat(1))), default=0)
