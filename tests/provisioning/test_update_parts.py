"""The parts of an update that need no broker: the maintenance window, the update lock held by
another process, chunks kept across a restart and refused when they are not the announced
ones, the root service's distrust of the request file, and the health check's reading of
``systemctl show``."""
from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from appliance.config import load_config
from appliance.update_lock import BusyFlag, holders
from provisioning.bundle_delivery import Delivery, DeliveryError, parse_args
from provisioning.update import in_window
from provisioning.update_service import Health, SystemdUnits, read_request

ROOT = Path(__file__).resolve().parents[2]


def test_the_maintenance_window_including_one_past_midnight():
    at = lambda h, m: datetime(2026, 12, 3, h, m)  # noqa: E731
    assert in_window("", at(13, 0))
    assert in_window("02:00-05:00", at(2, 0)) and in_window("02:00-05:00", at(4, 59))
    assert not in_window("02:00-05:00", at(5, 0)) and not in_window("02:00-05:00", at(1, 59))
    assert in_window("22:30-04:00", at(23, 0)) and in_window("22:30-04:00", at(3, 59))
    assert not in_window("22:30-04:00", at(12, 0)) and not in_window("22:30-04:00", at(22, 29))


def test_the_update_lock_is_held_by_another_process_and_let_go_when_it_dies(tmp_path):
    assert holders(tmp_path) == []
    child = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from appliance.update_lock import BusyFlag
