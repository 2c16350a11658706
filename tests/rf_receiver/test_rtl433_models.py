"""The rtl_433 source names a remote as the GPIO path does: for every fixed-code model in
the real recordings, rtl_433's own message maps to the remote and button our decoder reads
from the same recording's pulses."""
from __future__ import annotations

from collections import defaultdict

import pytest

from rf_receiver.cli import decode_train
from rf_receiver.sources.rtl433 import frame_from_message
from rf_receiver.sources.rtl433_models import MODELS
from tests.rf_receiver.conftest import corpus_or_empty

POSITIVES = [r for r in corpus_or_empty() if r["role"] == "positive"]


def test_every_model_in_the_recordings_maps_to_the_gpio_paths_remote():
    checked: dict[str, int] = defaultdict(int)
    for rec in POSITIVES:
        gpio = {(p.protocol, p.remote, p.button)
                for p in decode_train([tuple(x) for x in rec["pulses"]], 2, 3_000_000)}
        for msg in rec["expected"]:
            f = frame_from_message(msg, 0)
            assert f is not None, (rec["id"], msg)
            if gpio:
                assert (f.protocol, f.remote, f.button) in gpio, (rec["id"], msg, f, gpio)
                checked[msg["model"]] += 1
    assert set(checked) == {"Generic-Remote", "Smoke-GS558", "Chuango-Security", "Waveman-Switch",
                            "Brennenstuhl-RCS2044", "Silvercrest-Remote", "Cardin-S466", "X10-RF"}
    assert sum(checked.values()) >= 150


@pytest.mark.parametrize("msg", [
    {"model": "Waveman-Switch", "id": "Z", "channel": 1, "button": 1, "state": "ON"},
    {"model": "Waveman-Switch", "id": "A", "channel": 9, "button": 1, "state": "ON"},
    {"model": "Brennenstuhl-RCS2044", "id": 40, "key": "A", "state": "ON"},
    {"model": "Brennenstuhl-RCS2044", "id": 1, "key": "Q", "state": "ON"},
    {"model": "Cardin-S466", "dipswitch": "+-+", "rbutton": "11R"},
    {"model": "Cardin-S466", "dipswitch": "+-+-+-+-x", "rbutton": "11R"},
    {"model": "Silvercrest-Remote", "button": 16},
    {"model": "Kerui-Security", "id": True, "cmd": 1},
    {"model": "X10-RF", "data": 2 ** 40},
    {"model": "Generic-Remote", "id": "0x1z", "cmd": 1},
])
def test_odd_messages_fail_alone(msg):
    assert frame_from_message(msg, 0) is None


def test_kerui_maps_like_ev1527():
    f = frame_from_message({"model": "Kerui-Security", "id": "0xc0ffe", "cmd": 10, "state": "motion"}, 0)
    assert (f.protocol, f.remote, f.button) == ("EV1527", "c0ffe", 10)
    assert len(MODELS) == 9
