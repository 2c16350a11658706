"""``appliancectl status`` on a healthy box (real sync daemon connected to a real Mosquitto),
a box with its broker down, a dead microphone (the real audio daemon on a sound card that is
not there), a full disk and an unsynced clock: each shows what is wrong and what to do, on
screen and in ``--json``."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from appliance.cli.main import main
from appliance.journal import Journal
from tests.conftest import ROOT
from tests.mqtt_broker import free_port


def box(tmp_path, extra: str = "") -> Path:
    p = tmp_path / "box.toml"
    p.write_text(f'[device]\nid = "box-1"\nstate_dir = "{tmp_path / "state"}"\n[points.till1]\n'
                 f'[rf]\nsource = "none"\n[audio]\nsource = "none"\n{extra}')
    with Journal.in_dir(tmp_path / "state"):
        pass
    return p


def status(capsys, path) -> dict:
    assert main(["--config", str(path), "status", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def screen(capsys, path) -> str:
    assert main(["--config", str(path), "status"]) == 0
    return capsys.readouterr().out


@contextmanager
def daemon(path: Path, name: str):
    env = dict(os.environ, APPLIANCE_ASSUME_SYNCED="1")
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(path), "run", name],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def wait_for(pred, limit: float = 20.0) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(autouse=True)
def synced(monkeypatch):
    monkeypatch.setenv("APPLIANCE_ASSUME_SYNCED", "1")


def test_a_healthy_box(tmp_path, capsys, broker):
    path = box(tmp_path, f'[sync]\nbroker = "{broker.url}"\n')
    with daemon(path, "sync") as proc:
        assert wait_for(lambda: status(capsys, path)["cloud"]["connected"]), proc
        st = status(capsys, path)
        out = screen(capsys, path)
    assert st["daemons"]["sync"]["state"] == "running" and st["daemons"]["sync"]["pid"] == proc.pid
    assert st["daemons"]["sync"]["rss_mb"] > 5 and st["daemons"]["sync"]["uptime_s"] >= 0
    assert st["cloud"]["last_error"] is None and st["clock"]["synced"] is True
    assert st["problems"] == [], st["problems"]
    assert "sync running" in out and "connected" in out and "no problems" in out
    assert len(out.splitlines()) < 25                        # one screen


def test_a_box_with_its_broker_down(tmp_path, capsys):
    port = free_port()
    path = box(tmp_path, f'[sync]\nbroker = "mqtt://127.0.0.1:{port}"\n')
    with daemon(path, "sync"):
        assert wait_for(lambda: (status(capsys, path)["cloud"].get("last_error") or "").startswith("cannot reach"))
        st = status(capsys, path)
        out = screen(capsys, path)
    assert st["cloud"]["daemon_running"] and not st["cloud"]["connected"] and st["cloud"]["offline_since"]
    [p] = st["problems"]
    assert p.startswith(f"not connected to mqtt://127.0.0.1:{port}: cannot reach the broker") and "doctor" in p
    assert "not connected since" in out and "1 problem(s)" in out
    st = status(capsys, path)                                # the daemon gone: said so
    assert st["problems"] == ["the sync daemon is not running: records wait in the journal "
                              "(systemctl start appliance-sync)"]


def test_a_dead_microphone(tmp_path, capsys):
    path = box(tmp_path)
    path.write_text(path.read_text().replace('[audio]\nsource = "none"\n',
                                             f'[audio]\nsource = "alsa"\ndevice = "hw:CARD=NoSuchCard,DEV=0"\n'
                                             f'spool_dir = "{tmp_path / "spool"}"\n'))
    with daemon(path, "audio"):
        assert wait_for(lambda: (status(capsys, path).get("microphone") or {}).get("state") == "lost")
        st = status(capsys, path)
        out = screen(capsys, path)
    assert st["daemons"]["audio"]["state"] == "running"
    [p] = st["problems"]
    assert p.startswith("the microphone is lost (") and "arecord -l" in p
    assert "microphone: " in out and "NoSuchCard" in out


def test_a_full_disk(tmp_path, capsys, monkeypatch):
    real = os.statvfs

    def full(p):
        st = real(p)
        return os.statvfs_result((st.f_bsize, 4096, 1_000_000, 1000, 1000, st.f_files, st.f_ffree, st.f_favail,
                                  st.f_flag, st.f_namemax))
    path = box(tmp_path)
    monkeypatch.setattr(os, "statvfs", full)
    st = status(capsys, path)
    [p] = st["problems"]
    assert p.startswith("the disk is nearly full (4 MB free)") and "keep_raw_days" in p
    assert "disk 0.0 of 4.1 GB free" in screen(capsys, path)


def test_an_unsynced_clock(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("APPLIANCE_ASSUME_SYNCED")
    monkeypatch.setattr("appliance.health.kernel_synced", lambda: False)
    path = box(tmp_path)
    st = status(capsys, path)
    assert st["clock"]["synced"] is False
    assert st["problems"] == ["the clock is not synchronised: events wait for it (timedatectl set-ntp true; "
                              "check the network)"]
    assert "NOT synchronised" in screen(capsys, path)


def test_daemons_from_the_process_table(tmp_path):
    """Without systemd, the daemons are found by their command lines (a fake /proc)."""
    from appliance import units
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cmdline").write_bytes(b"/usr/bin/python3\0/usr/bin/appliancectl\0run\0rf\0")
    (proc / "4242" / "status").write_text("Name:\tappliancectl\nVmRSS:\t  30720 kB\n")
    (proc / "4242" / "stat").write_text("4242 (appliancectl) S " + " ".join(["0"] * 18) + " 1000 0 0\n")
    (proc / "77").mkdir()
    (proc / "77" / "cmdline").write_bytes(b"vim\0run\0core\0")              # not ours
    (proc / "uptime").write_text("110.00 200.00\n")
    d = units.daemons(proc)
    assert d["rf"] == {"state": "running", "manager": "process", "pid": 4242, "rss_mb": 30.0,
                       "uptime_s": round(110 - 1000 / os.sysconf("SC_CLK_TCK"), 1)}
    assert d["core"]["state"] == "stopped" and d["core"]["pid"] is None
    (proc / "4243").mkdir()                                                   # another box's rf daemon
    (proc / "4243" / "cmdline").write_bytes(b"python3\0-m\0appliance.cli.main\0--config\0/elsewhere.toml\0run\0rf\0")
    (proc / "4242" / "cmdline").write_bytes(b"/usr/bin/appliancectl\0--config\0/etc/box.toml\0run\0rf\0")
    assert units.daemons(proc, config="/etc/box.toml")["rf"]["pid"] == 4242
    assert units.daemons(proc, config="/elsewhere.toml")["rf"]["pid"] == 4243
    assert units.daemons(proc, config="/third.toml")["rf"]["state"] == "stopped"


def test_sd_card_write_rate(tmp_path):
    from appliance import units
    sys_dev = tmp_path / "dev"
    st = os.stat(tmp_path)
    node = sys_dev / f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    node.mkdir(parents=True)
    (node / "stat").write_text("100 0 800 10 50 0 7200 30 0 40 40 0 0 0 0\n")   # 7200 sectors written
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "uptime").write_text("3600.0 100.0\n")
    w = units.write_rate(tmp_path, sys_dev, proc)
    assert w == {"device": node.name, "written_bytes": 7200 * 512, "per_hour_bytes": 7200 * 512}
    assert units.write_rate(tmp_path, tmp_path / "nothing", proc) is None


def test_daemons_from_systemd(tmp_path, monkeypatch):
    """Under systemd the units' own state is read (``systemctl show``: a stand-in on PATH
    prints what systemd 252 prints for the four units)."""
    from appliance import units
    show = ("Id=appliance-core.service\nActiveState=active\nSubState=running\nMainPID={pid}\nNRestarts=2\n"
            "Result=success\nStatusText=core: 2 points, 0 contacts open, 5 records derived, at seq 9\n"
            "ActiveEnterTimestampMonotonic=1000000\nWatchdogUSec=30s\nExecMainStatus=0\n\n"
            "Id=appliance-rf.service\nActiveState=failed\nSubState=failed\nMainPID=0\nNRestarts=5\n"
            "Result=watchdog\nStatusText=\nActiveEnterTimestampMonotonic=0\nWatchdogUSec=30s\nExecMainStatus=6\n\n"
            "Id=appliance-audio.service\nActiveState=activating\nSubState=start\nMainPID=0\nNRestarts=0\n"
            "Result=success\nStatusText=\nActiveEnterTimestampMonotonic=0\nWatchdogUSec=0\nExecMainStatus=0\n\n"
            "Id=appliance-sync.service\nActiveState=inactive\nSubState=dead\nMainPID=0\nNRestarts=0\n"
            "Result=success\nStatusText=\nActiveEnterTimestampMonotonic=0\nWatchdogUSec=0\nExecMainStatus=0\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "show.txt").write_text(show.format(pid=os.getpid()))
    (bin_dir / "systemctl").write_text(f"#!/bin/sh\ncat {bin_dir / 'show.txt'}\n")
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    d = units.daemons(systemd=True)
    core = d["core"]
    assert (core["state"], core["pid"], core["restarts"], core["watchdog"], core["manager"]) == (
        "running", os.getpid(), 2, True, "systemd")
    assert core["status"].startswith("core: 2 points") and core["uptime_s"] > 0 and core["rss_mb"] > 5
    assert (d["rf"]["state"], d["rf"]["result"], d["rf"]["restarts"]) == ("failed", "watchdog", 5)
    assert d["audio"]["state"] == "starting" and d["sync"]["state"] == "stopped"
    from appliance.cli.status import problems
    from appliance.config import parse_config
    cfg = parse_config('[rf]\nsource = "gpio"\n[audio]\nsource = "alsa"\n')
    found = problems(cfg, {"daemons": d, "clock": {"synced": True}, "cloud": {}})
    assert found == ["daemon rf failed (watchdog): appliancectl logs rf",
                     "daemon audio is starting (not READY): appliancectl logs audio"]


def test_each_remote_last_heard(tmp_path, capsys):
    from appliance.journal import NewEvent
    path = box(tmp_path, '[remotes.a1b2c3]\npoint = "till1"\nbuttons = { 1 = { meaning = "call" } }\n'
                         '[remotes.d4e5f6]\npoint = "till1"\nbuttons = { 1 = { meaning = "call" } }\n')
    with Journal.in_dir(tmp_path / "state") as j:
        j.append(NewEvent("call", 1_795_165_200_000, {"press": "short", "remote": "a1b2c3", "button": 1},
                          "till1", "rf"))
    st = status(capsys, path)
    assert st["remotes"] == {"a1b2c3": {"point": "till1", "last_heard": "2026-11-20T09:00:00.000Z"},
                             "d4e5f6": {"point": "till1", "last_heard": None}}
    out = screen(capsys, path)
    assert "remote a1b2c3 (till1): 2026-11-20T09:00:00.000Z" in out and "remote d4e5f6 (till1): not heard" in out
