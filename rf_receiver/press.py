"""Press detection (pure, STYLE 9): a remote repeats its frame while a button is held.
Repeats fold into one press; a press needs ``min_frames`` matching frames (so a lone
noise frame never counts); it is *confirmed* at the frame that reaches that count and
*ended* once no repeat came for ``release_us``; held for ``long_us`` or more it is long.
Times are the source's µs; the press's time is its first frame's start."""
from __future__ import annotations

from dataclasses import dataclass

from .decoders.base import Frame

CONFIRMED, LONG, ENDED = "confirmed", "long", "ended"


@dataclass(slots=True)
class Press:
    protocol: str
    code: int
    bits: int
    remote: str
    button: int | None
    start_us: int
    end_us: int
    frames: int = 1
    unit_us: float = 0.0
    confirmed: bool = False
    long: bool = False

    @property
    def kind(self) -> str:
        return "long" if self.long else "short"

    @property
    def key(self) -> tuple[str, int]:
        return (self.protocol, self.code)


class PressDetector:
    def __init__(self, min_frames: int = 2, long_us: int = 1_500_000, release_us: int = 350_000):
        self.min_frames = max(1, min_frames)
        self.long_us = long_us
        self.release_us = release_us
        self.active: dict[tuple[str, int], Press] = {}

    @classmethod
    def from_config(cls, cfg) -> "PressDetector":
        """``[rf] min_frames`` and ``long_press_s``."""
        return cls(cfg.rf.min_frames, round(cfg.rf.long_press_s * 1e6))

    def frame(self, f: Frame) -> list[tuple[str, Press]]:
        out = self.advance(f.start_us)
        key = (f.protocol, f.code)
        p = self.active.get(key)
        if p is None:
            p = self.active[key] = Press(f.protocol, f.code, f.bits, f.remote, f.button, f.start_us,
                                         f.end_us, 1, f.unit_us)
        else:
            p.frames += 1
            p.end_us = max(p.end_us, f.end_us)
        if not p.confirmed and p.frames >= self.min_frames:
            p.confirmed = True
            out.append((CONFIRMED, p))
        if p.confirmed and not p.long and p.end_us - p.start_us >= self.long_us:
            p.long = True
            out.append((LONG, p))
        return out

    def advance(self, now_us: int) -> list[tuple[str, Press]]:
        """Time has reached now_us: end the presses whose repeats stopped."""
        out = []
        for key in [k for k, p in self.active.items() if now_us - p.end_us > self.release_us]:
            p = self.active.pop(key)
            if p.confirmed:
                out.append((ENDED, p))
        return out

    def finish(self) -> list[tuple[str, Press]]:
        out = [(ENDED, p) for p in self.active.values() if p.confirmed]
        self.active.clear()
        return out

    def next_due_us(self) -> int | None:
        """When advance() next has something to end."""
        if not self.active:
            return None
        return min(p.end_us for p in self.active.values()) + self.release_us + 1
