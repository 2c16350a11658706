"""Clip accuracy: tone bursts at known instants must land at the right offsets, clips must
start and end within ±10 ms of the expected sample — short and 30-minute contacts,
contacts across segment boundaries, Opus / WAV / FLAC, a restart mid-contact."""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from appliance.config import parse_config
from appliance import vocabulary as v
from appliance.journal import Journal, NewEvent
from audio_capture.encoder import decode_pcm, encode
from audio_capture.slicer import cut
from audio_capture.sources.base import Chunk
from audio_capture.sources.file import FileSource
from audio_capture.spool import SegmentSpool, read_segments
from audio_capture.stage import AudioStage
from tests.audio_capture.tones import burst_wav, onsets
from tests.conftest import run_cli

RATE = 16000
T0 = "2026-11-20T09:00:00.000Z"
T0_MS = 1_795_165_200_000
TOL = 0.010


def replay(tmp_path: Path, events: list[dict], wav: Path, fmt: str, extra: str = "") -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[points.till1]\nmax_contact_s = 2000\nrating_scale = {{ 1 = "negative", 5 = "top" }}\n'
                   f'[audio]\nsegment_s = 10\n{extra}')
    ev = tmp_path / "e.jsonl"
    ev.write_text("".join(json.dumps(e) + "\n" for e in events))
    out = tmp_path / f"out-{fmt}"
    r = run_cli("replay", "--config", str(cfg), "--events", str(ev), "--out", str(out), "--audio", str(wav),
                "--audio-start", T0, "--audio-format", fmt, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def at(seconds: float) -> str:
    from appliance.timefmt import iso_ms
    return iso_ms(T0_MS + round(seconds * 1000))


@pytest.mark.parametrize("fmt", ["wav", "opus", "flac"])
def test_contact_and_press_tracks_are_sample_accurate(tmp_path, fmt):
    # contact 60.0 .. 95.5 s (pre 2, post 2: 58.0 .. 97.5), crossing segment boundaries at 60, 70 ... 90
    wav = burst_wav(tmp_path / "a.wav", 180, [58.0 + 0.25, 69.99, 80.0, 97.5 - 0.1, 100.0, 140.0])
    events = [{"ts": at(60), "type": "presence", "point": "till1", "state": "arrived"},
              {"ts": at(95.5), "type": "presence", "point": "till1", "state": "left"},
              {"ts": at(130), "type": "rating", "point": "till1", "value": 5}]
    out = replay(tmp_path, events, wav, fmt)
    [c] = [json.loads(x) for x in (out / "contacts.jsonl").read_text().splitlines()]
    pcm = decode_pcm(out / "clips" / c["clip"], RATE)
    assert abs(len(pcm) / 2 / RATE - 39.5) <= TOL
    assert [round(x, 2) for x in onsets(pcm)] == pytest.approx([0.25, 11.99, 22.0, 39.4], abs=TOL)
    [p] = [json.loads(x) for x in (out / "clips.jsonl").read_text().splitlines()]
    assert (p["kind"], p["start"], p["end"]) == ("press", at(100), at(145))
    pcm = decode_pcm(out / "clips" / p["file"], RATE)
    assert abs(len(pcm) / 2 / RATE - 45.0) <= TOL
    assert onsets(pcm) == pytest.approx([0.0, 40.0], abs=TOL)
    assert p["file"].startswith(p["file"].split(".")[0]) and (out / "clips" / p["file"]).exists()


def test_thirty_minute_contact_in_bounded_memory(tmp_path):
    wav = burst_wav(tmp_path / "long.wav", 1900, [10.0, 900.0, 1805.0])
    spool_dir = tmp_path / "spool"
    spool = SegmentSpool(spool_dir, RATE, 10.0, ring_minutes=1e9)
    with FileSource(str(wav), start_wall_us=T0_MS * 1000) as src:
        while (c := src.read()) is not None:
            spool.write(c)
    spool.close()
    segs = read_segments(spool_dir)
    tracemalloc.start()
    info, chunks = cut(spool_dir, segs, (T0_MS + 8_000) * 1000, (T0_MS + 1_808_000) * 1000, RATE)
    f = encode(chunks, tmp_path / "long.flac", "flac", RATE)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2_000_000, f"peak {peak} bytes for a 30-minute clip"
    assert abs(f.duration_s - 1800.0) < 0.001 and info.missing_samples == 0 and len(info.segments) == 181
    assert onsets(decode_pcm(tmp_path / "long.flac", RATE)) == pytest.approx([2.0, 892.0, 1797.0], abs=TOL)


def test_missing_audio_is_silence_and_reported(tmp_path):
    spool = SegmentSpool(tmp_path / "s", RATE, 1.0, 100)
    tone = bytes(b"\x00\x30" * RATE)          # 1 s of a constant level
    spool.write(Chunk(tone, 0, T0_MS * 1000))
    spool.write(Chunk(tone, 0, (T0_MS + 3000) * 1000, gap_before=True))   # 2 s lost in between
    spool.close()
    info, chunks = cut(tmp_path / "s", read_segments(tmp_path / "s"), T0_MS * 1000, (T0_MS + 4000) * 1000, RATE)
    pcm = b"".join(chunks)
    assert len(pcm) == 4 * RATE * 2 and info.missing_ms == 2000
    assert pcm[RATE * 2:3 * RATE * 2] == bytes(2 * RATE * 2) and pcm[:2] == b"\x00\x30"


def test_day_of_clock_drift_stays_within_50_ms(tmp_path):
    """The sound card's clock runs 200 ppm fast for 24 hours; segments re-anchor every
    10 s on the system clock, so a clip late in the day still lands on time."""
    rate, ppm = 50, 200e-6              # a low rate keeps a day of samples small
    spool = SegmentSpool(tmp_path / "s", rate, 10.0, ring_minutes=1e9)
    true_s, produced = 0.0, 0
    marker_true = 23 * 3600 + 7.0
    chunk = rate                         # one second of card samples per read
    marker_index = round(marker_true * rate * (1 + ppm))   # the card's sample taken at marker_true
    while true_s < 24 * 3600:
        samples = bytearray(chunk * 2)
        if produced <= marker_index < produced + chunk:
            k = marker_index - produced
            samples[2 * k:2 * k + 2] = (20000).to_bytes(2, "little", signed=True)
        first_true = produced / (rate * (1 + ppm))     # when the card took this chunk's first sample
        spool.write(Chunk(bytes(samples), round(first_true * 1e9), T0_MS * 1000 + round(first_true * 1e6)))
        produced += chunk
        true_s = produced / (rate * (1 + ppm))
    spool.close()
    start = T0_MS * 1000 + round((marker_true - 1) * 1e6)
    info, chunks = cut(tmp_path / "s", read_segments(tmp_path / "s"), start, start + 2_000_000, rate)
    pcm = b"".join(chunks)
    idx = max(range(len(pcm) // 2), key=lambda i: int.from_bytes(pcm[2 * i:2 * i + 2], "little", signed=True))
    assert abs(idx / rate - 1.0) <= 0.05          # naive single anchor: 17 s off by now


def test_stage_cuts_each_clip_once_across_a_restart_mid_contact(tmp_path):
    cfg = parse_config(f'[points.till1]\n[audio]\nformat = "wav"\nsegment_s = 5\nspool_dir = "{tmp_path / "spool"}"\n')
    wav = burst_wav(tmp_path / "a.wav", 60, [8.0 + 0.5, 20.0, 31.0])
    spool = SegmentSpool(tmp_path / "spool", RATE, 5.0, ring_minutes=100)
    src = FileSource(str(wav), start_wall_us=T0_MS * 1000)

    def capture_until(s: float):
        while src.pos < s * RATE and (c := src.read()) is not None:
            spool.write(c)
    with Journal(tmp_path / "j.db") as j:
        j.append(NewEvent("contact_closed", T0_MS + 30_000, {"contact": "c1", "opened": T0_MS + 10_000,
                                                             "closed": T0_MS + 30_000}, "till1", "core"))
        capture_until(20)
        stage = AudioStage(cfg, j, tmp_path / "spool", tmp_path / "clips")
        assert stage.step(T0_MS + 20_000) == 0             # the contact's audio is not all here yet
        del stage                                          # the daemon restarts mid-contact
        capture_until(40)
        stage = AudioStage(cfg, j, tmp_path / "spool", tmp_path / "clips")
        assert stage.step(T0_MS + 40_000) == 1
        assert AudioStage(cfg, j, tmp_path / "spool", tmp_path / "clips").step(T0_MS + 41_000) == 0
        j.append(v.ContactSettled(contact="c1", point="till1", opened=at(10), closed=at(30), duration_s=20.0,
                                  owner=None, rating=None, sales=[], tags=["unrated", "not_positive"])
                 .as_event(T0_MS + 60_000, "till1", "core"))
        stage.step(T0_MS + 61_000)
        clips = [e.data for e in j.iter_all(["clip"])]
        tags = [e.data for e in j.iter_all(["clip_tags"])]
    [clip] = clips
    assert (clip["kind"], clip["contact"], clip["format"], clip["complete"]) == ("contact", "c1", "wav", True)
    assert clip["start"] == at(8) and clip["end"] == at(32) and abs(clip["duration_s"] - 24.0) < 0.001
    pcm = decode_pcm(tmp_path / "clips" / clip["file"], RATE)
    assert onsets(pcm) == pytest.approx([0.5, 12.0, 23.0], abs=TOL)
    import hashlib
    assert hashlib.sha256((tmp_path / "clips" / clip["file"]).read_bytes()).hexdigest() == clip["sha256"]
    assert tags == [{"clip": clip["clip"], "tags": ["unrated", "not_positive"]}]
