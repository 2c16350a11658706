"""Benchmark: the audio path's CPU, clip-ready latency and memory.

    python bench/audio_capture.py [--minutes 10] [--contacts 8] [--json]

Prints, next to references measured in the same run on the same machine:
  - CPU seconds per hour of audio for capture (ALSA, through a file-backed capture PCM:
    the real pyalsaaudio path) + segment spool + Opus encoding of all of it (24 kbit/s,
    VoIP), against ffmpeg encoding the same samples to the same Opus settings (the tool a
    user would reach for; ffmpeg's ALSA input cannot read an unpaced file PCM, so it reads
    the raw file), as a ratio; and the peak RSS of both processes;
  - clip-ready latency: from the end of a contact's post-roll to the clip's journal
    commit, with the real daemon pieces (a WAV microphone in real time, the spool, the
    clip stage polling as the daemon does);
  - peak RSS of that capture + clip process.
Targets (issue 4): CPU ratio ≤ 1.0 of ffmpeg's, clip ready ≤ 1 s after the post-roll, RSS ≤ 60 MB.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine  # noqa: E402
RATE = 16000


def shop_sound(seconds: int, seed: int = 1) -> bytes:
    """Speech-band noise with a varying envelope (Opus works harder on it than on a tone)."""
    rnd = random.Random(seed)
    out = bytearray()
    block = RATE // 10
    prev = 0.0
    for b in range(seconds * 10):
        amp = 3000 + 2500 * math.sin(b / 7.0) + rnd.uniform(-800, 800)
        vals = []
        for _ in range(block):
            prev = 0.7 * prev + 0.3 * rnd.uniform(-1, 1)
            vals.append(int(max(-32767, min(32767, amp * prev * 3))))
        out += struct.pack(f"<{block}h", *vals)
    return bytes(out)


WORKER = r"""
import sys, time, resource
sys.path.insert(0, sys.argv[4])
from audio_capture.sources.alsa import AlsaSource
from audio_capture.spool import SegmentSpool, read_segments
from audio_capture.slicer import cut
from audio_capture.encoder import encode
samples, spool_dir, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
src = AlsaSource("benchmic", 16000, period_s=0.1)
spool = SegmentSpool(spool_dir, 16000, 10.0, ring_minutes=1e9)
got = 0
t0 = 0
while got < samples:
    c = src.read()
    data = c.data[: (samples - got) * 2]
    c.data = data
    if got == 0:
        t0 = c.first_wall_us
    c.first_wall_us = t0 + got * 1_000_000 // 16000   # unpaced file PCM: stamp by sample count
    spool.write(c)
    got += len(data) // 2
