"""Press detection (pure, STYLE 9): a remote repeats its frame while a button is held.

One press per transmission. A remote's identity is its code and bit count, whatever
timing table named a frame: frames of one code fold into one press, which takes the name
of the protocol that named most of them. A press needs ``min_frames`` matching frames (so
a lone noise frame never counts); it is *confirmed* at the frame that reaches that count
and *ended* once no repeat came for ``release_us``; held for ``long_us`` or more it is
long, and when it ends its hold time is known.

Two rules keep stray codes out: while another code's press is on the air, a code needs
at least two frames (a code seen once among many frames of another is never a press);
and a code a bit or two away from a press with many times its frames, heard among that
press's frames, is its bit errors, not a press of its own. Partial frames (their first
bits may be missing) only add to a press of the code they end.

Times are the source's µs; the press's time is its first frame's start.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .decoders.base import Frame

CONFIRMED, LONG, ENDED = "confirmed", "long", "ended"
ERROR_BITS = 2          # a code this many bits from a strong press may be its bit errors
ERROR_RATIO = 4         # ... when that press has this many times its frames
CONFIRM_WAIT_US = 150_000   # a frame's repeat (the confirming one) comes within this


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
    names: Counter = field(default_factory=Counter)     # protocol -> frames it named
    labels: dict = field(default_factory=dict)          # protocol -> (remote, button, unit_us)
    error: float = 0.0                                  # mean timing error of its frames

    @property
    def kind(self) -> str:
        return "long" if self.long else "short"

    @property
    def key(self) -> tuple[int, int]:
        return (self.code, self.bits)

    @property
    def held_us(self) -> int:
        return self.end_us - self.start_us

    def add(self, f: Frame) -> None:
        """One more frame of this code."""
        self.error = (self.error * self.frames + f.error) / (self.frames + 1)
        self.frames += 1
        self.start_us = min(self.start_us, f.start_us)
        self.end_us = max(self.end_us, f.end_us)
        if not f.partial:
            self.name(f)

    def name(self, f: Frame) -> None:
        self.names[f.protocol] += 1
        self.labels.setdefault(f.protocol, (f.remote, f.button, f.unit_us))
        best = self.names.most_common(1)[0][0]
        if best != self.protocol:
            self.protocol = best
            self.remote, self.button, self.unit_us = self.labels[best]


def _suffix(partial: Frame, p: Press) -> bool:
    return partial.bits <= p.bits and p.code & ((1 << partial.bits) - 1) == partial.code


class PressDetector:
    def __init__(self, min_frames: int = 2, long_us: int = 1_500_000, release_us: int = 350_000):
        self.min_frames = max(1, min_frames)
        self.long_us = long_us
        self.release_us = release_us
        self.active: dict[tuple[int, int], Press] = {}
        self.partials: list[Frame] = []

    @classmethod
    def from_config(cls, cfg) -> "PressDetector":
        """``[rf] min_frames`` and ``long_press_s``."""
        return cls(cfg.rf.min_frames, round(cfg.rf.long_press_s * 1e6))

    def frame(self, f: Frame) -> list[tuple[str, Press]]:
        out = self.advance(f.start_us)
        if f.partial:
            for p in self.active.values():
                if _suffix(f, p):
                    p.add(f)
                    out += self._check(p)
                    return out
            self.partials.append(f)
            return out
        key = (f.code, f.bits)
        p = self.active.get(key)
        if p is None:
            p = self.active[key] = Press(f.protocol, f.code, f.bits, f.remote, f.button, f.start_us, f.end_us, 1,
                                         f.unit_us, error=f.error)
            p.name(f)
            # a partial frame just before: this code's first frame, its head eaten
            for q in [q for q in self.partials if _suffix(q, p)]:
                self.partials.remove(q)
                p.add(q)
        else:
            p.add(f)
        return out + self._check(p)

    def _check(self, p: Press) -> list[tuple[str, Press]]:
        out = []
        if not p.confirmed and p.frames >= self._needed(p):
            p.confirmed = True
            out.append((CONFIRMED, p))
        if p.confirmed and not p.long and p.end_us - p.start_us >= self.long_us:
            p.long = True
            out.append((LONG, p))
        return out

    def _needed(self, p: Press) -> int:
        need = self.min_frames
        for q in self.active.values():
            if q is p:
                continue
            if q.frames >= 2:
                need = max(need, 2)          # another code is on the air
            if (q.bits == p.bits and q.end_us > p.start_us and q.frames >= ERROR_RATIO * p.frames
                    and (q.code ^ p.code).bit_count() <= ERROR_BITS):
                return 1 << 30               # its bit errors, among its frames: not while it is stronger
        return need

    def advance(self, now_us: int) -> list[tuple[str, Press]]:
        """Time has reached now_us: end the presses whose repeats stopped."""
        out = []
        for key in [k for k, p in self.active.items() if now_us - p.end_us > self.release_us]:
            p = self.active.pop(key)
            if p.confirmed:
                out.append((ENDED, p))
        if self.partials:
            self.partials = [q for q in self.partials if now_us - q.end_us <= self.release_us]
        return out

    def finish(self) -> list[tuple[str, Press]]:
        out = [(ENDED, p) for p in self.active.values() if p.confirmed]
        self.active.clear()
        self.partials.clear()
        return out

    def pending(self, now_us: int | None = None) -> bool:
        """A code was just heard and its press is not confirmed yet, or a partial frame just
        came: the next frame may confirm a press, and is urgent."""
        return (any(not p.confirmed and (now_us is None or now_us - p.end_us <= CONFIRM_WAIT_US)
                    for p in self.active.values())
                or any(now_us is None or now_us - q.end_us <= CONFIRM_WAIT_US for q in self.partials))

    def next_due_us(self) -> int | None:
        """When advance() next has something to end."""
        if not self.active:
            return None
        return min(p.end_us for p in self.active.values()) + self.release_us + 1
