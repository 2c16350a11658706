"""Which clips to delete (pure, STYLE 9): clips go only when the cloud acknowledged them
and they are past the maximum age, or when their age expired, or when space forces it —
the quota, or the headroom kept free for the next hour (in time at the current bitrate,
not a percentage). Then the oldest audio goes first; events never."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClipOnDisk:
    id: str
    created_ms: int
    size: int
    acked: bool


def plan(clips: list[ClipOnDisk], now_ms: int, max_age_ms: int, quota_bytes: int,
         free_bytes: int | None = None, headroom_bytes: int = 0) -> list[tuple[ClipOnDisk, str]]:
    """(clip, reason) to delete, reasons ``age`` or ``quota`` / ``headroom`` (forced)."""
    out: list[tuple[ClipOnDisk, str]] = []
    keep = []
    for c in sorted(clips, key=lambda c: (c.created_ms, c.id)):
        if now_ms - c.created_ms > max_age_ms:
            out.append((c, "age"))
        else:
            keep.append(c)
    used = sum(c.size for c in keep)
    free = free_bytes
    for c in keep:              # oldest first
        over_quota = used > quota_bytes
        short = free is not None and free < headroom_bytes
        if not (over_quota or short):
            break
        out.append((c, "quota" if over_quota else "headroom"))
        used -= c.size
        if free is not None:
            free += c.size
    return out
