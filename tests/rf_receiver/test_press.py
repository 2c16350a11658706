"""The press detector, fed with frames and times (pure)."""
from __future__ import annotations

from rf_receiver.decoders.base import Frame
from rf_receiver.press import CONFIRMED, ENDED, LONG, PressDetector


def fr(t_ms: float, code: int = 0xABCDE1, dur_ms: float = 40) -> Frame:
    s = round(t_ms * 1000)
    return Frame("EV1527", code, 24, f"{code >> 4:05x}", code & 0xF, s, s + round(dur_ms * 1000), 350.0)


def run(frames, det=None, end_ms=10_000):
    det = det or PressDetector(2, 1_500_000, 350_000)
    events = []
    for f in frames:
        events += [(e, p.code, p.start_us, p.frames) for e, p in det.frame(f)]
    events += [(e, p.code, p.start_us, p.frames) for e, p in det.advance(end_ms * 1000)]
    return events


def test_confirmed_at_second_frame_ended_after_release_first_frame_time():
    ev = run([fr(0), fr(45), fr(90)])
    assert ev == [(CONFIRMED, 0xABCDE1, 0, 2), (ENDED, 0xABCDE1, 0, 3)]


def test_gap_longer_than_release_starts_a_new_press():
    ev = run([fr(0), fr(45), fr(500), fr(545)])
    assert [e[0] for e in ev] == [CONFIRMED, ENDED, CONFIRMED, ENDED]
    assert ev[2][2] == 500_000


def test_long_press_is_reported_when_it_becomes_long():
    det = PressDetector(2, 1_500_000, 350_000)
    frames = [fr(i * 45) for i in range(40)]
    ev = run(frames, det)
    assert [e[0] for e in ev] == [CONFIRMED, LONG, ENDED]


def test_lone_frames_are_not_presses_and_codes_do_not_mix():
    ev = run([fr(0, 0x111111), fr(45, 0x222222), fr(2000, 0x111111)])
    assert ev == []


def test_min_frames_is_configurable():
    assert [e[0] for e in run([fr(0)], PressDetector(1))] == [CONFIRMED, ENDED]
    assert run([fr(0), fr(45)], PressDetector(3)) == []
