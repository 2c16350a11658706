"""``fleetctl devices tag/import``, ``users``, ``clips prune`` and ``serve`` as an operator
runs them: real processes, clear errors, nothing half-applied."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fleet.ingest import IngestStore
from tests.fleet.office.conftest import Client
from tests.mqtt_broker import free_port


def fleetctl(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleet.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, input=stdin)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "ingest.db"
    store = IngestStore(path)
    for d in ("box-1", "box-2", "box-3"):
        store.set_status(d, "online", "1.0")
    store.close()
    return str(path)


def test_devices_tag_and_import(db, tmp_path):
    r = fleetctl("devices", "tag", "box-1", "--store", "Riga Centre", "--group", "north/riga", "--db", db, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"device": "box-1", "store": "Riga Centre", "group": "north/riga"}
    assert fleetctl("devices", "tag", "box-9", "--store", "X", "--db", db).returncode == 3
    r = fleetctl("devices", "tag", "box-1", "--group", "north//riga", "--db", db)
    assert r.returncode == 2 and "empty level" in r.stderr
    assert fleetctl("devices", "tag", "box-1", "--db", db).returncode == 2
    csv = tmp_path / "places.csv"
    csv.write_text("device,store,group\nbox-2,Tartu,north/tartu\nbox-3,Vilnius,south\n")
    assert fleetctl("devices", "import", str(csv), "--db", db).returncode == 0
    listed = {d["id"]: (d["store"], d["group"]) for d in json.loads(fleetctl("devices", "--db", db, "--json").stdout)}
    assert listed == {"box-1": ("Riga Centre", "north/riga"), "box-2": ("Tartu", "north/tartu"),
                      "box-3": ("Vilnius", "south")}
    # a TOML import; one unknown device or bad row changes nothing
    toml = tmp_path / "places.toml"
    toml.write_text('[devices.box-1]\nstore = "Old Town"\n[devices.box-7]\nstore = "Nowhere"\n')
    r = fleetctl("devices", "import", str(toml), "--db", db)
    assert r.returncode == 3 and "box-7" in r.stderr and "nothing changed" in r.stderr
    csv.write_text("box-1,Old Town,north\nbox-2,Tartu\n")
    r = fleetctl("devices", "import", str(csv), "--db", db)
    assert r.returncode == 2 and "line 2" in r.stderr
    listed = {d["id"]: d["store"] for d in json.loads(fleetctl("devices", "--db", db, "--json").stdout)}
    assert listed["box-1"] == "Riga Centre"
    # config push --tag and devices --tag take a store or group as well as a tag
    north = [d["id"] for d in json.loads(fleetctl("devices", "--db", db, "--tag", "north", "--json").stdout)]
    assert north == ["box-1", "box-2"]


def test_users(db, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("a long enough password\n")
    r = fleetctl("users", "add", "nora", "--role", "manager", "--group", "north", "--password-file", str(pw),
                 "--db", db)
    assert r.returncode == 0, r.stderr
    assert "a long enough password" not in r.stdout + r.stderr
    r = fleetctl("users", "add", "sam", "--role", "manager", "--db", db, env={"FLEETCTL_USER_PASSWORD": "x" * 12})
    assert r.returncode == 2 and "--group" in r.stderr
    r = fleetctl("users", "add", "root", "--role", "admin", "--db", db, env={"FLEETCTL_USER_PASSWORD": "short"})
    assert r.returncode == 2 and "at least 10" in r.stderr
    r = fleetctl("users", "add", "root", "--role", "admin", "--db", db, stdin="")
    assert r.returncode != 0 and "FLEETCTL_USER_PASSWORD" in r.stderr
    assert fleetctl("users", "add", "root", "--role", "admin", "--db", db,
                    env={"FLEETCTL_USER_PASSWORD": "x" * 12}).returncode == 0
    assert fleetctl("users", "set", "nora", "--group", "north", "--group", "south", "--db", db).returncode == 0
    users = json.loads(fleetctl("users", "list", "--db", db, "--json").stdout)
    assert users == [{"name": "nora", "role": "manager", "groups": ["north", "south"]},
                     {"name": "root", "role": "admin", "groups": []}]
    import sqlite3
    hashes = [h for (h,) in sqlite3.connect(db).execute("SELECT hash FROM office_users")]
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert fleetctl("users", "remove", "nora", "--db", db).returncode == 0
    assert fleetctl("users", "remove", "nora", "--db", db).returncode == 3
    assert json.loads(fleetctl("users", "audit", "--db", db, "--json").stdout) == []


def test_serve_runs_until_sigterm(db, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    assert fleetctl("users", "add", "root", "--role", "admin", "--db", db,
                    env={"FLEETCTL_USER_PASSWORD": "x" * 12}).returncode == 0
    assert fleetctl("serve", "--db", db, "--listen", "nonsense").returncode == 2
    assert fleetctl("serve", "--db", db, "--clips", str(tmp_path / "none")).returncode == 2
    r = fleetctl("serve", "--db", db, "--tz", "Mars/Olympus", "--listen", "127.0.0.1:1")
    assert r.returncode == 2 and "Mars/Olympus" in r.stderr
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "fleet.cli", "serve", "--db", db, "--clips", str(clips), "--listen",
                          f"127.0.0.1:{port}", "--clip-max-age-days", "30"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        c = Client(port)
        deadline = time.monotonic() + 30
        while True:
            try:
                if c.get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and p.poll() is None, "fleetctl serve did not start"
            time.sleep(0.2)
        assert c.get("/")[0] == 303
        assert c.login("root", "x" * 12) == 303
        status, _, body = c.get("/devices")
        assert status == 200 and b"box-3" in body
    finally:
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
    # a clean stop (uvicorn ends by the signal it was stopped with, as systemd expects)
    assert p.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in out, out
    assert "x" * 12 not in out
