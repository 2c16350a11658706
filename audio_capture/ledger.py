"""The clips whose audio may still be on disk, kept up to date from the journal.

Retention runs every minute for years; reading every clip event of the journal each time
would cost more with every month of tracks. The ledger reads each clip, clip_acked and
clip_deleted event once (it keeps the seq it has read up to) and holds only the live clips:
a pass costs what is on disk, not the history. A restarted daemon builds it again from the
journal, whose clip events pruning keeps only while their audio may be on disk."""
from __future__ import annotations

from pathlib import Path

from appliance import vocabulary as v
from appliance.journal import Journal

from .retention import ClipOnDisk


class ClipLedger:
    def __init__(self, journal: Journal, clips_dir: Path):
        self.journal = journal
        self.clips_dir = clips_dir
        self.after = 0                                  # the last journal seq read
        self.live: dict[str, tuple[int, str]] = {}      # clip id -> (created ms, file name)
        self.acked: set[str] = set()                    # live clips the cloud acknowledged

    def update(self) -> None:
        """Read the clip events journalled since the last call."""
        for ev in self.journal.iter_all(v.CLIP_LIFECYCLE, after=self.after):
            self.after = ev.seq
            if ev.type == v.CLIP:
                c = v.read(ev, v.Clip)
                self.live[c.clip] = (ev.ts, c.file)
            elif ev.type == v.CLIP_ACKED:
                clip = v.read(ev, v.ClipAcked).clip
                if clip in self.live:
                    self.acked.add(clip)
            else:
                self.forget(v.read(ev, v.ClipDeleted).clip)

    def forget(self, clip: str) -> None:
        self.live.pop(clip, None)
        self.acked.discard(clip)

    def on_disk(self) -> list[ClipOnDisk]:
        """The live clips whose file is there, with their sizes; one whose file has gone is
        forgotten (its events say what it was)."""
        out, gone = [], []
        for clip, (ts, name) in self.live.items():
            try:
                size = (self.clips_dir / name).stat().st_size
            except FileNotFoundError:
                gone.append(clip)
                continue
            out.append(ClipOnDisk(clip, ts, size, clip in self.acked))
        for clip in gone:
            self.forget(clip)
        return out

    def path(self, clip: str) -> Path:
        return self.clips_dir / self.live[clip][1]
