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
