"""The one daemon loop against a real notify socket bound by the test: READY, STATUS,
WATCHDOG (only while the loop turns and the daemon is healthy), STOPPING — in process for
the loop itself, and for every daemon as systemd starts it (``appliancectl run X``)."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from appliance.daemon import Job, Notifier, run_loop
from appliance.journal import Journal
from appliance.logs import fields
from tests.conftest import ROOT, make_config


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.got: list[tuple[float, str]] = []

    def recv(self, timeout: float) -> str | None:
        self.sock.settimeout(timeout)
        try:
            msg = self.sock.recv(1000).decode()
        except socket.timeout:
            return None
        self.got.append((time.monotonic(), msg))
        return msg

    def collect(self, seconds: float) -> list[str]:
        end = time.monotonic() + seconds
        out = []
        while (left := end - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is not None:
                out.append(msg)
        return out

    def until(self, pred, timeout: float) -> list[str]:
        end = time.monotonic() + timeout
        out = []
        while time.monotonic() < end:
            msg = self.recv(end - time.monotonic())
            if msg is None:
                break
            out.append(msg)
            if pred(msg):
                return out
        raise AssertionError(f"not seen within {timeout} s; got {len(out)} others, the last {out[-3:]}")

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path, monkeypatch):
    s = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", s.path)
    yield s
    s.close()


def pings(msgs: list[str]) -> int:
    return sum(1 for m in msgs if m.startswith("WATCHDOG=1"))


# --- the loop in process ------------------------------------------------------------------

def test_notifier_parses_the_watchdog_period():
    n = Notifier({"WATCHDOG_USEC": "4000000"})
    assert n.watchdog_s == 4.0 and n.ping_interval_s == 2.0
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog_s is None   # another process's
    assert Notifier({}).watchdog_s is None and Notifier({}).ping_interval_s == 10.0


def test_no_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier({}).ready()


def test_loop_says_ready_status_watchdog_and_stopping(notify):
    stop = threading.Event()
    steps, jobs_run, closed = [], [], []
    loop = threading.Thread(target=run_loop, args=("test", lambda: steps.append(1)), kwargs=dict(
        tick_s=0.01, stop=stop, notifier=Notifier({"WATCHDOG_USEC": "200000"}), ready_status="test: 2 points",
        status=lambda: f"test: {len(steps)} steps", jobs=[Job("j", 0.05, lambda: jobs_run.append(1))],
        on_stop=lambda: closed.append(1)))
    loop.start()
    first = notify.recv(5)
    assert first == "READY=1\nSTATUS=test: 2 points"
    msgs = notify.collect(0.6)
    assert pings(msgs) >= 4
    assert all(m.startswith("WATCHDOG=1\nSTATUS=test: ") for m in msgs)
    stop.set()
    loop.join(5)
    assert notify.collect(0.3)[-1] == "STOPPING=1"
    assert steps and len(jobs_run) >= 5 and closed == [1]


def test_watchdog_stops_while_the_loop_stalls_and_comes_back(notify):
    stop, unstall = threading.Event(), threading.Event()
    state = {"stall": False}

    def step():
        if state["stall"]:
            unstall.wait(10)        # a step that hangs (a lock, a dead device)
            state["stall"] = False

    loop = threading.Thread(target=run_loop, args=("test", step), kwargs=dict(
        tick_s=0.01, stop=stop, notifier=Notifier({"WATCHDOG_USEC": "100000"})))
    loop.start()
    assert notify.recv(5).startswith("READY=1")
    assert pings(notify.collect(0.4)) >= 4
    state["stall"] = True
    notify.collect(0.1)                                   # a ping may be on its way
    assert pings(notify.collect(1.0)) == 0                # stalled: systemd's watchdog would fire
    unstall.set()
    assert pings(notify.collect(0.4)) >= 3                # the loop turns again
    stop.set()
    loop.join(5)


def test_watchdog_is_petted_only_while_healthy(notify):
    stop = threading.Event()
    health = {"ok": True}
    loop = threading.Thread(target=run_loop, args=("test", lambda: None), kwargs=dict(
        tick_s=0.01, stop=stop, notifier=Notifier({"WATCHDOG_USEC": "100000"}), healthy=lambda: health["ok"]))
    loop.start()
    assert notify.recv(5).startswith("READY=1")
    assert pings(notify.collect(0.3)) >= 3
    health["ok"] = False                                  # e.g. the capture thread died
    notify.collect(0.1)
    assert pings(notify.collect(0.8)) == 0
    stop.set()
    loop.join(5)
    assert notify.collect(0.3)[-1] == "STOPPING=1"


def test_a_failing_step_ends_the_loop_with_stopping(notify):
    def step():
        raise OSError("disk gone")
    with pytest.raises(OSError):
        run_loop("test", step, tick_s=0.01, notifier=Notifier({}))
    assert notify.collect(0.3) == ["READY=1\nSTATUS=test", "STOPPING=1"]


def test_structured_fields_reach_the_journal_handler():
    """Under systemd the daemons log through systemd-python's JournalHandler: POINT=,
    CONTACT_ID=, REMOTE=, CLIP_ID= travel as journal fields."""
    from systemd.journal import JournalHandler
    sent = []
    handler = JournalHandler(SYSLOG_IDENTIFIER="appliance-test",
                             sender_function=lambda MESSAGE, **kw: sent.append((MESSAGE, kw)))
    log = logging.getLogger("tests.structured")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("clip %s ready", "c1", extra=fields(point="till1", clip="c1", contact="k9", remote="a1b2c3"))
    finally:
        log.removeHandler(handler)
    [(msg, kw)] = sent
    assert msg == "clip c1 ready"
    assert kw["POINT"] == "till1" and kw["CLIP_ID"] == "c1" and kw["CONTACT_ID"] == "k9" and kw["REMOTE"] == "a1b2c3"
    assert kw["SYSLOG_IDENTIFIER"] == "appliance-test" and kw["PRIORITY"] == "6"


# --- every daemon, as systemd starts it ----------------------------------------------------

def start(cfg_path, daemon: str, sock: NotifySocket, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, NOTIFY_SOCKET=sock.path, WATCHDOG_USEC="400000")
    return subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg_path), "run", daemon,
                             *extra], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def lifecycle(proc: subprocess.Popen, sock: NotifySocket, name: str, ready_seen: bool = False) -> None:
    """READY with a status, WATCHDOG pings with a status, then SIGTERM -> STOPPING, exit 0."""
    try:
        if not ready_seen:
            msgs = sock.until(lambda m: m.startswith("READY=1"), 30)
            assert msgs[-1].startswith(f"READY=1\nSTATUS={name}")
        msgs = sock.collect(1.2)
        assert pings(msgs) >= 3, msgs
        assert any(m.startswith(f"WATCHDOG=1\nSTATUS={name}: ") for m in msgs)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    rest = sock.collect(0.5)
    assert rest and rest[-1] == "STOPPING=1", rest
    assert rc == 0, proc.stderr.read()


def hold_journal(state_dir):
    """Take the journal's write lock from another process's point of view (as a stuck
    writer would): the daemon's next commit waits."""
    j = Journal.in_dir(state_dir)
    j.db.execute("BEGIN IMMEDIATE")
    return j


