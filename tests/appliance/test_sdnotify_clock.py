"""systemd notify over a real AF_UNIX datagram socket; the clock's pure parts."""
from __future__ import annotations

import socket

from appliance.clock import Clock, SimClock, corrected_ts
from appliance.sdnotify import Notifier


def test_notify_reaches_the_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
        assert n.watchdog_s == 4.0 and n.ping_interval_s == 2.0
        assert n.ready("core: 2 points") and n.watchdog()
        assert srv.recv(100) == b"READY=1\nSTATUS=core: 2 points"
        assert srv.recv(100) == b"WATCHDOG=1"


def test_no_socket_is_a_no_op():
    n = Notifier({})
    assert not n.ready() and n.watchdog_s is None


def test_correction_and_stamps():
    assert corrected_ts(5_000_000_000, 1_795_165_200_000_000_000) == 1_795_165_205_000
    st = Clock().now()
    assert st.mono > 0 and len(st.boot) >= 8 and isinstance(st.synced, bool)
    sim = SimClock(1_000_000, 1000.0, epoch_ms=0)
    assert sim.now_ms() > 1_000_000 + 10**12


def test_core_daemon_notifies_ready_and_pets_the_watchdog(tmp_path, config_path):
    import os
    import signal
    import subprocess
    import sys
    from tests.conftest import ROOT
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        srv.settimeout(20)
        env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
        core = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(config_path),
                                 "run", "core"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
        try:
            got = [srv.recv(200) for _ in range(3)]
        finally:
            core.send_signal(signal.SIGTERM)
            assert core.wait(20) == 0
        assert got[0].startswith(b"READY=1") and got[1:] == [b"WATCHDOG=1", b"WATCHDOG=1"]
        srv.settimeout(5)
        while (msg := srv.recv(200)) != b"STOPPING=1":
            assert msg == b"WATCHDOG=1"


def test_clock_sync_corrects_this_boots_events(tmp_path, monkeypatch):
    import time
    from appliance.clock import boot_id
    from appliance.core_daemon import correct_clock
    from appliance.journal import Journal, NewEvent
    monkeypatch.setenv("APPLIANCE_ASSUME_SYNCED", "1")
    with Journal(tmp_path / "j.db") as j:
        mono = time.monotonic_ns() - 5_000_000_000          # taken 5 s ago, when the clock said 1970
        j.append(NewEvent("rating", 1_000, {"value": 1}, "p", mono=mono, boot=boot_id(), synced=False))
        assert correct_clock(j, Clock()) == 1
        [row] = j.read(0)
    assert row.synced and row.ts_raw == 1_000
    assert abs(row.ts - (time.time_ns() // 1_000_000 - 5_000)) < 2_000
