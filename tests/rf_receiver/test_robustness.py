"""Generated signals: jitter, units 150–600 µs, noise between and inside frames,
truncated frames, two remotes interleaved, long presses; no press from noise."""
from __future__ import annotations

import os
import random

import pytest

from rf_receiver.cli import decode_train
from rf_receiver.synthetic import RC, frame, insert_noise, merge, noise, press

LONG_US = 1_500_000
CODE = 0xA5C3E1


@pytest.mark.parametrize("unit", [150, 200, 275, 350, 450, 600])
@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.2, 0.25])
def test_ev1527_any_unit_and_jitter(unit, jitter):
    for seed in range(3):
        got = decode_train(press(CODE, 24, "rc-switch-1", unit, repeats=6, jitter=jitter, seed=seed), 2, LONG_US)
        assert [(p.protocol, p.code) for p in got] == [("EV1527", CODE)], (unit, jitter, seed)
        assert got[0].frames >= 5 and abs(got[0].unit_us - unit) < 0.1 * unit


@pytest.mark.parametrize("timing,unit", [(t, u) for t in ("rc-switch-2", "rc-switch-6") for u in (150, 350, 600)]
                         + [("rc-switch-4", u) for u in (220, 350, 600)])
def test_rc_switch_protocols_with_20_percent_jitter(timing, unit):
    # a frame must end in a space of at least 1 ms (the receiver's one test per edge):
    # rc-switch 4's 6-unit sync, 20 % short, needs a unit of about 210 µs (its own is 380)
    for seed in range(3):
        got = decode_train(press(0x5C3E1, 20, timing, unit, jitter=0.2, seed=seed), 2, LONG_US)
        assert [(p.protocol, p.code) for p in got] == [(timing, 0x5C3E1)]


@pytest.mark.parametrize("timing,unit", [("rc-switch-3", 100), ("rc-switch-3", 150), ("rc-switch-5", 300),
                                         ("rc-switch-5", 500), ("rc-switch-5", 600)])
def test_rc_switch_3_and_5_with_10_percent_jitter(timing, unit):
    # rc-switch 3 and 5 are the same waveform at different units: the first of them names it
    for seed in range(3):
        got = decode_train(press(0x5C3E1, 20, timing, unit, jitter=0.1, seed=seed), 2, LONG_US)
        assert [p.code for p in got] == [0x5C3E1] and got[0].protocol in ("rc-switch-3", "rc-switch-5")


def test_pt2262_tristate_gets_its_own_label():
    code = int("01" "01" "11" "00" "01" "01" "00" "00" "00" "00" "11" "11", 2)  # tri-state: no "10" pair
    [p] = decode_train(press(code, 24, "rc-switch-1", 420, seed=1), 2, LONG_US)
    assert (p.protocol, p.remote, p.button) == ("PT2262", f"{code >> 8:04x}", code & 0xFF)


def test_noise_between_frames():
    rnd = random.Random(5)
    t = RC["rc-switch-1"]
    train = [(0, 30_000)] + noise(80_000, seed=1)
    for i in range(6):
        train += [(1, 350), (0, 31 * 350)] if i == 0 else []
        train += frame(CODE, 24, t, 350, rnd, 0.05)
        if i % 2:
            train += noise(rnd.randint(5_000, 40_000), seed=i)
    train += noise(200_000, seed=9)
    got = decode_train(merge(train), 2, LONG_US)
    assert [(p.protocol, p.code) for p in got] == [("EV1527", CODE)]


def test_noise_inside_frames_loses_frames_not_the_press():
    rnd = random.Random(11)
    train = insert_noise(press(CODE, 24, "rc-switch-1", 330, repeats=10, jitter=0.05, seed=2), rnd, 6)
    got = decode_train(train, 2, LONG_US)
    assert [(p.protocol, p.code) for p in got] == [("EV1527", CODE)]
    assert 2 <= got[0].frames < 10


def test_truncated_frames_never_give_another_code():
    rnd = random.Random(3)
    t = RC["rc-switch-1"]
    train = [(0, 30_000)]
    for cut in (10, 30, 47):            # three frames cut short, each followed by silence
        f = frame(CODE, 24, t, 350, rnd)
        train += f[:cut] + [(0, 30_000)]
    assert decode_train(merge(train), 2, LONG_US) == []
    train += press(CODE, 24, "rc-switch-1", 350, repeats=4, seed=4)
    assert [p.code for p in decode_train(merge(train), 2, LONG_US)] == [CODE]


def test_two_remotes_interleaved():
    rnd = random.Random(8)
    t = RC["rc-switch-1"]
    a, b = 0x12345A, 0xABCDE3
    train = [(0, 20_000), (1, 300), (0, 300 * 31)]
    for _ in range(8):
        train += frame(a, 24, t, 300, rnd, 0.05)
        train += frame(b, 24, t, 410, rnd, 0.05)
    train += [(0, 60_000)]
    got = decode_train(merge(train), 2, LONG_US)
    assert sorted(p.code for p in got) == sorted([a, b])
    assert all(p.frames >= 6 for p in got)


def test_long_press_and_short_press():
    held = press(CODE, 24, "rc-switch-1", 350, repeats=40, seed=1)     # 40 × 45 ms ≈ 1.8 s
    quick = press(CODE, 24, "rc-switch-1", 350, repeats=5, seed=2)
    got = decode_train(merge(held + [(0, 500_000)] + quick), 2, LONG_US)
    assert [(p.code, p.kind) for p in got] == [(CODE, "long"), (CODE, "short")]


def test_a_single_frame_is_no_press():
    assert decode_train(press(CODE, 24, "rc-switch-1", 350, repeats=1, seed=1), 2, LONG_US) == []
    assert len(decode_train(press(CODE, 24, "rc-switch-1", 350, repeats=1, seed=1), 1, LONG_US)) == 1


def test_ten_minutes_of_receiver_noise_give_no_press():
    for seed in range(3 if os.environ.get("APPLIANCE_SOAK") else 1):
        assert decode_train(noise(600_000_000, seed=seed), 2, LONG_US) == []


def test_a_remote_declared_in_the_config_decodes(tmp_path):
    """[rf.decoders.<name>]: a fixed-timing PWM remote with a sync mark, as data."""
    from appliance.config import parse_config
    from rf_receiver.decoders.declared import from_config
    cfg = parse_config('[points.p]\n[rf.decoders.gate]\nmodulation = "pwm"\nshort_us = 400\nlong_us = 1200\n'
                       'gap_us = 5000\nbits = 16\nsync_us = 4000\nbutton_bits = 4\n')
    code = 0xB2C7
    train = [(0, 20_000)]
    for _ in range(4):
        train += [(1, 4000), (0, 800)]
        for i in range(15, -1, -1):
            train += [(1, 1200 if (code >> i) & 1 else 400), (0, 800)]
        train[-1] = (0, 12_000)
    got = decode_train(merge(train), 2, LONG_US, from_config(cfg.rf.decoders))
    assert [(p.protocol, p.code, p.remote, p.button) for p in got] == [("gate", code, "b2c", 7)]
    assert decode_train(merge(train), 2, LONG_US) == []   # unknown without the declaration
