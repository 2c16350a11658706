"""``appliancectl replay ... --audio FILE.wav --audio-start TIME``: the clips of the
replayed contacts and presses, cut from the recording by the same spool and slicer as on
the box, into ``DIR/clips/`` (file name = clip id)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from appliance.config.schema import Config
from appliance.ids import derived_id
from appliance.point import Call, Contact, Rating
from appliance.timefmt import iso_ms

from .encoder import encode, extension
from .slicer import cut
from .sources.file import FileSource
from .spool import SegmentSpool, read_segments


def clip_id(kind: str, ref: str, start_ms: int) -> str:
    return derived_id(start_ms, "clip", kind, ref)


def tracks(cfg: Config, records: list) -> list[dict]:
    """The clips a day's records ask for: one per contact, one around each press."""
    a = cfg.audio
    out = []
    for kind, rec in records:
        if kind == "contact" and isinstance(rec, Contact):
            start, end = rec.opened - round(a.pre_s * 1000), rec.closed + round(a.post_s * 1000)
            out.append({"kind": "contact", "contact": rec.id, "point": rec.point, "start_ms": start,
                        "end_ms": end, "id": clip_id("contact", rec.id, start), "tags": rec.tags})
        elif kind in ("rating", "call") and isinstance(rec, (Rating, Call)):
            start, end = rec.t - round(a.before_s * 1000), rec.t + round(a.after_s * 1000)
            ref = rec.ref if isinstance(rec, Rating) else f"{rec.point}:{rec.t}"
            item = {"kind": "press", "press": kind, "point": rec.point, "start_ms": start, "end_ms": end,
                    "id": clip_id("press", ref, start), "at": iso_ms(rec.t)}
            if isinstance(rec, Rating):
                item.update(value=rec.value, status=rec.status, contact=rec.contact)
            out.append(item)
    return sorted(out, key=lambda c: (c["start_ms"], c["id"]))


def write_clips(cfg: Config, records: list, wav: str, start_ms: int, out_dir: Path,
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
        for t in tracks(cfg, records):
            name = t["id"] + extension(fmt)
            info, chunks = cut(spool_dir, segments, t["start_ms"] * 1000, t["end_ms"] * 1000, src.rate)
            encode(chunks, clips_dir / name, fmt, src.rate, cfg.audio.bitrate_kbps)
            if t["kind"] == "contact":
                by_contact[t["contact"]] = name
            else:
                line = {"kind": "press", "start": iso_ms(t["start_ms"]), "end": iso_ms(t["end_ms"]),
                        "file": name, "press": t["press"], "point": t["point"], "at": t["at"]}
                for k in ("value", "status", "contact"):
                    if k in t:
                        line[k] = t[k]
                if info.missing_ms:
                    line["missing_ms"] = info.missing_ms
                presses.append(line)
    return by_contact, presses


def write_press_index(out_dir: Path, presses: list[dict]) -> None:
    from appliance.files import write_atomic
    write_atomic(out_dir / "clips.jsonl", "".join(json.dumps(p) + "\n" for p in presses))
