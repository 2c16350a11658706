"""The clip slicer as a journal stage (cursor ``audio``): ``contact_closed`` asks for a
contact track, ``rating`` and ``call`` presses for press tracks, ``contact`` brings the
tags. A track is cut as soon as capture has passed its end (clip ready within a second of
the post-roll's end), encoded to ``<state_dir>/clips/<clip id><ext>``, and journalled as a
``clip`` event. Pending tracks live in the stage's snapshot, committed with the cursor and
the clip events: a restart resumes where it stopped, and clip ids are deterministic, so
nothing is cut twice into the journal."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from appliance.config.schema import Config
from appliance.journal import Journal, NewEvent
from appliance.timefmt import iso_ms

from .encoder import encode, extension
from .replay import clip_id
from .slicer import covered, cut
from .spool import read_segments

log = logging.getLogger(__name__)

STAGE = "audio"
INPUT = ("contact_closed", "contact", "rating", "call")
GIVE_UP_MS = 120_000     # capture never reached a track's end (microphone lost): cut what exists


class AudioStage:
    def __init__(self, cfg: Config, journal: Journal, spool_dir: str | Path, clips_dir: str | Path):
        self.cfg = cfg
        self.journal = journal
        self.spool_dir = Path(spool_dir)
        self.clips_dir = Path(clips_dir)
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        _, blob = journal.stage_state(STAGE)
        state = json.loads(blob) if blob else {}
        self.jobs: list[dict] = state.get("jobs", [])
        self.clip_of_contact: dict[str, str] = state.get("contacts", {})
        self.ready_latency_ms: list[float] = []

    def _snapshot(self) -> bytes:
        # contacts whose clip is known: keep the recent ones (tags come within the grace window)
        recent = dict(list(self.clip_of_contact.items())[-500:])
        return json.dumps({"jobs": self.jobs, "contacts": recent}).encode()

    def _jobs_from(self, ev) -> list[dict]:
        a = self.cfg.audio
        if ev.type == "contact_closed":
            start = ev.data["opened"] - round(a.pre_s * 1000)
            end = ev.data["closed"] + round(a.post_s * 1000)
            return [{"kind": "contact", "ref": ev.data["contact"], "point": ev.point, "start": start, "end": end,
                     "id": clip_id("contact", ev.data["contact"], start)}]
        if ev.type in ("rating", "call"):
            start, end = ev.ts - round(a.before_s * 1000), ev.ts + round(a.after_s * 1000)
            return [{"kind": "press", "ref": ev.id, "press": ev.type, "point": ev.point, "start": start,
                     "end": end, "id": clip_id("press", ev.id, start)}]
        return []

    def step(self, now_ms: int) -> int:
        """Take new requests, cut what capture has covered. Returns clips written."""
        written = 0
        with self.journal.stage(STAGE) as txn:
            events, upto = txn.read_batch(500, INPUT)
            changed = bool(events) or upto != txn.cursor
            for ev in events:
                if ev.type == "contact":       # tags of a contact whose clip exists
                    cid = self.clip_of_contact.get(ev.data.get("contact", ""))
                    if cid:
                        txn.append(NewEvent("clip_tags", ev.ts, {"clip": cid, "tags": ev.data.get("tags", [])},
                                            ev.point, "audio", f"audio:tags:{cid}"))
                    continue
                self.jobs += self._jobs_from(ev)
            txn.advance(upto)
            if changed:
                txn.state = self._snapshot()
            else:
                txn.skip = True
        if not self.jobs:
            return 0
        segments = read_segments(self.spool_dir)
        for job in sorted(self.jobs, key=lambda j: j["end"]):
            done = covered(segments, job["end"] * 1000)
            if not done and now_ms - job["end"] < GIVE_UP_MS:
                continue
            self._cut(job, segments, now_ms)
            written += 1
        return written

    def _cut(self, job: dict, segments, now_ms: int) -> None:
        fmt = self.cfg.audio.format
        name = job["id"] + extension(fmt)
        rate = self.cfg.audio.rate
        info, chunks = cut(self.spool_dir, segments, job["start"] * 1000, job["end"] * 1000, rate)
        total = max(1, (job["end"] - job["start"]) * rate // 1000)
        f = encode(chunks, self.clips_dir / name, fmt, rate, self.cfg.audio.bitrate_kbps)
        data = {"clip": job["id"], "kind": job["kind"], "file": name, "start": iso_ms(job["start"]),
                "end": iso_ms(job["end"]), "duration_s": round(f.duration_s, 3), "format": fmt,
                "size": f.size, "sha256": f.sha256, "missing_ms": info.missing_ms,
                "complete": info.missing_samples == 0}
        if job["kind"] == "contact":
            data["contact"] = job["ref"]
        else:
            data.update(press=job["press"], event=job["ref"])
        if info.missing_samples >= total:
            log.warning("audio: no audio at all for %s %s (%s..%s)", job["kind"], job["ref"],
                        iso_ms(job["start"]), iso_ms(job["end"]))
        with self.journal.stage(STAGE) as txn:
            txn.append(NewEvent("clip", job["end"], data, job["point"], "audio", f"audio:clip:{job['id']}"))
            self.jobs = [j for j in self.jobs if j["id"] != job["id"]]
            if job["kind"] == "contact":
                self.clip_of_contact[job["ref"]] = job["id"]
            txn.state = self._snapshot()
        self.ready_latency_ms.append(time.time() * 1000 - job["end"])
        log.info("audio: %s clip %s (%.1f s, %d bytes%s)", job["kind"], name, f.duration_s, f.size,
                 f", {info.missing_ms} ms missing" if info.missing_ms else "")
