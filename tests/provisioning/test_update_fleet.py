"""Application updates through the fleet, end to end on a real Mosquitto with the fleet's TLS
and ACL: ``fleetctl cmd DEVICE update FILE`` sends a signed bundle in chunks to a box's sync
daemon (the real stage and agent), which checks it and leaves the request that
``appliance-update.service`` (here ``update_service.run``, as the path unit would start it)
installs, switches, health-checks and commits — or rolls back; the outcome comes back on
``cmd/<id>/result`` and in the retained ``info``. The daemons are run as systemd would for the
update's health check: each unit is the current release's ``appliancectl run <daemon>``, READY
when it says so on its NOTIFY_SOCKET (the fake at the hardware edge: ``ProcessUnits``)."""
from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.config import load_config
from appliance.update_lock import BusyFlag
from fleet.cli import main as fleetctl
from provisioning import update_service
from provisioning.update import Releases, make_bundle
from provisioning.update_service import UNITS
from tests.provisioning.boxes import Box
from tests.provisioning.test_update import tiny_wheel

KEY = Ed25519PrivateKey.generate()

APP = '''import json, os, socket, sys, time
VERSION = {version!r}
READY = {ready!r}

def main():
    if sys.argv[1:2] != ["run"]:
        print("tinyapp " + VERSION)
        return
    daemon = sys.argv[2]
    if daemon in READY and os.environ.get("NOTIFY_SOCKET"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
    if daemon == "sync" and "sync" in READY:          # the new sync daemon reached the broker
        state = os.environ["APPLIANCE_STATE_DIR"]
        tmp = os.path.join(state, ".sync-status.tmp")
        with open(tmp, "w") as f:
            json.dump({{"connected": True, "pid": os.getpid(), "time": time.time()}}, f)
        os.replace(tmp, os.path.join(state, "sync-status.json"))
    time.sleep(600)
'''


def release_wheel(directory: Path, version: str, ready=("core", "rf", "audio", "sync")) -> Path:
    """A real wheel whose ``appliancectl run <daemon>`` behaves like a daemon under systemd:
    READY=1 on NOTIFY_SOCKET (for the daemons in ``ready``), then stays up."""
    return tiny_wheel(directory, version, APP.format(version=version, ready=list(ready)))


class ProcessUnits:
    """systemd as the update's health check sees it: ``restart()`` (re)starts each unit as
    ``<releases>/current/bin/appliancectl run <daemon>`` with its own NOTIFY_SOCKET;
    ``states()`` says which sent READY=1 and still runs, their PIDs and restart counts."""

    def __init__(self, base: Path, state_dir: Path, units=UNITS):
        self.base, self.state_dir, self.units = base, state_dir, units
        self.procs: dict[str, subprocess.Popen] = {}
        self.socks: dict[str, socket.socket] = {}
        self.ready: dict[str, bool] = {}
        self.restarts = 0
        self.started: list[str] = []            # the release each restart started

    def restart(self) -> None:
        self.stop()
        release = os.readlink(self.base / "current")
        self.started.append(Path(release).name)
        for u in self.units:
            path = self.base / f"{u}.notify"
            path.unlink(missing_ok=True)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(str(path))
            s.setblocking(False)
            self.socks[u] = s
            self.ready[u] = False
            daemon = u.split("-")[1].split(".")[0]
            self.procs[u] = subprocess.Popen([str(self.base / "current" / "bin" / "appliancectl"), "run", daemon],
                                             env={**os.environ, "NOTIFY_SOCKET": str(path),
                                                  "APPLIANCE_STATE_DIR": str(self.state_dir)})

    def states(self) -> dict:
        out = {}
        for u in self.units:
            try:
                while True:
                    if self.socks[u].recv(4096).startswith(b"READY=1"):
                        self.ready[u] = True
            except (BlockingIOError, KeyError):
                pass
            p = self.procs.get(u)
            alive = p is not None and p.poll() is None
            out[u] = (alive and self.ready.get(u, False), p.pid if p else 0, self.restarts)
        return out

    def stop(self) -> None:
        for p in self.procs.values():
            p.kill()
            p.wait(10)
        for s in self.socks.values():
            s.close()
        self.procs, self.socks = {}, {}


