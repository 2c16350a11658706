"""The clip slicer as a journal stage (cursor ``audio``): ``contact_closed`` asks for a
contact track, ``rating`` and ``call`` presses for press tracks, ``contact`` brings the
tags. A track is cut as soon as capture has passed its end (clip ready within a second of
the post-roll's end), encoded to ``<state_dir>/clips/<clip id><ext>``, and journalled as a
``clip`` event. Pending tracks live in the stage's snapshot, committed with the cursor and
the clip events: a restart resumes where it stopped, and clip ids are deterministic, so
nothing is cut twice into the journal."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import msgspec

from appliance import vocabulary as v
from appliance.config.schema import Config
from appliance.journal import Journal
from appliance.logs import fields
from appliance.timefmt import iso_ms

from .encoder import encode_in_child, extension
from .slicer import covered, cut
from .spool import read_segments
from .tracks import PRESS_TYPES, Track, contact_track, press_track

log = logging.getLogger(__name__)

STAGE = "audio"
INPUT = (v.CONTACT_CLOSED, v.CONTACT, *PRESS_TYPES)
GIVE_UP_MS = 120_000     # capture never reached a track's end (microphone lost): cut what exists


class AudioStage:
    def __init__(self, cfg: Config, journal: Journal, spool_dir: str | Path, clips_dir: str | Path):
        self.cfg = cfg
        self.journal = journal
        self.spool_dir = Path(spool_dir)
        self.clips_dir = Path(clips_dir)
        self.took = False                   # the last step took requests (the daemon stays awake)
        self.seen = -1                      # the journal's seq this stage has looked at
        self.clips_cut = 0
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.clips_dir.glob(".*.tmp"):    # an encoder killed with its daemon (power, SIGKILL)
            log.info("audio: removing the unfinished %s", tmp.name)
            tmp.unlink(missing_ok=True)
        _, blob = journal.stage_state(STAGE)
        state = _snapshot.decode(blob) if blob else Snapshot()
        self.jobs: list[Track] = state.jobs
        self.clip_of_contact: dict[str, str] = state.contacts
        self.ready_latency_ms: list[float] = []

    def _snapshot(self) -> bytes:
        # contacts whose clip is known: keep the recent ones (tags come within the grace window)
        recent = dict(list(self.clip_of_contact.items())[-500:])
        return msgspec.json.encode(Snapshot(self.jobs, recent))

    def _track_for(self, ev) -> Track | None:
        if ev.type == v.CONTACT_CLOSED:
            c = v.read(ev, v.ContactClosed)
            return contact_track(self.cfg, c.contact, ev.point, c.opened, c.closed)
        if ev.type in PRESS_TYPES:
            return press_track(self.cfg, ev.type, ev.id, ev.point, ev.ts)
        return None

    def step(self, now_ms: int) -> int:
        """Take new requests, cut what capture has covered. Returns clips written."""
        written = 0
        self.took = False
        if not self.jobs and self.journal.last_seq() <= self.seen:
            return 0                        # nothing new: no write transaction (an idle box)
        with self.journal.stage(STAGE) as txn:
            events, upto = txn.read_batch(500, INPUT)
            changed = bool(events) or upto != txn.cursor
            self.took = bool(events)
            self.seen = upto
            for ev in events:
                if ev.type == v.CONTACT:       # tags of a contact whose clip exists
                    c = v.read(ev, v.ContactSettled)
                    cid = self.clip_of_contact.get(c.contact)
                    if cid:
                        txn.append(v.ClipTags(clip=cid, tags=c.tags).as_event(ev.ts, ev.point, "audio",
                                                                           f"audio:tags:{cid}"))
                    continue
                track = self._track_for(ev)
                if track is not None:
                    self.jobs.append(track)
            txn.advance(upto)
            if changed:
                txn.state = self._snapshot()
            else:
                txn.skip = True
        if not self.jobs:
            return 0
        segments = read_segments(self.spool_dir)
        for job in sorted(self.jobs, key=lambda j: j.end_ms):
            done = covered(segments, job.end_ms * 1000)
            if not done and now_ms - job.end_ms < GIVE_UP_MS:
                continue
            self._cut(job, segments, now_ms)
            written += 1
        self.clips_cut += written
        return written

    def _cut(self, job: Track, segments, now_ms: int) -> None:
        fmt = self.cfg.audio.format
        name = job.id + extension(fmt)
        rate = self.cfg.audio.rate
        info, chunks = cut(self.spool_dir, segments, job.start_ms * 1000, job.end_ms * 1000, rate)
        total = max(1, (job.end_ms - job.start_ms) * rate // 1000)
        f = encode_in_child(chunks, self.clips_dir / name, fmt, rate, self.cfg.audio.bitrate_kbps)
        clip = v.Clip(clip=job.id, kind=job.kind, file=name, start=iso_ms(job.start_ms), end=iso_ms(job.end_ms),
                      duration_s=round(f.duration_s, 3), format=fmt, size=f.size, sha256=f.sha256,
                      missing_ms=info.missing_ms, complete=info.missing_samples == 0,
                      contact=job.ref if job.kind == "contact" else None,
                      press=job.press, event=job.ref if job.kind == "press" else None)
        if info.missing_samples >= total:
            log.warning("audio: no audio at all for %s %s (%s..%s)", job.kind, job.ref,
                        iso_ms(job.start_ms), iso_ms(job.end_ms))
        with self.journal.stage(STAGE) as txn:
            txn.append(clip.as_event(job.end_ms, job.point, "audio", f"audio:clip:{job.id}"))
            self.jobs = [j for j in self.jobs if j.id != job.id]
            if job.kind == "contact":
                self.clip_of_contact[job.ref] = job.id
            txn.state = self._snapshot()
        self.ready_latency_ms.append(time.time() * 1000 - job.end_ms)
        log.info("audio: %s clip %s (%.1f s, %d bytes%s)", job.kind, name, f.duration_s, f.size,
                 f", {info.missing_ms} ms missing" if info.missing_ms else "",
                 extra=fields(clip=job.id, point=job.point, contact=clip.contact))


class Snapshot(msgspec.Struct):
    """The stage's state beside its cursor: tracks not cut yet, recent contacts' clips."""
    jobs: list[Track] = []
    contacts: dict[str, str] = {}


_snapshot = msgspec.json.Decoder(Snapshot)