def give_work(state_dir, name: str) -> None:
    """Something the daemon must go on committing for a few seconds (an idle daemon opens no
    write transaction): the core, an arrival 3 s ahead in its reorder window; the audio
    daemon, a contact that ends 5 s from now, whose track waits for the microphone."""
    from appliance.journal import NewEvent
    now = int(time.time() * 1000)
    with Journal.in_dir(state_dir) as j:
        if name == "core":
            j.append(NewEvent("presence", now + 3000, {"state": "arrived"}, "till1", "rf"))
        else:
            j.append(NewEvent("contact_closed", now + 5000, {"contact": "c-stall", "opened": now - 1000,
                                                             "closed": now + 5000}, "till1", "core"))
    time.sleep(1.0)                     # taken in and committed before the journal is held


def stall_and_recover(proc: subprocess.Popen, sock: NotifySocket, state_dir, name: str) -> None:
    """Pings while the loop turns; none while a stuck writer holds the journal and the
    daemon has work to commit (its step waits); pings again once it lets go; then the
    lifecycle."""
    try:
        sock.until(lambda m: m.startswith("READY=1"), 30)
        assert pings(sock.collect(0.8)) >= 2
        give_work(state_dir, name)
        held = hold_journal(state_dir)
        sock.collect(0.3)
        assert pings(sock.collect(1.5)) == 0
        held.db.execute("ROLLBACK")
        held.close()
        assert pings(sock.collect(1.0)) >= 2
        lifecycle(proc, sock, name, ready_seen=True)
    finally:
        proc.kill()
        sock.close()