def pem(key) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def make_box(fleet, name: str, keys: bool = True, extra: str = "") -> tuple[Box, Releases, Path]:
    """A box with release 1.0 installed and the fleet's release key (unless not ``keys``)."""
    d = fleet.tmp / name
    d.mkdir()
    keys_dir, base = d / "release-keys", d / "opt"
    keys_dir.mkdir()
    if keys:
        (keys_dir / "fleet.pub").write_bytes(pem(KEY))
    releases = Releases(base)
    rel = releases.path("1.0")
    (rel / "bin").mkdir(parents=True)
    (rel / "bin" / "appliancectl").write_text("#!/bin/sh\necho tinyapp 1.0\n")
    (rel / "bin" / "appliancectl").chmod(0o755)
    (rel / ".complete").write_bytes(b"")
    releases.switch("1.0")
    fleet.ca.allow(name)
    cfg = fleet.box_config(name, extra=f'[update]\nkeys_dir = "{keys_dir}"\nreleases_dir = "{base}"\n'
                                       f'health_timeout_s = 30\n{extra}')
    return Box(cfg), releases, d


def bundle_of(tmp: Path, version: str, key=KEY, **kw) -> Path:
    wheels = tmp / f"wheels-{version}"
    wheels.mkdir(exist_ok=True)
    return make_bundle([release_wheel(wheels, version, **kw)], version, key, tmp / f"release-{version}.bundle")


class RootService(threading.Thread):
    """appliance-update.path + .service: runs ``update run`` whenever a request is left."""

    def __init__(self, box: Box, releases: Releases):
        super().__init__(daemon=True)
        self.cfg = load_config(box.path)
        self.units = ProcessUnits(releases.base, Path(self.cfg.device.state_dir))
        self.stop_ev = threading.Event()
        self.outcomes: list = []
        self.request = update_service.updates_dir(self.cfg) / update_service.REQUEST_FILE

    def run(self) -> None:
        while not self.stop_ev.is_set():
            if self.request.exists():
                self.outcomes.append(update_service.run(self.cfg, units=self.units, stop=self.stop_ev, poll_s=0.2))
            self.stop_ev.wait(0.1)

    def close(self) -> None:
        self.stop_ev.set()
        self.join(10)
        self.units.stop()


def drive(boxes: list[Box], fn, limit: float = 120.0):
    """Call ``fn`` on a thread while the boxes are stepped (they answer only while driven)."""
    res: dict = {}
    t = threading.Thread(target=lambda: res.setdefault("r", fn()))
    t.start()
    end = time.monotonic() + limit
    while t.is_alive() and time.monotonic() < end:
        for b in boxes:
            b.stage.step()
        time.sleep(0.02)
    t.join(1)
    assert not t.is_alive(), "the operator's request did not finish"
    return res["r"]


def operator_args(fleet) -> list[str]:
    return ["--broker", fleet.url, "--ca-dir", str(fleet.ca.dir)]


def retained_info(fleet, device: str) -> dict:
    got: dict = {}
    ev = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"info-{time.monotonic_ns()}")
    c.tls_set(ca_certs=str(fleet.ca.dir / "ca.pem"), certfile=str(fleet.ca.dir / "operator.pem"),
              keyfile=str(fleet.ca.dir / "operator.key"))

    def on_message(client, userdata, msg):
        got.update(json.loads(msg.payload))
        ev.set()
    c.on_message = on_message
    c.on_connect = lambda client, *a: client.subscribe(f"ca/v1/{device}/info", qos=1)
    c.connect("127.0.0.1", fleet.port)
    c.loop_start()
    ev.wait(10)
    c.disconnect()
    c.loop_stop()
    return got


