"""Generated transmissions for what real receivers and remotes do: one press per
transmission (whatever timing names a frame), long presses, stray codes, and framing a
cheap receiver disturbs (a spike before a burst, a short silence after the last frame,
gap-framed remotes, a first frame whose head the receiver's gain ate)."""
from __future__ import annotations

import random

import pytest

from rf_receiver.cli import decode_train
from rf_receiver.press import CONFIRMED, ENDED, LONG, PressDetector
from rf_receiver.receiver import Receiver
from rf_receiver.synthetic import RC, frame, gap_press, insert_noise, merge, noise, press

CODE = 0xA5C3E1           # an EV1527 code: id a5c3e, button 1


def presses(train, min_frames=2, long_us=3_000_000):
    return [(p.protocol, p.code, p.bits, p.frames) for p in decode_train(merge(train), min_frames, long_us)]


def events(train, min_frames=2, long_us=1_500_000):
    rx, det = Receiver(), PressDetector(min_frames, long_us)
    out = []
    for f in rx.decode_pulses(merge(train)):
        out += det.frame(f)
    return out + det.finish()


@pytest.mark.parametrize("unit", [300, 400, 500, 600])
def test_a_protocol_5_transmission_is_one_press_named_protocol_5(unit):
    # rc-switch 3 and 5 are nearly one waveform at units five times apart: the better fit names it
    for seed in range(4):
        assert presses(press(0x5C3E1, 20, "rc-switch-5", unit, jitter=0.1, seed=seed)) == [
            ("rc-switch-5", 0x5C3E1, 20, 6)]
        if unit >= 400:           # rc-switch 3 at a unit of 80 µs and more
            assert presses(press(0x5C3E1, 20, "rc-switch-3", unit / 5, jitter=0.05, seed=seed)) == [
                ("rc-switch-3", 0x5C3E1, 20, 6)]


def test_a_remote_sending_its_code_in_two_waveforms_is_one_press():
    # some remotes send the frames of one press at two timings (here rc-switch 1, then 2)
    rnd = random.Random(1)
    train = [(0, 20_000), (1, 350), (0, 31 * 350)]
    for _ in range(4):
        train += frame(0x5C3E1, 20, RC["rc-switch-1"], 350, rnd, 0.05)
    for _ in range(2):
        train += frame(0x5C3E1, 20, RC["rc-switch-2"], 450, rnd, 0.05)
    train.append((0, 50_000))
    assert presses(train) == [("rc-switch-1", 0x5C3E1, 20, 6)]       # named by most of its frames


def test_a_long_press_is_one_press_with_its_hold_time():
    # held 4 s: noise spikes in a third of the frames, three frames with a bit error, and
    # 250 ms where nothing came through
    rnd = random.Random(7)
    t1 = RC["rc-switch-1"]
    train = [(0, 20_000), (1, 350), (0, 31 * 350)]
    for i in range(92):
        if 40 <= i < 45:
            train += [(0, 50_000)]                                   # lost frames
            continue
        code = CODE ^ (1 << rnd.randrange(24)) if i in (10, 30, 60) else CODE
        f = frame(code, 24, t1, 350, rnd, 0.08)
        train += insert_noise(f, rnd, 2) if rnd.random() < 0.33 else f
    train.append((0, 400_000))
    evs = events(train)
    assert [(e, p.code) for e, p in evs] == [(CONFIRMED, CODE), (LONG, CODE), (ENDED, CODE)]
    p = evs[-1][1]
    assert p.long and p.protocol == "EV1527" and 3_900_000 < p.held_us < 4_200_000
    assert 50 < p.frames < 87


def test_a_code_seen_once_among_many_frames_of_another_is_never_a_press():
    rnd = random.Random(3)
    t1 = RC["rc-switch-1"]
    train = [(0, 20_000), (1, 350), (0, 31 * 350)]
    for i in range(20):
        code = {5: CODE ^ 0x10, 12: 0x3C3C3C}.get(i, CODE)            # a bit error, another remote
        train += frame(code, 24, t1, 350, rnd, 0.05)
    train.append((0, 50_000))
    # even where one frame would be a press (min_frames 1)
    assert [c for _, c, _, _ in presses(train, min_frames=1)] == [CODE]
    # a bit error twice among many frames is still the press's bit errors
    train2 = [(0, 20_000), (1, 350), (0, 31 * 350)]
    for i in range(20):
        train2 += frame(CODE ^ 0x100 if i in (6, 14) else CODE, 24, t1, 350, rnd, 0.05)
    train2.append((0, 50_000))
    assert [c for _, c, _, _ in presses(train2)] == [CODE]
    # a second remote pressed right after the first is a press of its own
    train3 = press(CODE, 24, seed=1) + press(CODE ^ 0x3, 24, seed=2, repeats=3)
    assert [c for _, c, _, _ in presses(train3)] == [CODE, CODE ^ 0x3]