spool.close()
segs = read_segments(spool_dir)
info, chunks = cut(spool_dir, segs, t0, t0 + samples * 1_000_000 // 16000, 16000)
encode(chunks, out, "opus", 16000, 24)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def cpu_of(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {r.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, after.ru_maxrss, r.stdout


def bench_cpu(minutes: int, tmp: Path) -> dict:
    raw = tmp / "shop.raw"
    pcm = shop_sound(minutes * 60)
    raw.write_bytes(pcm + bytes(RATE * 2))
    home = tmp / "home"
    (home / "alsa").mkdir(parents=True)
    (home / "alsa" / "asoundrc").write_text(
        f'pcm.benchmic {{\n type file\n slave.pcm {{ type null }}\n file "/dev/null"\n infile "{raw}"\n'
        f' format "raw"\n}}\n')
    env = dict(os.environ, XDG_CONFIG_HOME=str(home))
    ours_cpu, _, out = cpu_of([sys.executable, "-c", WORKER, str(len(pcm) // 2), str(tmp / "spool"),
                               str(tmp / "ours.ogg"), str(ROOT)], env)
    ours_rss = int(out.strip().splitlines()[-1])
    ff_cpu, ff_rss, _ = cpu_of(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "s16le", "-ar", str(RATE),
                                "-ac", "1", "-i", str(raw), "-t", str(minutes * 60), "-c:a", "libopus", "-b:a", "24k",
                                "-application", "voip", str(tmp / "ffmpeg.ogg")])
    hours = minutes / 60
    return {"minutes": minutes, "ours_cpu_s_per_hour": ours_cpu / hours, "ffmpeg_cpu_s_per_hour": ff_cpu / hours,
            "cpu_ratio": ours_cpu / ff_cpu, "ours_rss_mb": ours_rss / 1024, "ffmpeg_rss_mb": ff_rss / 1024,
            "ours_bytes": (tmp / "ours.ogg").stat().st_size, "ffmpeg_bytes": (tmp / "ffmpeg.ogg").stat().st_size}


def bench_latency(contacts: int, tmp: Path) -> dict:
    from appliance.config import parse_config
    from appliance.journal import Journal, NewEvent
    from audio_capture.daemon import Capture
    from audio_capture.sources.file import FileSource
    from audio_capture.spool import SegmentSpool
    from audio_capture.stage import AudioStage

    wav = tmp / "mic.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(shop_sound(30))
    cfg = parse_config(f'[points.till1]\n[audio]\nsource = "file"\nsegment_s = 10\npre_s = 2\npost_s = 2\n'
                       f'spool_dir = "{tmp / "spool2"}"\n')
    spool = SegmentSpool(tmp / "spool2", RATE, 10.0, 10)
    stop = threading.Event()
    cap = Capture(cfg, spool, lambda: FileSource(str(wav), realtime=True, period_s=0.02, loop=True), stop)
    cap.start()
    journal = Journal(tmp / "journal.db")
    stage = AudioStage(cfg, journal, tmp / "spool2", tmp / "clips")
    time.sleep(3)
    lat = []
    for i in range(contacts):
        now = int(time.time() * 1000)
        closed = now + 500
        journal.append(NewEvent("contact_closed", closed, {"contact": f"c{i}", "opened": now - 8000,
                                                           "closed": closed}, "till1", "core"))
        post_roll_end = (closed + 2000) / 1000
        n0 = len(stage.ready_latency_ms)
        while len(stage.ready_latency_ms) == n0:
            stage.step(int(time.time() * 1000))
            time.sleep(0.1)                     # the daemon's loop period
        lat.append(time.time() - post_roll_end)
    stop.set()
    cap.join(5)
    spool.close()
    journal.close()
    lat.sort()
    return {"contacts": contacts, "clip_ready_s_p50": lat[len(lat) // 2], "clip_ready_s_max": lat[-1],
            "daemon_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--contacts", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--latency-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.latency_worker:          # its own process, so its RSS is the daemon's alone
        print(json.dumps(bench_latency(args.contacts, Path(args.latency_worker))))
        return 0
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is needed for the reference (apt install ffmpeg)", file=sys.stderr)
        return 2
    res: dict = {"machine": machine()}
    print(f"machine: {res['machine']}")
    with tempfile.TemporaryDirectory() as d:
        c = bench_cpu(args.minutes, Path(d))
        res.update(c)
        print(f"\ncapture + spool + Opus 24 kbit/s, {args.minutes} min of 16 kHz mono (shop-like noise):")
        print(f"  {'':34} {'CPU s / hour':>13} {'peak RSS MB':>12} {'output kB':>10}")
        print(f"  {'appliance (ALSA file PCM, PyAV)':34} {c['ours_cpu_s_per_hour']:>13.1f} {c['ours_rss_mb']:>12.1f} "
              f"{c['ours_bytes'] / 1000:>10.0f}")
        print(f"  {'ffmpeg (raw file -> libopus)':34} {c['ffmpeg_cpu_s_per_hour']:>13.1f} {c['ffmpeg_rss_mb']:>12.1f} "
              f"{c['ffmpeg_bytes'] / 1000:>10.0f}")
        print(f"  ratio (this / ffmpeg): CPU {c['cpu_ratio']:.2f} (target ≤ 1.0)")
        r = subprocess.run([sys.executable, __file__, "--contacts", str(args.contacts), "--latency-worker", d],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-800:])
        lat = json.loads(r.stdout.strip().splitlines()[-1])
        res.update(lat)
        print(f"\nclip ready after the post-roll ends ({args.contacts} contacts of 10.5 s, Opus, daemon loop 0.1 s): "
              f"p50 {lat['clip_ready_s_p50'] * 1000:.0f} ms, max {lat['clip_ready_s_max'] * 1000:.0f} ms "
              f"(target ≤ 1 s)")
        print(f"peak RSS of capture + spool + clip stage: {lat['daemon_rss_mb']:.1f} MB (target ≤ 60 MB)")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