def test_an_update_over_mqtt_is_installed_health_checked_committed_and_reported(fleet, capsys):
    box, releases, d = make_box(fleet, "box-u1")
    root = RootService(box, releases)
    root.start()
    try:
        bundle = bundle_of(d, "2.0")
        # chunks of 1 KiB: the bundle crosses the broker in pieces
        rc = drive([box], lambda: fleetctl(["cmd", "box-u1", "update", str(bundle), "--chunk-kb", "1",
                                            "--wait", "90", *operator_args(fleet)]))
        out = capsys.readouterr()
        assert rc == 0, out
        assert "box-u1: update ok" in out.out and "version: 2.0" in out.out and "previous: 1.0" in out.out
        assert "chunks sent (100 %)" in out.err
        assert releases.current() == "2.0"
        assert subprocess.run([str(releases.base / "current" / "bin" / "appliancectl")], capture_output=True,
                              text=True).stdout.strip() == "tinyapp 2.0"
        assert root.units.started == ["2.0"]            # restarted once, on the new release
        state = d / "state" / "updates"
        assert not (state / "request.json").exists() and not list(state.glob("*.bundle"))
        assert not (state / "job.json").exists()
        assert box.run_until(lambda: retained_info(fleet, "box-u1").get("update", {}).get("phase") == "committed",
                             limit=20)
        info = retained_info(fleet, "box-u1")["update"]
        assert info["version"] == "2.0" and info["previous"] == "1.0"
        db = str(fleet.tmp / "ingest.db")                # the ingest keeps it: fleetctl devices shows it
        assert box.run_until(lambda: fleetctl(["devices", "--db", db]) == 0 and
                             "committed 2.0" in capsys.readouterr().out, limit=20)
        rc = drive([box], lambda: fleetctl(["cmd", "box-u1", "update", str(bundle), "--json", "--wait", "60",
                                            *operator_args(fleet)]))
        doc = json.loads(capsys.readouterr().out)
        assert rc == 0 and doc["result"]["version"] == "2.0"     # the same release again: nothing to do
        assert root.units.started == ["2.0"]
    finally:
        root.close()
        box.stop()


def test_a_release_whose_daemon_never_becomes_ready_is_rolled_back(fleet, capsys):
    box, releases, d = make_box(fleet, "box-u2")
    root = RootService(box, releases)
    root.start()
    try:
        bad = bundle_of(d, "2.1", ready=("rf", "audio", "sync"))     # core never says READY
        rc = drive([box], lambda: fleetctl(["cmd", "box-u2", "update", str(bad), "--wait", "120",
                                            *operator_args(fleet)]), limit=150)
        out = capsys.readouterr().out
        assert rc == 1 and "box-u2: update error" in out, out
        assert "not healthy within 30 s" in out and "not READY: appliance-core.service" in out
        assert releases.current() == "1.0" and not releases.path("2.1").exists()
        assert root.units.started == ["2.1", "1.0"]              # tried, then back on the old release
        assert json.loads((d / "state" / "updates" / "update.json").read_text())["phase"] == "rolled_back"
    finally:
        root.close()
        box.stop()


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def test_a_bundle_from_a_url_with_a_foreign_signature_is_refused_before_anything_runs(fleet, capsys, tmp_path):
    box, releases, d = make_box(fleet, "box-u3")
    forged = bundle_of(tmp_path, "6.6", key=Ed25519PrivateKey.generate())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{forged.name}"
        rc = drive([box], lambda: fleetctl(["cmd", "box-u3", "update", str(forged), "--url", url, "--wait", "30",
                                            *operator_args(fleet)]))
        out = capsys.readouterr().out
        assert rc == 1 and "not from a release key this box trusts" in out, out
        updates = d / "state" / "updates"
        assert not (updates / "request.json").exists() and not list(updates.glob("*.bundle"))
        assert releases.current() == "1.0" and sorted(p.name for p in releases.dir.iterdir()) == ["1.0"]
        # a URL whose file is not the announced one: refused as well
        (tmp_path / "swapped.bundle").write_bytes(b"x" * forged.stat().st_size)
        url = f"http://127.0.0.1:{server.server_port}/swapped.bundle"
        rc = drive([box], lambda: fleetctl(["cmd", "box-u3", "update", str(forged), "--url", url, "--wait", "30",
                                            *operator_args(fleet)]))
        assert rc == 1 and "not the bundle the command named" in capsys.readouterr().out
    finally:
        server.shutdown()
        box.stop()


