"""The segment spool (ARCHITECTURE §6): continuous capture into fixed-length raw segments
in a bounded ring (RAM-backed ``/run/appliance/audio`` on the box).

Each segment is ``seg-<seq>.raw`` (S16_LE mono) and ``seg-<seq>.json``: its sample rate
and the monotonic and wall time of its first sample. The sample clock is re-anchored at
every segment, so the audio clock's drift against the system clock never accumulates past
one segment. A gap in the input (an overrun, a reconnect) closes the segment and opens a
new one anchored at the next sample: audio is never silently shifted. The spool is only
a buffer: clips are cut from it (``slicer.py``) and the oldest segments are dropped.
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from appliance.files import write_atomic

from .sources.base import Chunk

BYTES_PER_SAMPLE = 2


@dataclass(slots=True)
class SegmentInfo:
    seq: int
    rate: int
    first_mono_ns: int
    first_wall_us: int
    samples: int = 0
    closed: bool = False
    gap_before: bool = False      # input was lost just before this segment

    def wall_us_at(self, index: int) -> int:
        return self.first_wall_us + index * 1_000_000 // self.rate

    @property
    def end_wall_us(self) -> int:
        return self.wall_us_at(self.samples)


class SegmentSpool:
    """Writer side. ``write(chunk)`` from the capture loop; ``segments()`` for readers."""

    def __init__(self, directory: str | Path, rate: int, segment_s: float = 10.0, ring_minutes: float = 10.0):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rate = rate
        self.segment_samples = max(1, round(segment_s * rate))
        self.keep = max(2, int(ring_minutes * 60 / segment_s) + 1)
        existing = sorted(int(p.stem[4:]) for p in self.dir.glob("seg-*.json"))
        self.next_seq = (existing[-1] + 1) if existing else 1
        self.kept: deque[int] = deque(existing)    # segments on disk, oldest first
        self.current: SegmentInfo | None = None
        self.file = None
        self.gaps = 0
        self.expected_next_wall_us: int | None = None

    # --- writing ---------------------------------------------------------------------

    def write(self, chunk: Chunk) -> None:
        data = chunk.data
        n = len(data) // BYTES_PER_SAMPLE
        if n == 0:
            return
        if chunk.gap_before and self.current is not None:
            self.gaps += 1
            self._close()
        mono, wall = chunk.first_mono_ns, chunk.first_wall_us
        offset = 0
        while offset < n:
            if self.current is None:
                self._open(mono + offset * 1_000_000_000 // self.rate,
                           wall + offset * 1_000_000 // self.rate, chunk.gap_before and offset == 0)
            room = self.segment_samples - self.current.samples
            take = min(room, n - offset)
            self.file.write(data[offset * 2:(offset + take) * 2])
            self.current.samples += take
            offset += take
            if self.current.samples >= self.segment_samples:
                self._close()
        if self.file is not None:
            self.file.flush()

    def _open(self, mono_ns: int, wall_us: int, gap: bool) -> None:
        self.current = SegmentInfo(self.next_seq, self.rate, mono_ns, wall_us, gap_before=gap)
        self.next_seq += 1
        self.file = open(self._raw(self.current.seq), "wb")
        self._write_info(self.current)
        self.kept.append(self.current.seq)

    def _close(self) -> None:
        if self.current is None:
            return
        self.file.close()
        self.current.closed = True
        self._write_info(self.current)
        self.current = None
        self.file = None
        self._trim()

    def close(self) -> None:
        self._close()

    def make_room(self) -> int:
        """The spool's file system is full: close the segment being written (what reached
        the disk stays), drop the oldest half of the segments and shrink the ring to what is
        left. Returns how many segments were dropped."""
        f = self.file
        try:
            self._close()
        except OSError:
            if f is not None:
                try:
                    f.close()                   # the descriptor is released even if the flush fails
                except OSError:
                    pass
            self.current, self.file = None, None
        n = max(1, len(self.kept) // 2)
        for _ in range(min(n, len(self.kept))):
            seq = self.kept.popleft()
            self._raw(seq).unlink(missing_ok=True)
            (self.dir / f"seg-{seq:08d}.json").unlink(missing_ok=True)
        self.keep = max(2, len(self.kept) + 1)
        return n

    def _trim(self) -> None:
        while len(self.kept) > self.keep:
            seq = self.kept.popleft()
            self._raw(seq).unlink(missing_ok=True)
            (self.dir / f"seg-{seq:08d}.json").unlink(missing_ok=True)

    def _raw(self, seq: int) -> Path:
        return self.dir / f"seg-{seq:08d}.raw"

    def _write_info(self, info: SegmentInfo) -> None:
        path = self.dir / f"seg-{info.seq:08d}.json"
        write_atomic(path, json.dumps(asdict(info)), durable=False)   # the spool is in RAM


def read_segments(directory: str | Path) -> list[SegmentInfo]:
    """The spool's segments, oldest first; an open segment's length is its file's."""
    out = []
    for p in sorted(Path(directory).glob("seg-*.json")):
        try:
            info = SegmentInfo(**json.loads(p.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if not info.closed:
            try:
                info.samples = p.with_suffix(".raw").stat().st_size // BYTES_PER_SAMPLE
            except OSError:
                continue
        out.append(info)
    return out


def raw_path(directory: str | Path, seq: int) -> Path:
    return Path(directory) / f"seg-{seq:08d}.raw"