BusyFlag({str(tmp_path)!r}, "contact").set(True)
print("held", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        assert holders(tmp_path) == ["a contact is open"]
        clip = BusyFlag(tmp_path, "clip")
        clip.set(True)
        clip.set(True)                                  # only transitions touch the lock
        assert holders(tmp_path) == ["a track is being cut", "a contact is open"]
        clip.set(False)
        assert holders(tmp_path) == ["a contact is open"]
    finally:
        child.kill()
        child.wait()
    assert holders(tmp_path) == []                      # a dead daemon holds nothing


def box_cfg(tmp_path: Path):
    keys = tmp_path / "keys"
    keys.mkdir()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    (keys / "a.pub").write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    p = tmp_path / "appliance.toml"
    p.write_text(f'[device]\nid = "b"\nstate_dir = "{tmp_path / "state"}"\n[update]\nkeys_dir = "{keys}"\n'
                 f'releases_dir = "{tmp_path / "opt"}"\n')
    return load_config(p)


def test_chunks_are_kept_across_a_restart_and_bad_ones_refused(tmp_path):
    cfg = box_cfg(tmp_path)
    data = bytes(range(256)) * 40                      # 10,240 bytes: 3 chunks of 4 KiB
    sha = hashlib.sha256(data).hexdigest()
    args = {"sha256": sha, "size": len(data), "chunks": 3, "chunk_size": 4096, "version": "9"}
    d = Delivery(cfg)
    d.start("u1", args, 0)
    d.receive_chunk(sha, "0", data[:4096])
    with pytest.raises(ValueError, match="not the size"):
        d.receive_chunk(sha, "2", data[4096:8192])      # the last chunk is shorter
    with pytest.raises(ValueError, match="not the size"):
        d.receive_chunk(sha, "3", b"x")
    with pytest.raises(ValueError, match="not an update chunk"):
        d.receive_chunk("../../etc", "0", b"x")
    assert d.step(True) is None and d.summary()["chunks"] == [1, 3]

    d = Delivery(cfg)                                   # the sync daemon restarted: the job and chunk 0 kept
    assert d.job["id"] == "u1" and d.summary()["chunks"] == [1, 3]
    d.receive_chunk(sha, "1", data[4096:8192])
    d.receive_chunk(sha, "2", data[8192:])
    ended = d.step(True)                                # whole, but not a signed bundle
    assert ended[0] == "u1" and ended[1] == "error" and "not a bundle" in ended[3]
    assert not (tmp_path / "state" / "updates" / "request.json").exists()
    assert d.job is None and not (tmp_path / "state" / "updates" / "job.json").exists()

    other = hashlib.sha256(b"other").hexdigest()
    d2 = Delivery(cfg)
    d2.receive_chunk(other, "0", b"early")              # before its command: kept, bounded
    d2.receive_chunk(hashlib.sha256(b"2").hexdigest(), "0", b"x")
    with pytest.raises(ValueError, match="no command announced"):
        d2.receive_chunk(hashlib.sha256(b"3").hexdigest(), "0", b"x")

    bad = {**args, "sha256": hashlib.sha256(b"z").hexdigest(), "size": 3, "chunks": 1, "chunk_size": 3}
    d3 = Delivery(cfg)
    d3.start("u2", bad, 0)
    d3.receive_chunk(bad["sha256"], "0", b"abc")        # the right size, the wrong bytes
    ended = d3.step(True)
    assert ended[1] == "error" and "do not make the bundle" in ended[3]


@pytest.mark.parametrize("args, why", [
    ({}, "args.sha256"), ({"sha256": "AB" * 32, "size": 1}, "args.sha256"),
    ({"sha256": "ab" * 32, "size": 2**40}, "args.size"), ({"sha256": "ab" * 32, "size": True}, "args.size"),
    ({"sha256": "ab" * 32, "size": 10, "url": "file:///etc/shadow"}, "args.url"),
    ({"sha256": "ab" * 32, "size": 10, "chunks": 2, "chunk_size": 4}, "args.chunks"),
    ({"sha256": "ab" * 32, "size": 10, "chunks": 1, "chunk_size": 2**21}, "args.chunk_size"),
    ({"sha256": "ab" * 32, "size": 10, "chunks": 1, "chunk_size": 10, "version": "x" * 65}, "args.version"),
])
def test_update_arguments_are_checked(args, why):
    with pytest.raises(DeliveryError, match=why):
        parse_args(args)


def test_a_second_update_waits_for_the_first_and_a_box_without_keys_takes_none(tmp_path):
    cfg = box_cfg(tmp_path)
    d = Delivery(cfg)
    args = {"sha256": "ab" * 32, "size": 10, "chunks": 1, "chunk_size": 10}
    d.start("u1", args, 0)
    with pytest.raises(DeliveryError, match="still in progress"):
        d.start("u2", args, 0)
    for p in Path(cfg.update.keys_dir).iterdir():
        p.unlink()
    with pytest.raises(DeliveryError, match="no release key"):
        Delivery(cfg).start("u1", args, 0)


@pytest.mark.parametrize("text", [
    '{"id": "u1", "bundle": "../../etc/passwd"}', '{"id": "u1", "bundle": "/etc/shadow"}',
    '{"id": "../x", "bundle": "' + "a" * 64 + '.bundle"}', '{"id": "u1", "bundle": "' + "a" * 64 + '.bundle", '
    '"expires": 1e400}', '[1]', 'not json', '{"id": "u1"}', '{"id": "u1", "bundle": "' + "a" * 64 + '.bundle", '
    '"expires": true}', '{"x": "' + "y" * 5000 + '"}'])
def test_the_root_service_takes_nothing_but_a_bundle_name_an_id_and_an_expiry(tmp_path, text):
    (tmp_path / "request.json").write_text(text)
    assert read_request(tmp_path) is None and not (tmp_path / "request.json").exists()


def test_the_root_service_reads_a_good_request(tmp_path):
    (tmp_path / "request.json").write_text(json.dumps({"id": "u1", "bundle": "a" * 64 + ".bundle", "expires": 5}))
    r = read_request(tmp_path)
    assert r.id == "u1" and r.bundle == tmp_path / ("a" * 64 + ".bundle") and r.expires == 5


SHOW = """Id=appliance-core.service
ActiveState=active
SubState=running
MainPID=101
NRestarts=0

Id=appliance-sync.service
ActiveState={state}
SubState={sub}
MainPID={pid}
NRestarts={restarts}
"""


def test_the_health_check_reads_systemd_and_wants_the_daemons_to_stay_up(tmp_path):
    show = {"state": "activating", "sub": "start", "pid": 0, "restarts": 0}
    calls = []

    def run(argv, **kw):
        calls.append(argv)
        return SimpleNamespace(stdout=SHOW.format(**show), returncode=0)
    units = SystemdUnits(("appliance-core.service", "appliance-sync.service"), run=run)
    now = [0.0]
    status = tmp_path / "sync-status.json"
    h = Health(units, status, need_broker=True, sync_unit="appliance-sync.service", settle_s=5, clock=lambda: now[0])
    h.restart()
    assert calls[0][:3] == ["systemctl", "--no-block", "restart"]
    assert not h.healthy() and h.last_problem == "not READY: appliance-sync.service"
    show.update(state="active", sub="running", pid=202)
    assert not h.healthy()                              # READY now: must stay so for 5 s
    now[0] = 6.0
    assert not h.healthy() and "broker" in h.last_problem
    status.write_text(json.dumps({"connected": True, "pid": 202, "time": 9e9}))
    assert h.healthy()
    show.update(pid=303, restarts=1)                    # it crashed and came back: watched again
    assert not h.healthy()
    now[0] = 12.0
    assert not h.healthy()                              # the status is the old process's
    status.write_text(json.dumps({"connected": True, "pid": 303, "time": 9e9}))
    assert h.healthy()


def test_a_busy_flag_that_cannot_be_made_never_stops_the_daemon(tmp_path):
    f = BusyFlag(tmp_path / "no" / "such", "contact")
    (tmp_path / "no").write_text("a file where the folder should be")
    f.set(True)                                         # cannot: logged, the daemon goes on
    assert f.fd is None and holders(tmp_path / "no" / "such") == []


def test_appliancectl_update_run_and_status(tmp_path):
    cfg = box_cfg(tmp_path)
    ctl = [sys.executable, "-m", "appliance.cli.main", "--config", str(tmp_path / "appliance.toml")]
    r = subprocess.run([*ctl, "update", "run"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stderr
    d = Delivery(cfg)
    d.start("u9", {"sha256": "ab" * 32, "size": 10, "chunks": 2, "chunk_size": 5, "version": "9.9"}, 0)
    d.receive_chunk("ab" * 32, "0", b"12345")
    r = subprocess.run([*ctl, "update", "status", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    doc = json.loads(r.stdout)
    assert doc["current"] is None and doc["release_keys"] == 1 and doc["window"] == "any time"
    assert doc["receiving"] == {"id": "u9", "phase": "receiving", "version": "9.9", "chunks": [1, 2]}
    r = subprocess.run([*ctl, "update", "status"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "receiving 9.9: 1 of 2 chunks" in r.stdout and "1 release key(s)" in r.stdout


def test_an_update_that_breaks_unexpectedly_ends_alone(tmp_path, monkeypatch):
    """Whatever goes wrong inside an update's step, the command is answered with an error and
    the job is gone, so a restarted sync daemon does not trip over it again."""
    from provisioning.commands import Commands
    cfg = box_cfg(tmp_path)
    from appliance.journal import Journal
    j = Journal.in_dir(cfg.device.state_dir)
    try:
        c = Commands(cfg, j, "b")
        c.updates.start("u1", {"sha256": "ab" * 32, "size": 10, "chunks": 1, "chunk_size": 10}, 0)
        monkeypatch.setattr(c.updates, "_receiving", lambda job, connected: 1 / 0)
        stage = SimpleNamespace(connected=threading.Event())
        out = c.step(stage)
        assert len(out) == 1 and b'"status":"error"' in out[0][1] and b"ZeroDivisionError" in out[0][1]
        assert c.updates.job is None and not (tmp_path / "state" / "updates" / "job.json").exists()
        assert c.step(stage) == []
    finally:
        j.close()
