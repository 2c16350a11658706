"""One clip on its way to the ingest (ARCHITECTURE §7): chunks ``clip/<id>/<n>``, then a
manifest with size and sha256; resumable. The decisions — where to resume after a
reconnect or a reboot, when to probe, when to send again — are pure (time is an argument),
the sending is the sync stage's."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .wire import ClipManifest

PROBE, WAIT, SEND = "probe", "wait", "send"
"""What :meth:`ClipUpload.plan` asks for: send the manifest alone to learn how many chunks
the ingest holds; nothing now; the chunks from ``next`` on, then the manifest."""


@dataclass
class ClipUpload:
    clip: str
    path: Path
    file: str
    size: int
    sha256: str
    chunk_bytes: int
    tags: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    next: int = 0                       # the next chunk to send
    probe: bool = False                 # where to resume is unknown (a restart): ask first
    probe_sent: float | None = None     # monotonic time the probe went out
    manifest_sent: float | None = None  # monotonic time the manifest went out (all chunks sent)

    @classmethod
    def start(cls, clip: str, path: Path, file: str, sha256: str, chunk_bytes: int, known: int | None,
              tags: list[str] | None = None, meta: dict | None = None) -> "ClipUpload":
        """Begin (or, with ``known`` leading chunks held by the ingest, resume) an upload.
        ``known`` is None after a restart: nobody knows what the ingest holds, so the
        manifest goes first as a probe."""
        return cls(clip, path, file, path.stat().st_size, sha256, chunk_bytes, list(tags or []), dict(meta or {}),
                   next=known or 0, probe=known is None)

    @property
    def chunks(self) -> int:
        return max(1, -(-self.size // self.chunk_bytes))

    def plan(self, known: int | None, now: float, timeout_s: float) -> str:
        """Decide the next move. ``known``: the leading chunks the ingest said it holds
        (None if it has not said)."""
        if self.probe:
            if known is not None:                   # the ingest told us where to resume
                self.next, self.probe = known, False
            elif self.probe_sent is None:
                return PROBE
            elif now - self.probe_sent > timeout_s:  # no answer: send it all
                self.probe = False
            else:
                return WAIT
        if self.manifest_sent is not None:
            if now - self.manifest_sent <= timeout_s:
                return WAIT                         # the ack is on its way
            self.next, self.manifest_sent = known or 0, None   # no ack: send what is missing again
        return SEND

    def reconnected(self, known: int | None) -> None:
        """The link came back: resume where the ingest's last word says."""
        self.next = known or 0
        self.manifest_sent = None

    def manifest(self) -> ClipManifest:
        return ClipManifest(clip=self.clip, file=self.file, size=self.size, sha256=self.sha256, chunks=self.chunks,
                            chunk_size=self.chunk_bytes, tags=self.tags, meta=self.meta)


class TokenBucket:
    """Bytes per second, with a second's worth of burst (0: no limit)."""

    def __init__(self, rate_bytes_s: float, now: float | None = None):
        self.rate = rate_bytes_s
        self.tokens = rate_bytes_s
        self.t = time.monotonic() if now is None else now

    def take(self, n: int, now: float | None = None) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic() if now is None else now
        self.tokens = min(max(self.rate, n), self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False