def test_core_daemon_lifecycle_and_stall(tmp_path):
    sock = NotifySocket(tmp_path / "n.sock")
    stall_and_recover(start(make_config(tmp_path), "core", sock), sock, tmp_path / "state", "core")


def test_rf_daemon_lifecycle(tmp_path):
    from rf_receiver.synthetic import merge, press
    import json
    cfg = make_config(tmp_path)
    pulses = tmp_path / "p.jsonl"
    train = merge(press(0xC0FFE1, 24, unit=350, repeats=5, seed=1) + [(0, 60_000_000)])
    pulses.write_text(json.dumps({"pulses": [list(p) for p in train]}) + "\n")
    sock = NotifySocket(tmp_path / "n.sock")
    proc = start(cfg, "rf", sock, "--pulses", str(pulses))
    try:
        lifecycle(proc, sock, "rf")
    finally:
        proc.kill()
        sock.close()


def test_audio_daemon_lifecycle_and_stall(tmp_path):
    from tests.audio_capture.tones import burst_wav
    cfg = make_config(tmp_path, f'\n[audio]\nsource = "file"\nsegment_s = 1\nspool_dir = "{tmp_path / "spool"}"\n')
    wav = burst_wav(tmp_path / "mic.wav", 30, [1.0])
    sock = NotifySocket(tmp_path / "n.sock")
    stall_and_recover(start(cfg, "audio", sock, "--wav", str(wav)), sock, tmp_path / "state", "audio")


def test_sync_daemon_lifecycle(tmp_path, broker):
    cfg = make_config(tmp_path, f'\n[sync]\nbroker = "{broker.url}"\n')
    sock = NotifySocket(tmp_path / "n.sock")
    proc = start(cfg, "sync", sock)
    try:
        lifecycle(proc, sock, "sync")
    finally:
        proc.kill()
        sock.close()


def test_a_daemon_restarts_when_its_part_of_the_config_changes_or_on_request(tmp_path):
    """The watcher (every 5 s): a change to a section the daemon does not use, or a change
    that does not validate, leaves it running; a restart request or a change to its own part
    makes it exit 0 (systemd starts it again on the new config)."""
    from appliance.config.watch import request_restart
    cfg = make_config(tmp_path, '\n[sync]\nbatch_max = 200\n')
    original = cfg.read_text()
    sock = NotifySocket(tmp_path / "n.sock")
    proc = start(cfg, "core", sock)
    try:
        sock.until(lambda m: m.startswith("READY=1"), 30)
        cfg.write_text(original.replace("batch_max = 200", "batch_max = 300"))     # not the core's part
        sock.collect(6)                                     # (reading the notify socket as systemd does)
        cfg.write_text(original + '\n[points.broken]\nmin_contact_s = -1\n')       # does not validate
        sock.collect(6)
        assert proc.poll() is None
        cfg.write_text(original)
        request_restart(tmp_path / "state", "core")
        sock.collect(7)
        assert proc.wait(5) == 0
        err = proc.stderr.read()
        assert "a restart was requested: restarting to apply it" in err
        assert "changed but does not validate; core keeps running the config it has" in err
        assert "points.broken.min_contact_s" in err and "its configuration changed" not in err
        proc = start(cfg, "core", sock)
        sock.until(lambda m: m.startswith("READY=1"), 30)
        cfg.write_text(original + '\n[points.kiosk]\n')                             # the core's part
        sock.collect(7)
        assert proc.wait(5) == 0
        err = proc.stderr.read()
        assert "its configuration changed: restarting to apply it" in err and "does not validate" not in err
    finally:
        proc.kill()
        sock.close()


