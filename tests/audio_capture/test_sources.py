"""ALSA through a file-backed PCM (pyalsaaudio, a real capture device to ALSA), and an
RTSP camera on loopback that goes away and comes back."""
from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from audio_capture.daemon import Capture
from audio_capture.sources.base import AudioError
from audio_capture.sources.rtsp import RtspSource
from audio_capture.spool import SegmentSpool, read_segments
from appliance.config import parse_config
from tests.audio_capture.conftest import asoundrc
from tests.conftest import ROOT, run_cli

RATE = 16000


def tone_raw(path: Path, seconds: float, amp: int = 6000, freq: float = 300.0) -> bytes:
    data = b"".join(struct.pack("<h", int(amp * math.sin(2 * math.pi * freq * i / RATE)))
                    for i in range(int(seconds * RATE)))
    path.write_bytes(data + bytes(640 * 100))     # padded to whole periods (the PCM has no EOF)
    return data


ALSA_READ = """
import sys
from audio_capture.sources.alsa import AlsaSource
src = AlsaSource("filemic", 16000)
want = int(sys.argv[1])
got = b""
while len(got) < want:
    got += src.read().data
sys.stdout.buffer.write(got[:want])
"""


def test_alsa_capture_through_a_file_pcm_is_bit_exact(tmp_path):
    data = tone_raw(tmp_path / "mic.raw", 3.0)
    env = dict(os.environ, XDG_CONFIG_HOME=str(asoundrc(tmp_path / "home", tmp_path / "mic.raw")))
    out = subprocess.run([sys.executable, "-c", ALSA_READ, str(len(data))], cwd=ROOT, env=env,
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == data


def test_audio_test_cli_over_alsa_reports_level_and_floor(tmp_path):
    tone_raw(tmp_path / "mic.raw", 6.0, amp=6000)
    cfg = tmp_path / "a.toml"
    cfg.write_text('[points.p]\n[audio]\nsource = "alsa"\ndevice = "filemic"\n')
    env = {"XDG_CONFIG_HOME": str(asoundrc(tmp_path / "home", tmp_path / "mic.raw"))}
    r = run_cli("--config", str(cfg), "audio", "test", "--json", env=env)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert abs(res["rms_db"] - 20 * math.log10(6000 / math.sqrt(2) / 32768)) < 0.5
    assert res["state"] == "ok" and res["seconds"] == 5.0
    # a silent microphone is called silent, with exit status 1
    (tmp_path / "mic.raw").write_bytes(bytes(RATE * 2 * 7))
    r = run_cli("--config", str(cfg), "audio", "test", "--json", env=env)
    assert r.returncode == 1 and json.loads(r.stdout)["state"] == "silent"


def test_missing_alsa_device_is_a_clear_error(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[points.p]\n[audio]\nsource = "alsa"\ndevice = "nosuchmic"\n')
    r = run_cli("--config", str(cfg), "audio", "test")
    assert r.returncode == 3 and "cannot open ALSA capture device 'nosuchmic'" in r.stderr


def test_rtsp_source_reads_the_camera(rtsp_server):
    src = RtspSource(rtsp_server.url, RATE)
    got = b""
    while len(got) < RATE * 2:
        got += src.read().data
    src.close()
    assert max(abs(v) for v in struct.unpack(f"<{len(got) // 2}h", got)) > 3000   # the tone, not silence


def test_rtsp_camera_going_away_and_coming_back(tmp_path, rtsp_server):
    cfg = parse_config(f'[points.p]\n[audio]\nsource = "rtsp"\nurl = "{rtsp_server.url}"\n'
                       f'spool_dir = "{tmp_path / "spool"}"\nsegment_s = 1\n')
    spool = SegmentSpool(tmp_path / "spool", RATE, 1.0, 10)
    stop = threading.Event()
    cap = Capture(cfg, spool, lambda: RtspSource(rtsp_server.url, RATE, timeout_s=2), stop)
    cap.start()

    def audio_s():
        return sum(s.samples for s in read_segments(tmp_path / "spool")) / RATE

    def wait(pred, limit=30):
        end = time.monotonic() + limit
        while time.monotonic() < end and not pred():
            time.sleep(0.1)
        return pred()
    try:
        assert wait(lambda: audio_s() >= 2)
        rtsp_server.stop()                                  # the camera goes away
        assert wait(lambda: cap.state == "lost")
        before = audio_s()
        time.sleep(1.5)
        assert audio_s() - before < 0.5                     # nothing captured while it is away
        rtsp_server.start()                                 # ... and comes back
        assert wait(lambda: audio_s() >= before + 2)
        assert cap.state == "ok" and cap.reopens >= 2
    finally:
        stop.set()
        cap.join(10)
        spool.close()
    segs = read_segments(tmp_path / "spool")
    assert any(s.gap_before for s in segs)                  # the outage is recorded, not hidden
    gap_seg = next(s for s in segs if s.gap_before)
    prev = max((s for s in segs if s.seq < gap_seg.seq), key=lambda s: s.seq)
    assert gap_seg.first_wall_us - prev.end_wall_us > 1_000_000


def test_rtsp_unreachable_camera_is_a_clear_error():
    with pytest.raises(AudioError, match="cannot open"):
        RtspSource("rtsp://127.0.0.1:9/none", RATE, timeout_s=1)
