"""Microphone health and retention decisions (pure)."""
from __future__ import annotations

import math
import struct

from audio_capture.level import LevelMeter, noise_floor_db
from audio_capture.retention import ClipOnDisk, plan

RATE = 16000


def tone(seconds: float, amp: int) -> bytes:
    return struct.pack(f"<{int(seconds * RATE)}h",
                       *(max(-32768, min(32767, int(amp * math.sin(2 * math.pi * 200 * i / RATE))))
                         for i in range(int(seconds * RATE))))


def test_levels_per_second_and_states():
    m = LevelMeter(RATE, silent_s=3)
    levels = m.feed(tone(2, 8000))
    assert len(levels) == 2 and m.state == "ok"
    assert abs(levels[0].rms_db - 20 * math.log10(8000 / math.sqrt(2) / 32768)) < 0.2
    assert abs(levels[0].peak_db - 20 * math.log10(8000 / 32768)) < 0.2
    m.feed(bytes(RATE * 2 * 2))
    assert m.state == "ok"                        # 2 s of silence: a quiet shop, not yet dead
    m.feed(bytes(RATE * 2))
    assert m.state == "silent"                    # 3 s of digital silence: unplugged / dead
    m.feed(tone(1, 60000))                        # overdriven
    assert m.state == "clipping"
    m.feed(tone(1, 3000))
    assert m.state == "ok"
    assert noise_floor_db(m.history) < -100


def test_partial_seconds_carry_over():
    m = LevelMeter(RATE)
    assert m.feed(tone(0.6, 1000)) == []
    assert len(m.feed(tone(0.6, 1000))) == 1


DAY = 86_400_000


def c(i, age_days, size=1000, acked=False):
    return ClipOnDisk(f"c{i}", 100 * DAY - age_days * DAY, size, acked)


def test_age_expired_clips_go_acked_or_not():
    clips = [c(1, 40), c(2, 31, acked=True), c(3, 5)]
    assert [(x.id, r) for x, r in plan(clips, 100 * DAY, 30 * DAY, 10**9)] == [("c1", "age"), ("c2", "age")]


def test_quota_forces_the_oldest_out_first():
    clips = [c(1, 3), c(2, 2, acked=True), c(3, 1), c(4, 0)]
    got = plan(clips, 100 * DAY, 30 * DAY, quota_bytes=2500)
    assert [(x.id, r) for x, r in got] == [("c1", "quota"), ("c2", "quota")]


def test_headroom_in_time_forces_deletion_when_the_disk_runs_short():
    clips = [c(1, 3, size=5000), c(2, 2, size=5000), c(3, 1, size=5000)]
    got = plan(clips, 100 * DAY, 30 * DAY, quota_bytes=10**9, free_bytes=2000, headroom_bytes=10_000)
    assert [(x.id, r) for x, r in got] == [("c1", "headroom"), ("c2", "headroom")]
    assert plan(clips, 100 * DAY, 30 * DAY, 10**9, free_bytes=20_000, headroom_bytes=10_000) == []