@pytest.mark.parametrize("spike_us,space_us", [(40, 300), (80, 900), (120, 150)])
def test_a_noise_spike_just_before_a_burst(spike_us, space_us):
    # no lead-in sync: the first frame's start is the silence before it, a spike just before
    rnd = random.Random(spike_us)
    train = [(0, 30_000), (1, spike_us), (0, space_us)]
    for _ in range(2):                                               # only two frames: both needed
        train += frame(CODE, 24, RC["rc-switch-1"], 350, rnd, 0.05)
    train.append((0, 50_000))
    assert presses(train) == [("EV1527", CODE, 24, 2)]


@pytest.mark.parametrize("units", [5, 10, 14, 20])
def test_silence_after_the_last_frame_that_looks_like_another_sync(units):
    # the receiver's gain comes back (noise) after a few units instead of 31: that space
    # is another protocol's sync (rc-switch 4's 6, 2's 10, 5's 14) — the frame still counts
    rnd = random.Random(units)
    for code, bits, name in ((CODE, 24, "EV1527"), (0x5C3E1, 20, "rc-switch-1")):
        train = [(0, 20_000), (1, 350), (0, 31 * 350)]
        train += frame(code, bits, RC["rc-switch-1"], 350, rnd, 0.05)
        last = frame(code, bits, RC["rc-switch-1"], 350, rnd, 0.05)
        last[-1] = (0, units * 350)
        train += last + noise(300_000, seed=units, min_us=60)
        assert presses(train) == [(name, code, bits, 2)], (units, name)


@pytest.mark.parametrize("unit,gap_units,jitter", [(250, 8, 0.1), (350, 6, 0.1), (400, 12, 0.15), (500, 20, 0.05),
                                                   (300, 34, 0.05)])
def test_gap_framed_remotes_without_a_sync_mark(unit, gap_units, jitter):
    for code, bits in ((0xA5C3F0, 24), (0xA5C3F1, 24), (0x9E35, 16)):
        got = presses(gap_press(code, bits, unit, repeats=5, gap_units=gap_units, jitter=jitter, seed=unit))
        assert [(p, c, b) for p, c, b, _ in got] == [("pwm-gap", code, bits)], (code, got)
        assert got[0][3] >= 4
    # rc-switch 1:2 symbols too
    got = presses(gap_press(0xA5C3F0, 24, unit, repeats=4, gap_units=gap_units, symbols=(1, 2), seed=1))
    assert [(p, c, b) for p, c, b, _ in got] == [("pwm-gap", 0xA5C3F0, 24)]


@pytest.mark.parametrize("eaten", [2, 5, 9])
def test_a_first_frame_whose_head_the_receivers_gain_ate(eaten):
    # the receiver's gain settles during the first frame: noise, then its last bits
    rnd = random.Random(eaten)
    t1 = RC["rc-switch-1"]
    first = frame(CODE, 24, t1, 350, rnd, 0.05)[2 * eaten:]
    train = [(0, 20_000)] + noise(40_000, seed=eaten, min_us=40) + first
    train += frame(CODE, 24, t1, 350, rnd, 0.05) + [(0, 50_000)]
    evs = events(train)
    assert [(e, p.code, p.frames) for e, p in evs] == [(CONFIRMED, CODE, 2), (ENDED, CODE, 2)]
    # confirmed by the first whole frame, the press starting at the partial one
    frames = Receiver().decode_pulses(merge(train))
    assert [f.partial for f in frames] == [True, False]
    assert evs[0][1].start_us == frames[0].start_us and 24 - eaten - 1 <= frames[0].bits <= 24 - eaten
    # a partial frame alone is never a press
    assert presses([(0, 20_000)] + noise(40_000, seed=1) + first + [(0, 50_000)], min_frames=1) == []


def test_receiver_noise_gives_no_frame():
    assert Receiver().decode_pulses(noise(30_000_000, seed=11)) == []


def test_a_replay_of_recordings_one_after_another_gives_each_frame_once():
    from rf_receiver.service import RfService
    from rf_receiver.sources.replay import ReplaySource
    # recordings put one after another: each ends low and the next starts low
    trains = [press(CODE, 24, seed=s) for s in range(5)]
    whole = Receiver().decode_pulses(merge([r for t in trains for r in t]))
    for chunk in (7, 50, 256):
        got: list = []
        service = RfService(ReplaySource([r for t in trains for r in t], chunk=chunk), PressDetector(),
                            lambda *a: None, on_frame=got.append)
        service.run(lambda: False, 0)
        assert [(f.code, f.start_us) for f in got] == [(f.code, f.start_us) for f in whole], chunk
    assert len(whole) == 30
