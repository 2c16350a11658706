"""`rf learn` for every protocol family: two separate presses of a button learn it, and
the config then maps that remote and button (generic codes included: a remote of one
button, 0)."""
from __future__ import annotations

import json

import pytest

from appliance.config import load_config
from rf_receiver.decoders import cardin, x10
from rf_receiver.synthetic import flex_press, gap_press, press
from tests.conftest import make_config, run_cli

TRISTATE = int("01" "01" "11" "00" "01" "01" "00" "00" "00" "00" "11" "11", 2)
SILVERCREST = 0x83D9_0FCC

FAMILIES = {
    # family: (one press, remote, button)
    "EV1527": (lambda s: press(0xC0FFE3, 24, "rc-switch-1", 320, repeats=4, seed=s), "c0ffe", 3),
    "PT2262": (lambda s: press(TRISTATE, 24, "rc-switch-1", 420, repeats=4, seed=s), f"{TRISTATE >> 8:04x}",
               TRISTATE & 0xFF),
    "Silvercrest": (lambda s: press(SILVERCREST, 32, "rc-switch-1", 260, repeats=4, seed=s), "83d90f", 0xCC),
    "rc-switch-2": (lambda s: press(0x5C3E1, 20, "rc-switch-2", 650, repeats=4, seed=s), "5c3e1", 0),
    "rc-switch-3": (lambda s: press(0x5C3E1, 20, "rc-switch-3", 100, repeats=4, seed=s), "5c3e1", 0),
    "rc-switch-4": (lambda s: press(0x5C3E1, 20, "rc-switch-4", 380, repeats=4, seed=s), "5c3e1", 0),
    "rc-switch-5": (lambda s: press(0x5C3E1, 20, "rc-switch-5", 500, repeats=4, seed=s), "5c3e1", 0),
    "rc-switch-6": (lambda s: press(0x5C3E1, 20, "rc-switch-6", 450, repeats=4, seed=s), "5c3e1", 0),
    "Cardin": (lambda s: flex_press(0x5256F3, cardin.TIMING, repeats=4, seed=s), "5256f", 3),
    "X10": (lambda s: flex_press(0x708F00FF, x10.TIMING, repeats=4, seed=s), "70", 0),
    "pwm-gap": (lambda s: gap_press(0xA5C3F0, 24, 350, repeats=4, gap_units=10, seed=s), "a5c3f0", 0),
    "declared": (lambda s: gap_press(0xB00B5, 20, 400, repeats=4, gap_units=20, seed=s), "b00b", 5),
}
DECLARED = """
[rf.decoders.bell]
modulation = "pwm"
short_us = 400
long_us = 1200
gap_us = 5000
bits = 20
button_bits = 4
"""


@pytest.mark.parametrize("family", list(FAMILIES))
def test_learn_every_family(tmp_path, family):
    make, remote, button = FAMILIES[family]
    cfg_path = make_config(tmp_path, DECLARED if family == "declared" else "")
    trains = [make(1)[:-1] + [(0, 600_000)], make(2)]           # two presses, apart
    pulses = tmp_path / "p.jsonl"
    pulses.write_text("".join(json.dumps({"pulses": [list(p) for p in t]}) + "\n" for t in trains))
    r = run_cli("--config", str(cfg_path), "rf", "learn", "--pulses", str(pulses), "--fast",
                "--point", "till1", "--meaning", "rating", "--value", "3", "--timeout", "20")
    assert r.returncode == 0, (r.stdout, r.stderr)
    name = "bell" if family == "declared" else family
    assert f"remote {remote} button {button}  ({name}, press 1:" in r.stdout, r.stdout
    assert "press 2:" in r.stdout and "written to" in r.stdout
    cfg = load_config(cfg_path)
    assert cfg.remotes[remote].buttons[button].value == 3
