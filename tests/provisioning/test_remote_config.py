"""Remote configuration end to end (real Mosquitto with the fleet's TLS and ACL, boxes driven
as the sync daemon drives them; a "restart" rebuilds a box from its config file as systemd
would): applied and reported; a bad document rejected with its key paths and nothing
changed; a config that cuts the box off rolled back; pinned keys stay local."""
from __future__ import annotations

import hashlib

from appliance.config import config_hash, load_config
from appliance.config.remote import REMOTE_FILE
from appliance.config.watch import RESTART_DIR, ConfigWatch
from fleet.operator import Operator
from tests.mqtt_broker import free_port
from tests.provisioning.boxes import Box


def digest(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else "absent"


def wait_reported(op, box, device, accept, others=()):
    got = {}

    def seen():
        r = op.reported(device, timeout_s=0.05, accept=accept)
        if r is not None:
            got["r"] = r
        return r is not None
    assert box.run_until(seen, limit=30, others=others), f"no matching config/reported from {device}"
    return got["r"]


DESIRED = """
[points.till1]
name = "Till one"
min_contact_s = 4.0
[points.till2]
[points.kiosk]
name = "Kiosk"
[sync]
broker = "mqtt://203.0.113.1:1883"     # pinned: never taken from a remote document
batch_max = 77
"""


def test_a_pushed_config_is_applied_reported_and_keeps_pinned_keys(fleet):
    fleet.ca.allow("box-1")
    fleet.ca.allow("box-2")
    box1, box2 = Box(fleet.box_config("box-1")), Box(fleet.box_config("box-2"))
    try:
        with Operator(fleet.settings("operator")) as op:
            assert op.push_config("box-1", DESIRED) == 1
            r = wait_reported(op, box1, "box-1", lambda r: r.version == 1 and r.status == "pending", [box2])
            assert (box1.path.parent / "state" / RESTART_DIR / "sync").exists()   # the sync daemon restarts on it
            watch = ConfigWatch(box1.path, box1.cfg, "core", None)   # the core would restart now
            watch.files = ()
            assert watch.check() == "its configuration changed"
            box1.restart()                                     # systemd starts the sync daemon again
            assert box1.cfg.points["kiosk"].name == "Kiosk" and box1.cfg.sync.batch_max == 77
            assert box1.cfg.sync.broker == fleet.url           # pinned: the local value
            r = wait_reported(op, box1, "box-1", lambda r: r.version == 1 and r.status == "applied")
            assert r.hash == config_hash(box1.cfg) and r.applied_version == 1 and r.errors == []
            # the other box was not touched
            assert "kiosk" not in box2.cfg.points and not (box2.path.parent / "state" / REMOTE_FILE).exists()
            # the retained document arrives again after a reconnect: nothing happens twice
            box1.restart()
            assert box1.run_until(lambda: box1.stage.connected.is_set())
            assert box1.agent.remote.state["status"] == "applied"
    finally:
        box1.stop()
        box2.stop()


def test_a_bad_config_is_rejected_with_its_key_paths_and_nothing_changes(fleet):
    fleet.ca.allow("box-1")
    box = Box(fleet.box_config("box-1"))
    try:
        with Operator(fleet.settings("operator")) as op:
            op.push_config("box-1", DESIRED, version=1)
            wait_reported(op, box, "box-1", lambda r: r.version == 1 and r.status == "pending")
            box.restart()
            wait_reported(op, box, "box-1", lambda r: r.version == 1 and r.status == "applied")
            layer = box.path.parent / "state" / REMOTE_FILE
            before, cfg_before = digest(layer), load_config(box.path)
            bad = ('[points.till1]\nmin_contact_s = -3\nmax_contact_s = "long"\n[remotes.abc123]\npoint = "nowhere"\n'
                   '[audio]\nformat = "mp3"\n')
            op.push_config("box-1", bad, version=2)
            r = wait_reported(op, box, "box-1", lambda r: r.version == 2 and r.status == "rejected")
            text = "\n".join(r.errors)
            assert "points.till1.min_contact_s" in text and "points.till1.max_contact_s" in text
            assert "audio.format" in text
            assert r.applied_version == 1 and r.hash == config_hash(cfg_before)
            assert digest(layer) == before and load_config(box.path) == cfg_before
            op.push_config("box-1", "this is [not toml", version=3)
            r = wait_reported(op, box, "box-1", lambda r: r.version == 3 and r.status == "rejected")
            assert "not valid TOML" in r.errors[0] and digest(layer) == before
    finally:
        box.stop()


def test_a_config_that_cuts_the_box_off_is_rolled_back(fleet):
    fleet.ca.allow("box-1")
    dead = free_port()
    box = Box(fleet.box_config("box-1", extra="pinned = []\nrollback_after_s = 30\n"))
    try:
        with Operator(fleet.settings("operator")) as op:
            op.push_config("box-1", f'[points.till1]\n[sync]\nbroker = "mqtts://127.0.0.1:{dead}"\n'
                                    f'ca_file = "{fleet.ca.dir / "ca.pem"}"\n', version=5)
            wait_reported(op, box, "box-1", lambda r: r.version == 5 and r.status == "pending")
            box.restart()                                      # now on the broken config
            assert box.cfg.sync.broker.endswith(f":{dead}")
            remote = box.agent.remote
            assert not box.run_until(lambda: box.stage.connected.is_set(), limit=2)
            now = remote.clock()
            remote.clock = lambda: now + 31                    # the rollback deadline passes
            assert box.run_until(lambda: remote.state.get("status") == "rolled_back", limit=5)
            box.restart()                                      # the daemons restart on the last good config
            assert box.cfg.sync.broker == fleet.url
            r = wait_reported(op, box, "box-1", lambda r: r.status == "rolled_back")
            assert r.version == 5 and "did not reach the cloud within 30 s" in r.errors[0]
            box.add(3)
            assert box.run_until(box.synced)
    finally:
        box.stop()


def test_remote_config_is_refused_when_the_box_does_not_take_it(fleet):
    fleet.ca.allow("box-1")
    box = Box(fleet.box_config("box-1", remote=False))
    try:
        with Operator(fleet.settings("operator")) as op:
            op.push_config("box-1", DESIRED, version=1)
            r = wait_reported(op, box, "box-1", lambda r: r.version == 1)
            assert r.status == "rejected" and r.errors[0].startswith("provisioning.remote_config:")
            assert not (box.path.parent / "state" / REMOTE_FILE).exists()
            assert "kiosk" not in load_config(box.path).points
    finally:
        box.stop()


def test_the_real_sync_daemon_applies_a_pushed_config_across_its_own_restart(fleet):
    """`appliancectl run sync` as systemd runs it: it enrols, takes the pushed config, exits 0
    to restart on it (its watcher), and — started again, as Restart=always does — reports it
    applied."""
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT
    fleet.ca.allow("box-1")
    path = fleet.box_config("box-1")

    def start():
        env = dict(os.environ, APPLIANCE_ASSUME_SYNCED="1")
        env.pop("NOTIFY_SOCKET", None)
        return subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(path), "run", "sync"],
                                cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    proc = start()
    try:
        with Operator(fleet.settings("operator")) as op:
            end = time.monotonic() + 30
            while op.reported("box-1", timeout_s=0.5) is None and time.monotonic() < end:
                pass                                              # enrolled, connected, reported "local"
            op.push_config("box-1", DESIRED, version=3)
            assert proc.wait(30) == 0                             # restarts itself to run it
            err = proc.stderr.read()
            assert "version 3 written" in err and "restarting to apply it" in err
            proc = start()
            end = time.monotonic() + 30
            r = None
            while time.monotonic() < end and (r is None or r.status != "applied"):
                r = op.reported("box-1", timeout_s=0.5, accept=lambda r: r.version == 3 and r.status == "applied")
            assert r is not None and r.status == "applied"
            assert r.hash == config_hash(load_config(path))
    finally:
        proc.terminate()
        proc.wait(20)
