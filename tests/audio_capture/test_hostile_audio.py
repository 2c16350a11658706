"""No deaf, no crash-looping microphone daemon: bad ``--wav`` files are refused at start
(exit 2), a WAV claiming 0 Hz cannot kill capture, and a full spool file system makes the
spool drop its oldest audio while capture and clips go on."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time

import pytest

from appliance.journal import Journal, NewEvent
from audio_capture.sources.base import AudioError
from audio_capture.sources.file import FileSource
from tests.audio_capture.tones import burst_wav
from tests.conftest import ROOT, make_config, run_cli


def wav_header(rate: int, frames: int) -> bytes:
    data = frames * 2
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", data))


@pytest.fixture
def bad_wavs(tmp_path):
    good = burst_wav(tmp_path / "good.wav", 2, [0.5])
    files = {"empty": b"", "truncated": good.read_bytes()[:30], "zero-hertz": wav_header(0, 100) + bytes(200),
             "no-audio": wav_header(16000, 0), "not-a-wav": b"hello"}
    out = {}
    for name, data in files.items():
        (tmp_path / f"{name}.wav").write_bytes(data)
        out[name] = tmp_path / f"{name}.wav"
    return out


def test_bad_wav_files_are_refused_at_start_with_exit_2(tmp_path, bad_wavs):
    cfg = make_config(tmp_path, f'\n[audio]\nsource = "file"\nspool_dir = "{tmp_path / "spool"}"\n')
    for name, path in bad_wavs.items():
        with pytest.raises(AudioError):
            FileSource(str(path))
        r = run_cli("--config", str(cfg), "run", "audio", "--wav", str(path), timeout=30)
        assert r.returncode == 2, (name, r.stderr)
        assert "--wav" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_full_spool_drops_old_audio_and_capture_and_clips_go_on(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    spool = tmp_path / "spool"
    spool.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(spool)], check=True)
    try:
        with open(spool / "ballast", "wb") as f:            # something else fills the RAM disk
            f.write(bytes(700 * 1024))
        cfg = make_config(tmp_path, f'\n[audio]\nsource = "file"\nformat = "wav"\nsegment_s = 1\nspool_minutes = 10\n'
                                    f'pre_s = 1\npost_s = 1\nspool_dir = "{spool}"\n')
        wav = burst_wav(tmp_path / "mic.wav", 60, [1.0])
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg), "run", "audio",
                                 "--wav", str(wav)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(16)                                       # 32 kB/s: full after ~10 s
            assert proc.poll() is None
            segs = sorted(int(p.stem[4:]) for p in spool.glob("seg-*.json"))
            assert segs and segs[-1] >= 12                       # capture went on past the full disk
            assert len(segs) < 12                                # ... in a smaller ring
            now = int(time.time() * 1000)
            with Journal(tmp_path / "state" / "journal.db") as j:
                j.append(NewEvent("contact_closed", now, {"contact": "c1", "opened": now - 2000, "closed": now},
                                  "till1", "core"))
            end = time.monotonic() + 15
            clip = None
            while clip is None and time.monotonic() < end:
                time.sleep(0.2)
                with Journal(tmp_path / "state" / "journal.db") as j:
                    clip = next(iter(j.iter_all(["clip"])), None)
            assert clip is not None and clip.data["contact"] == "c1"
            level = json.loads((spool / "level.json").read_text())
            assert time.time() - level["time"] < 5                # the daemon is not stuck
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(20)
        err = proc.stderr.read()
        assert rc == 0, err
        assert "the spool cannot take audio" in err and "Traceback" not in err
    finally:
        subprocess.run(["umount", "-l", str(spool)])