def test_sighup_reads_the_config_now_and_never_kills_the_daemon(tmp_path):
    """systemctl reload (ExecReload sends SIGHUP): an unchanged config leaves the daemon
    running; the watcher, told to look now, restarts it on a changed part at once."""
    import threading as th

    from appliance.config import load_config
    from appliance.config.watch import ConfigWatch
    cfg = make_config(tmp_path)
    sock = NotifySocket(tmp_path / "n.sock")
    proc = start(cfg, "core", sock)
    try:
        sock.until(lambda m: m.startswith("READY=1"), 30)
        proc.send_signal(signal.SIGHUP)
        assert pings(sock.collect(1.5)) >= 2 and proc.poll() is None       # alive and well
        lifecycle(proc, sock, "core", ready_seen=True)
    finally:
        proc.kill()
        sock.close()
    stop = th.Event()
    w = ConfigWatch(cfg, load_config(cfg), "core", stop, interval_s=3600)  # it would not look for an hour
    w.start()
    cfg.write_text(cfg.read_text() + "\n[points.kiosk]\n")
    w.reload()
    assert stop.wait(10) and w.reason == "its configuration changed"


def _daemon_status(tmp_path, notify, name: str, extra: str, want: str, env_extra: dict | None = None) -> str:
    """Run ``appliancectl run NAME`` as systemd would (notify socket, watchdog) until one of its
    STATUS= lines contains ``want``; returns that line. SIGTERM then ends it cleanly."""
    tmp_path.mkdir()
    cfg = make_config(tmp_path, extra)
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="1000000", APPLIANCE_ASSUME_SYNCED="1",
               **(env_extra or {}))
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg), "run", name],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        msgs = notify.until(lambda m: want in m, 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
        proc.stderr.close()
    assert rc == 0
    return next(line for line in msgs[-1].splitlines() if line.startswith("STATUS="))


def test_status_lines_say_what_is_wrong(tmp_path, notify):
    """Each daemon's STATUS= (systemctl status shows it) says what it does and what is wrong."""
    from tests.mqtt_broker import free_port
    port = free_port()
    line = _daemon_status(tmp_path / "s", notify, "sync", f'[sync]\nbroker = "mqtt://127.0.0.1:{port}"\n',
                          "cannot reach")
    assert line.startswith("STATUS=sync: offline since ") and f"127.0.0.1:{port}" in line and "records wait" in line
    line = _daemon_status(tmp_path / "a", notify, "audio",
                          '[audio]\nsource = "alsa"\ndevice = "hw:CARD=NoSuchCard,DEV=0"\n'
                          f'spool_dir = "{tmp_path / "spool"}"\n', "lost")
    assert line.startswith("STATUS=audio: microphone lost (") and "NoSuchCard" in line and "0 clips cut" in line
    line = _daemon_status(tmp_path / "c", notify, "core", "", "contacts open")
    assert line.startswith("STATUS=core: ") and "0 contacts open" in line and "records derived" in line
    bin_dir = tmp_path / "bin"                           # an rtl_433 whose dongle is unplugged
    bin_dir.mkdir()
    (bin_dir / "rtl_433").write_text("#!/bin/sh\necho 'No supported devices found.' >&2\nexit 1\n")
    (bin_dir / "rtl_433").chmod(0o755)
    line = _daemon_status(tmp_path / "r", notify, "rf", '[rf]\nsource = "rtl_433"\n', "lost",
                          env_extra={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert line.startswith("STATUS=rf: rtl_433 lost (rtl_433 exited with status 1)") and "no press yet" in line


def test_daemons_with_nothing_to_do_stay_up_ready_instead_of_restarting(tmp_path):
    """No receiver (``[rf] source = "none"``) and no broker (``[sync] broker = ""``): each
    daemon says so, is READY, pets its watchdog and stops on SIGTERM with 0 — where it once
    exited 3 and systemd restarted it every few seconds, forever."""
    cfg = make_config(tmp_path, '\n[rf]\nsource = "none"\n')
    for daemon in ("rf", "sync"):
        sock = NotifySocket(tmp_path / f"{daemon}.sock")
        proc = start(cfg, daemon, sock)
        try:
            lifecycle(proc, sock, daemon)
        finally:
            proc.kill()
            sock.close()