def test_an_update_waits_for_the_update_lock_and_the_sync_daemon_restarting_meanwhile(fleet, capsys):
    """A contact open (core's shared lock): the update waits, says so in info; the sync daemon
    is restarted while it waits (as the update itself does) and still answers the command."""
    box, releases, d = make_box(fleet, "box-u4")
    contact = BusyFlag(d / "state", "contact")
    contact.set(True)
    root = RootService(box, releases)
    root.start()
    try:
        bundle = bundle_of(d, "3.0")
        result: dict = {}

        def operator():
            result["rc"] = fleetctl(["cmd", "box-u4", "update", str(bundle), "--wait", "90", *operator_args(fleet)])
        t = threading.Thread(target=operator)
        t.start()
        assert box.run_until(lambda: json.loads((d / "state" / "updates" / "update.json").read_text()
                                                if (d / "state" / "updates" / "update.json").exists() else "{}"
                                                ).get("phase") == "waiting", limit=30)
        state = json.loads((d / "state" / "updates" / "update.json").read_text())
        assert state["error"] == "busy: a contact is open" and releases.current() == "1.0"
        assert box.run_until(lambda: retained_info(fleet, "box-u4").get("update", {}).get("phase") == "waiting",
                             limit=20)
        box.restart()                                   # the sync daemon restarted: the job is on disk
        contact.set(False)                              # the contact closes: the update goes on
        assert box.run_until(lambda: not t.is_alive(), limit=90)
        t.join()
        assert result["rc"] == 0 and releases.current() == "3.0"
        assert "box-u4: update ok" in capsys.readouterr().out
    finally:
        contact.close()
        root.close()
        box.stop()


def test_a_canary_rollout_halts_after_failures_and_leaves_the_rest_alone(fleet, capsys):
    boxes = []
    try:
        # r-a and r-b (the canary: sorted first) hold no release key: they refuse the bundle
        for name, keys in (("r-a", False), ("r-b", False), ("r-c", True), ("r-d", True)):
            boxes.append(make_box(fleet, name, keys=keys))
            end = time.monotonic() + 15                 # known to the ingest once its status arrived
            while fleetctl(["tag", name, "north", "--db", str(fleet.tmp / "ingest.db")]) != 0:
                assert time.monotonic() < end
                time.sleep(0.1)
        capsys.readouterr()
        bundle = bundle_of(fleet.tmp, "4.0")
        args = ["rollout", str(bundle), "--canary", "50%", "--tag", "north", "--db", str(fleet.tmp / "ingest.db"),
                "--wait", "30", "--json", *operator_args(fleet)]
        rc = drive([b for b, _, _ in boxes], lambda: fleetctl(args))
        doc = json.loads(capsys.readouterr().out)
        assert rc == 1 and doc["halted"] and doc["not_touched"] == 2 and doc["failed"] == 2
        assert [r["device"] for r in doc["results"]] == ["r-a", "r-b"]
        assert all("no release key" in r["error"] for r in doc["results"])
        assert "halted after the canary: 2 of 2 failed" in doc["reason"]
        for b, releases, d in boxes[2:]:                # never sent anything
            assert b.journal.count("command") == 0 and releases.current() == "1.0"
            assert not (d / "state" / "updates").exists()
    finally:
        for b, _, _ in boxes:
            b.stop()
