"""No deaf radio daemon: a fake ``rtl_433`` first on PATH is killed three times and every
press before and after is journalled; each garbage line it prints is followed by a valid
decode that is journalled; a neighbour's flood of random codes grows the journal by a
bounded amount while a real press still lands."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from appliance.errors import JournalError
from appliance.journal import Journal
from rf_receiver.sources.rtl433 import frame_from_message
from tests.conftest import ROOT, make_config

GARBAGE = [b"[1, 2, 3]", b'{"model": ["Generic-Remote"], "id": 1, "cmd": 1}',
           b'{"model": "Generic-Remote", "id": 1e400, "cmd": 1}', b"[" * 5000 + b"]" * 5000,
           b"\xff\xfe\x80 not utf-8", b'"a string"', b'{"model": "Generic-Remote", "id": -1, "cmd": 1e30}',
           b'{"model": "Generic-Remote", "id": 99999999999999999999999, "cmd": 1}']

FAKE = """#!{python}
import json, os, random, sys, time
state = os.environ["FAKE_RTL_DIR"]
life = len(os.listdir(state))
open(os.path.join(state, str(os.getpid())), "w").write(str(life))
plan = json.load(open(os.environ["FAKE_RTL_PLAN"]))
out = sys.stdout.buffer
def press(msg):
    for _ in range(3):                              # a remote repeats its frame
        out.write(json.dumps(msg).encode() + b"\\n")
        out.flush()
        time.sleep(0.02)
    time.sleep(0.5)                                 # released
if plan["mode"] == "lives":
    for garbage, msg in zip(plan["garbage"], plan["lives"][min(life, len(plan["lives"]) - 1)]):
        out.write(garbage.encode("latin-1") + b"\\n")
        press(msg)
else:                                               # a flood of random codes, one real press inside
    rnd, end = random.Random(life), time.monotonic() + plan["seconds"]
    n = 0
    while time.monotonic() < end:
        for _ in range(100):
            line = json.dumps({{"model": "Generic-Remote", "id": rnd.randrange(1 << 16), "cmd": rnd.randrange(256)}})
            out.write(line.encode() + b"\\n" + line.encode() + b"\\n")
        out.flush()
        n += 1
        if n == 50:
            press(plan["real"])
        time.sleep(0.05)
while True:
    time.sleep(1)
"""


def generic(id_: int, cmd: int) -> tuple[dict, str, int]:
    msg = {"model": "Generic-Remote", "id": id_, "cmd": cmd}
    f = frame_from_message(msg, 0)
    assert f is not None and f.button is not None
    return msg, f.remote, f.button


def fake_rtl_433(tmp_path: Path, plan: dict) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "rtl_433"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(0o755)
    (tmp_path / "lives").mkdir()
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_RTL_DIR=str(tmp_path / "lives"),
                FAKE_RTL_PLAN=str(tmp_path / "plan.json"))


def remotes_toml(presses: list[tuple[dict, str, int]]) -> str:
    by_remote: dict[str, set[int]] = {}
    for _, remote, button in presses:
        by_remote.setdefault(remote, set()).add(button)
    out = '\n[rf]\nsource = "rtl_433"\n'
    for remote, buttons in by_remote.items():
        spec = ", ".join(f'{b} = {{ meaning = "rating", value = 1 }}' for b in sorted(buttons))
        out += f'\n[remotes.{remote}]\npoint = "till2"\nbuttons = {{ {spec} }}\n'
    return out


def ratings(journal: Path) -> list[tuple[str, int]]:
    try:
        with Journal(journal, readonly=True) as j:
            return [(e.data["remote"], e.data["button"]) for e in j.iter_all(["rating"])]
    except JournalError:                                # not there yet, or being created
        return []


def wait_for(pred, limit: float) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_rtl_433_killed_three_times_and_garbage_lines_lose_no_press(tmp_path):
    lives = [[generic(0x100 + life * 16 + g, 0x40 + g) for g in range(len(GARBAGE))] for life in range(4)]
    plan = {"mode": "lives", "garbage": [g.decode("latin-1") for g in GARBAGE],
            "lives": [[m for m, _, _ in life] for life in lives]}
    env = fake_rtl_433(tmp_path, plan)
    cfg = make_config(tmp_path, remotes_toml([p for life in lives for p in life]))
    journal = tmp_path / "state" / "journal.db"
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg), "run", "rf"], cwd=ROOT,
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        for life in range(4):
            want = [(r, b) for _, r, b in lives[life]]
            assert wait_for(lambda w=want: all(x in ratings(journal) for x in w), 40), (life, ratings(journal))
            if life < 3:
                pid = next(int(p.name) for p in (tmp_path / "lives").iterdir() if p.read_text() == str(life))
                os.kill(pid, signal.SIGKILL)                         # the dongle's process dies
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
    assert rc == 0, proc.stderr.read()
    got = ratings(journal)
    assert sorted(got) == sorted((r, b) for life in lives for _, r, b in life)      # every press once
    with Journal(journal) as j:
        states = [(e.data["state"], e.data["restarts"]) for e in j.iter_all(["radio_state"])]
    assert states == [("lost", 1), ("ok", 1), ("lost", 2), ("ok", 2), ("lost", 3), ("ok", 3)]


def test_a_flood_of_unknown_codes_grows_the_journal_by_a_bounded_amount(tmp_path):
    real = generic(0x0BEE, 0x21)
    env = fake_rtl_433(tmp_path, {"mode": "flood", "seconds": 10, "real": real[0]})
    cfg = make_config(tmp_path, remotes_toml([real]))
    journal = tmp_path / "state" / "journal.db"
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg), "run", "rf"], cwd=ROOT,
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(12)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
    assert rc == 0, proc.stderr.read()
    assert ratings(journal) == [(real[1], real[2])]                    # the real press landed
    with Journal(journal) as j:
        unknown = j.count("unknown_remote")
        summaries = [e.data for e in j.iter_all(["unknown_remotes"])]
        size = j.size_bytes()
    assert unknown <= 10                                               # the first codes of the window only
    assert size < 400_000, size                                        # 3.8 MB in 10 s before
    [summary] = summaries                                              # the rest counted in one summary
    assert summary["presses"] > 5_000 and summary["codes"] > 5_000
