"""Clip assembly: a pure function of (segments, time range), sample-accurate, in bounded
memory (at most ``chunk_s`` of audio at a time, whatever the clip's length).

Clip sample k is the audio at ``start + k / rate``. Where the spool has no audio for part
of the range (a gap in capture, the ring already dropped it, the end not yet recorded)
the clip holds silence there, so offsets in the clip stay true to wall time; the amount is
reported (``Cut.missing_ms``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .spool import BYTES_PER_SAMPLE, SegmentInfo, raw_path


@dataclass(slots=True)
class Cut:
    start_us: int
    end_us: int
    rate: int
    samples: int = 0
    missing_samples: int = 0
    segments: list[int] = field(default_factory=list)

    @property
    def missing_ms(self) -> int:
        return self.missing_samples * 1000 // self.rate


def covered(segments: list[SegmentInfo], end_us: int) -> bool:
    """Has capture reached end_us (so a clip ending there can be cut whole)?"""
    return bool(segments) and segments[-1].end_wall_us >= end_us


def cut(directory: str | Path, segments: list[SegmentInfo], start_us: int, end_us: int, rate: int,
        chunk_s: float = 1.0) -> tuple[Cut, Iterator[bytes]]:
    """The samples of [start_us, end_us) as an iterator of byte chunks, and its Cut record
    (filled in as the iterator runs)."""
    total = max(0, -((-(end_us - start_us) * rate) // 1_000_000))
    info = Cut(start_us, end_us, rate)
    max_bytes = max(1, int(chunk_s * rate)) * BYTES_PER_SAMPLE

    def gen() -> Iterator[bytes]:
        pos = 0                                # clip samples produced
        for seg in segments:
            if seg.rate != rate or seg.samples == 0 or pos >= total:
                continue
            # where this segment's samples fall in the clip
            clip_first = _index_clip(seg, start_us, rate)
            i0 = max(0, -clip_first)           # first usable sample of the segment
            if clip_first + seg.samples <= pos:
                continue
            i0 = max(i0, pos - clip_first)
            i1 = min(seg.samples, total - clip_first)
            if i1 <= i0:
                continue
            gap = clip_first + i0 - pos
            if gap > 0:                        # no audio here: silence keeps the timing
                info.missing_samples += gap
                yield from _silence(gap, max_bytes)
                pos += gap
            info.segments.append(seg.seq)
            with open(raw_path(directory, seg.seq), "rb") as f:
                f.seek(i0 * BYTES_PER_SAMPLE)
                left = (i1 - i0) * BYTES_PER_SAMPLE
                while left > 0:
                    data = f.read(min(left, max_bytes))
                    if not data:
                        break
                    left -= len(data)
                    pos += len(data) // BYTES_PER_SAMPLE
                    yield data
        if pos < total:
            info.missing_samples += total - pos
            yield from _silence(total - pos, max_bytes)
            pos = total
        info.samples = pos
    return info, gen()


def _index_clip(seg: SegmentInfo, start_us: int, rate: int) -> int:
    """Clip index of the segment's first sample (may be negative: it began before)."""
    d = (seg.first_wall_us - start_us) * rate
    return round(d / 1_000_000)


def _silence(n: int, max_bytes: int) -> Iterator[bytes]:
    left = n * BYTES_PER_SAMPLE
    while left > 0:
        k = min(left, max_bytes)
        yield bytes(k)
        left -= k
