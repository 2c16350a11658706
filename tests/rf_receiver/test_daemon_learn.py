"""The rf daemon end to end (pulse replay -> journal) and learn mode writing the config."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from appliance.config import load_config
from appliance.journal import Journal
from rf_receiver.synthetic import merge, press
from tests.conftest import ROOT, make_config, run_cli

REMOTE = 0xC0FFE            # an EV1527 id: code = id << 4 | button


def code(button: int) -> int:
    return REMOTE << 4 | button


def pulse_file(path, trains):
    path.write_text("".join(json.dumps({"pulses": [list(p) for p in t]}) + "\n" for t in trains))
    return path


RF_CONFIG = f"""
[remotes.{REMOTE:05x}]
point = "till1"
buttons = {{ 1 = {{ meaning = "rating", value = 1 }}, 5 = {{ meaning = "rating", value = 5 }}, 8 = {{ meaning = "call" }}, 2 = {{ meaning = "presence", state = "arrived" }} }}
"""


def test_rf_daemon_journals_mapped_presses_and_unknown_remotes(tmp_path):
    cfg_path = make_config(tmp_path, RF_CONFIG)
    trains = [merge(press(code(5), 24, unit=350, repeats=5, seed=1)
                    + press(0xBEEF17, 24, unit=420, repeats=4, seed=2)          # unknown remote
                    + press(code(8), 24, unit=350, repeats=90, seed=3)          # held 3 s: a complaint
                    + press(code(2), 24, unit=350, repeats=3, seed=4)
                    + [(0, 400_000)])]
    pulses = pulse_file(tmp_path / "p.jsonl", trains)
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg_path), "run", "rf",
                             "--pulses", str(pulses)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    rows = []
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if (tmp_path / "state" / "journal.db").exists():
            with Journal(tmp_path / "state" / "journal.db") as j:
                rows = j.read(0)
            if len(rows) >= 7:
                break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.stderr.read()
    released = [r for r in rows if r.type == "press_released"]
    rows = [r for r in rows if r.type != "press_released"]
    got = [(r.type, r.point, {k: r.data[k] for k in ("value", "press", "state", "remote") if k in r.data}) for r in rows]
    assert got == [("rating", "till1", {"value": 5, "remote": f"{REMOTE:05x}"}),
                   ("unknown_remote", None, {"remote": "beef1"}),
                   ("call", "till1", {"press": "long", "remote": f"{REMOTE:05x}"}),
                   ("presence", "till1", {"state": "arrived", "remote": f"{REMOTE:05x}"})]
    # each configured button's release, with how long it was held (90 frames of ~45 ms: ~4 s)
    assert [(r.data["button"], r.data["long"]) for r in released] == [(5, False), (8, True), (2, False)]
    held = [r.data["held_ms"] for r in released]
    assert 150 < held[0] < 300 and 3_800 < held[1] < 4_300 and 80 < held[2] < 200, held
    assert released[1].ts - rows[2].ts >= held[1] - 1          # stamped when it was let go
    assert all(r.source == "rf" and r.mono and r.boot for r in rows)
    assert rows[0].data["frames"] >= 2 and rows[1].data["protocol"] == "EV1527"


def test_learn_writes_the_new_button_into_the_config_keeping_comments(tmp_path):
    cfg_path = make_config(tmp_path, "\n# the shop's remotes are learned below\n")
    before = cfg_path.read_text()
    once = pulse_file(tmp_path / "once.jsonl", [press(code(3), 24, unit=300, repeats=4, seed=5)])
    r = run_cli("--config", str(cfg_path), "rf", "learn", "--pulses", str(once), "--fast",
                "--point", "till1", "--meaning", "rating", "--value", "5", "--timeout", "20")
    assert r.returncode == 1 and "heard only once" in r.stderr        # a code heard once is refused
    assert "press the same button again" in r.stdout and cfg_path.read_text() == before
    pulses = pulse_file(tmp_path / "p.jsonl", [press(code(3), 24, unit=300, repeats=4, seed=5, tail_us=600_000),
                                               press(code(3), 24, unit=300, repeats=5, seed=6)])
    r = run_cli("--config", str(cfg_path), "rf", "learn", "--pulses", str(pulses), "--fast",
                "--point", "till1", "--meaning", "rating", "--value", "5", "--timeout", "20")
    assert r.returncode == 0, r.stderr
    assert f"NEW                remote {REMOTE:05x} button 3  (EV1527, press 1: 4 frames, unit 300 µs" in r.stdout
    assert "press 2: 5 frames" in r.stdout and "timing error 0 %" in r.stdout, r.stdout
    assert "written to" in r.stdout
    text = cfg_path.read_text()
    assert text.startswith(before) and "# the shop's remotes are learned below" in text
    cfg = load_config(cfg_path)
    assert cfg.remotes[f"{REMOTE:05x}"].point == "till1"
    assert cfg.remotes[f"{REMOTE:05x}"].buttons[3].value == 5
    again = run_cli("--config", str(cfg_path), "rf", "learn", "--pulses", str(pulses), "--fast", "--timeout", "20")
    assert "already configured" in again.stdout


def test_learn_refuses_a_meaning_that_does_not_validate(tmp_path):
    cfg_path = make_config(tmp_path)
    before = cfg_path.read_text()
    pulses = pulse_file(tmp_path / "p.jsonl", [press(code(3), 24, unit=300, repeats=4, seed=5, tail_us=600_000),
                                               press(code(3), 24, unit=300, repeats=4, seed=6)])
    r = run_cli("--config", str(cfg_path), "rf", "learn", "--pulses", str(pulses), "--fast",
                "--point", "till1", "--meaning", "rating", "--value", "9", "--timeout", "20")
    assert r.returncode == 2 and "is not on the rating scale" in r.stderr
    assert cfg_path.read_text() == before


def test_listen_prints_presses_with_their_meaning(tmp_path):
    cfg_path = make_config(tmp_path, RF_CONFIG)
    pulses = pulse_file(tmp_path / "p.jsonl", [press(code(1), 24, unit=300, repeats=4, seed=5)
                                               + press(0xBEEF17, 24, unit=420, repeats=4, seed=2)])
    r = run_cli("--config", str(cfg_path), "rf", "listen", "--pulses", str(pulses), "--fast", "--timeout", "20")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["remote"], x["known"], x.get("meaning")) for x in lines] == [
        (f"{REMOTE:05x}", True, "rating"), ("beef1", False, None)]


def test_rf_decode_reports_bad_lines(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"pulses": [[1, 350], [0, "x"]]}\nnot json\n{"other": 1}\n')
    r = run_cli("rf", "decode", "--pulses", str(f))
    assert r.returncode == 1
    assert "bad.jsonl:1: pulses[1]" in r.stderr and "bad.jsonl:2: not valid JSON" in r.stderr
    assert 'bad.jsonl:3: expected an object with a "pulses" key' in r.stderr
