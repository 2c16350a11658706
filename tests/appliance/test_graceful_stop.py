"""SIGTERM (``systemctl stop``, a shutdown) mid-contact and mid-clip: the real core and audio
daemons, stopped while a contact is open and again and again while its track is being cut,
then started again. Nothing is lost (the contact, its track), nothing doubles, and no partial
file is ever left in the clips folder. (What the microphone heard while its daemon was
down is not there: the track says how much is missing.)"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import av

from appliance.journal import Journal, NewEvent
from tests.audio_capture.tones import burst_wav
from tests.conftest import ROOT, make_config

EXTRA = """
[points.till3]
presence = "rf"
rating_grace_s = 1
sale_grace_s = 1
[audio]
source = "file"
format = "opus"
segment_s = 1
pre_s = 1
post_s = 1
spool_dir = "{spool}"
"""


def start(cfg: Path, name: str, wav: Path) -> subprocess.Popen:
    extra = ["--wav", str(wav)] if name == "audio" else []
    return subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg), "run", name, *extra],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)


def term(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(20)
    proc.stderr.close()
    return rc


def events(jp: Path, *types: str) -> list:
    with Journal(jp) as j:
        return list(j.iter_all(list(types)))


def stray_files(clips: Path) -> list[str]:
    return [p.name for p in clips.rglob("*") if p.is_file() and (p.name.startswith(".") or ".tmp" in p.name)]


def test_sigterm_mid_contact_and_mid_clip_loses_nothing_and_leaves_no_partial_file(tmp_path):
    cfg = make_config(tmp_path, EXTRA.format(spool=tmp_path / "spool"))
    wav = burst_wav(tmp_path / "mic.wav", 60, [float(s) for s in range(1, 60)])
    jp = tmp_path / "state" / "journal.db"
    core, audio = start(cfg, "core", wav), start(cfg, "audio", wav)
    end = time.monotonic() + 20
    while not jp.exists() and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(2.5)                                     # the microphone has been heard a while
    opened = int(time.time() * 1000)
    with Journal(jp) as j:
        j.append(NewEvent("presence", opened, {"state": "arrived"}, "till3", "rf"))
    time.sleep(1.5)
    assert term(core) == 0 and term(audio) == 0         # mid-contact: both stop cleanly
    core, audio = start(cfg, "core", wav), start(cfg, "audio", wav)
    time.sleep(1.5)
    closed = int(time.time() * 1000)
    with Journal(jp) as j:
        j.append(NewEvent("presence", closed, {"state": "left"}, "till3", "rf"))
    # mid-clip: stop the audio daemon every few tenths of a second while the track is due
    stops = 0
    deadline = time.monotonic() + 40
    try:
        while time.monotonic() < deadline and not events(jp, "clip"):
            time.sleep(0.25 + 0.1 * (stops % 3))
            assert term(audio) == 0
            assert stray_files(tmp_path / "state" / "clips") == []
            stops += 1
            audio = start(cfg, "audio", wav)
        time.sleep(3)                                   # the contact's tags, a last chance to double
    finally:
        rc_core, rc_audio = term(core), term(audio)
    assert rc_core == 0 and rc_audio == 0 and stops >= 1
    contacts = events(jp, "contact")
    assert [(c.point, c.data["duration_s"]) for c in contacts] == [("till3", (closed - opened) / 1000)]
    assert len(events(jp, "contact_opened")) == 1 and len(events(jp, "contact_closed")) == 1
    clips = events(jp, "clip")
    assert len(clips) == 1 and clips[0].data["kind"] == "contact"
    # the microphone is not heard while its daemon is down: the track says how much is missing
    assert clips[0].data["complete"] or 0 < clips[0].data["missing_ms"] < 2500 * (stops + 1)
    assert stray_files(tmp_path / "state" / "clips") == []
    files = [p for p in (tmp_path / "state" / "clips").rglob("*") if p.is_file()]
    assert [p.name for p in files] == [Path(clips[0].data["file"]).name]
    with av.open(str(files[0])) as f:                   # a whole, playable file
        seconds = float(f.duration / 1_000_000)
    assert abs(seconds - ((closed - opened) / 1000 + 2)) < 0.2, seconds
