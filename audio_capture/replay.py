"""``appliancectl replay ... --audio FILE.wav --audio-start TIME``: the clips of the
replayed contacts and presses, cut from the recording by the same spool and slicer as on
the box, into ``DIR/clips/`` (file name = clip id)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from appliance.config.schema import Config
from appliance.point import Contact, Rating
from appliance.timefmt import iso_ms

from .encoder import encode, extension
from .slicer import cut
from .sources.file import FileSource
from .spool import SegmentSpool, read_segments
from .tracks import PRESS_TYPES, Track, contact_track, press_track


def tracks(cfg: Config, records: list, inputs: list) -> list[tuple[Track, dict]]:
    """The clips a day asks for, exactly as the live audio stage cuts them: one per
    contact, one around each rating or call press. Each with what its index line adds."""
    ratings = {rec.ref: rec for kind, rec in records if kind == "rating" and isinstance(rec, Rating)}
    out = []
    for kind, rec in records:
        if kind == "contact" and isinstance(rec, Contact):
            out.append((contact_track(cfg, rec.id, rec.point, rec.opened, rec.closed), {}))
    for ev in inputs:
        if ev.type in PRESS_TYPES:
            extra: dict = {"at": iso_ms(ev.ts)}
            r = ratings.get(ev.ref)
            if r is not None:
                extra.update(value=r.value, status=r.status, contact=r.contact)
            out.append((press_track(cfg, ev.type, ev.ref, ev.point, ev.ts), extra))
    return sorted(out, key=lambda t: (t[0].start_ms, t[0].id))


def write_clips(cfg: Config, records: list, inputs: list, wav: str, start_ms: int, out_dir: Path,
                fmt: str | None = None) -> tuple[dict[str, str], list[dict]]:
    """Cut and encode every track. Returns (contact id -> clip file, press track lines)."""
    fmt = fmt or cfg.audio.format
    clips_dir = out_dir / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    by_contact: dict[str, str] = {}
    presses: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="replay-spool-") as spool_dir, \
            FileSource(wav, start_wall_us=start_ms * 1000) as src:
        spool = SegmentSpool(spool_dir, src.rate, cfg.audio.segment_s, ring_minutes=1e9)
        while (chunk := src.read()) is not None:
            spool.write(chunk)
        spool.close()
        segments = read_segments(spool_dir)
        for t, extra in tracks(cfg, records, inputs):
            name = t.id + extension(fmt)
            info, chunks = cut(spool_dir, segments, t.start_ms * 1000, t.end_ms * 1000, src.rate)
            encode(chunks, clips_dir / name, fmt, src.rate, cfg.audio.bitrate_kbps)
            if t.kind == "contact":
                by_contact[t.ref] = name
            else:
                line = {"kind": "press", "start": iso_ms(t.start_ms), "end": iso_ms(t.end_ms),
                        "file": name, "press": t.press, "point": t.point, **extra}
                if info.missing_ms:
                    line["missing_ms"] = info.missing_ms
                presses.append(line)
    return by_contact, presses


def write_press_index(out_dir: Path, presses: list[dict]) -> None:
    from appliance.files import write_atomic
    write_atomic(out_dir / "clips.jsonl", "".join(json.dumps(p) + "\n" for p in presses))
