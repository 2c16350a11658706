"""The LD2410-class mmWave radar over UART: its frames parsed from any byte stream (fuzzed:
noise, split reads, half frames, huge lengths), and the radar end to end through a pty (the
port pyserial opens is a real tty) to journal events, contacts and `doctor`."""
from __future__ import annotations

import os
import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import vocabulary as v
from appliance.clock import Clock
from appliance.config import parse_config
from appliance.journal import Journal
from appliance.pipeline import InputEvent, run
from rf_receiver.ld2410 import BOTH, MOVING, NONE, STATIONARY, FrameParser, Report, frame
from rf_receiver.sensors import GpioSensors


def test_basic_and_engineering_frames_are_read():
    p = FrameParser()
    got = p.feed(frame(MOVING, 85) + frame(STATIONARY, 120, engineering=True) + frame(NONE, 0))
    assert [(r.state, r.distance_cm) for r in got] == [(MOVING, 85), (STATIONARY, 120), (NONE, 0)]
    assert got[0] == Report(MOVING, 85, 60, 85, 40, 85) and p.bad == 0


def test_split_reads_noise_and_broken_frames_resynchronise():
    good = [frame(BOTH, 50 + i) for i in range(20)]
    broken = frame(MOVING, 99)[:-1] + b"\x00"                            # a wrong footer
    ack = b"\xfd\xfc\xfb\xfa\x04\x00\xff\x01\x00\x00\x04\x03\x02\x01"   # a command acknowledgement
    stream = b"\x00\xf4\xf3" + good[0] + broken + ack + b"".join(good[1:10]) + b"\xf4\xf3\xf2\xf1\xff\xff" \
        + b"".join(good[10:])
    p = FrameParser()
    out = []
    rnd = random.Random(1)
    i = 0
    while i < len(stream):                                             # reads of any size
        n = rnd.randint(1, 9)
        out += p.feed(stream[i:i + n])
        i += n
    assert [r.distance_cm for r in out] == [50 + i for i in range(20)]
    assert p.bad > 0 and len(p.buf) < 64


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=80), st.sampled_from([frame(MOVING, 70), frame(NONE, 0),
                                                                  b"\xf4\xf3\xf2\xf1", b"\xf8\xf7\xf6\xf5"])),
                max_size=40))
def test_any_bytes_never_crash_and_never_grow_the_buffer(chunks):
    p = FrameParser()
    for c in chunks:
        for r in p.feed(c):
            assert 0 <= r.state <= BOTH and 0 <= r.distance_cm < 1 << 16
        assert len(p.buf) <= 6 + 64 + 4


CONFIG = """
[device]
id = "box"
state_dir = "{state}"
[rf]
source = "none"
[points.till1]
min_presence_s = 0.3
leave_after_s = 0.6
min_contact_s = 0.5
[sensors.radar]
point = "till1"
kind = "ld2410"
port = "{port}"
threshold_m = 1.2
"""


def test_a_radar_on_a_pty_makes_contacts_within_its_threshold(tmp_path):
    master, slave = os.openpty()
    port = os.ttyname(slave)
    cfg = parse_config(CONFIG.format(state=tmp_path / "state", port=port))
    s = GpioSensors(cfg, Clock())
    assert not s.errors, s.errors

    def send(state: int, cm: int, seconds: float) -> None:            # ten reports a second, as the radar does
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            os.write(master, frame(state, cm))
            time.sleep(0.1)
    send(NONE, 0, 0.5)
    send(MOVING, 90, 1.2)                 # a customer at the till
    send(STATIONARY, 95, 0.2)             # standing still: still present
    send(NONE, 0, 0.2)                    # a dropout shorter than leave_after_s
    send(BOTH, 80, 1.0)
    send(MOVING, 300, 1.5)                # someone passing far away: not presence
    os.write(master, b"\xf4\xf3\xf2\xf1\x40\x00" + os.urandom(50))   # line noise
    send(MOVING, 60, 1.0)                 # the next customer
    send(NONE, 0, 1.5)
    with Journal.in_dir(cfg.device.state_dir) as j:
        j.append_many(s.drain())
        evs = list(j.iter_all([v.SENSOR]))
    s.close()
    os.close(master)
    os.close(slave)
    assert [e.data["present"] for e in evs] == [False, True, False, True, False, True, False]
    assert [e.data.get("distance_m") for e in evs if e.data["present"]] == [0.9, 0.8, 0.6]
    out = run(cfg, [InputEvent.from_journal(e) for e in evs], until=evs[-1].ts + 10_000)
    contacts = [r for k, r in out if k == "contact"]
    assert len(contacts) == 2 and 2.0 <= contacts[0].duration_ms / 1000 <= 3.2


def test_a_missing_port_fails_alone_and_doctor_says_what_to_do(tmp_path, capsys):
    import json
    from appliance.cli.main import main
    text = CONFIG.format(state=tmp_path / "state", port=tmp_path / "ttyNOPE")
    cfg = parse_config(text)
    s = GpioSensors(cfg, Clock())
    assert "radar" in s.errors and "ttyNOPE" in s.errors["radar"]
    s.close()
    (tmp_path / "box.toml").write_text(text)
    main(["--config", str(tmp_path / "box.toml"), "doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["radar radar"]["verdict"] == "fail" and "raspi-config" in checks["radar radar"]["fix"]
