"""Fleet commands end to end (real Mosquitto with the fleet's TLS and ACL): results, expiry,
a repeated id run once, each action doing what it says, bad commands rejected alone."""
from __future__ import annotations

import json
import tarfile
import time

from appliance import vocabulary as v
from appliance.config.watch import RESTART_DIR
from fleet.operator import Operator
from tests.provisioning.boxes import Box


def ask(op, box, action, args=None, **kw):
    """Send a command and drive the box until its result arrives."""
    return box.while_running(lambda: op.command("box-1", action, args, wait_s=30, **kw), limit=35)


def test_commands_run_once_with_results_and_expiry(fleet):
    fleet.ca.allow("box-1")
    box = Box(fleet.box_config("box-1"))
    try:
        box.add(20)
        assert box.run_until(box.synced)
        with Operator(fleet.settings("operator")) as op:
            r = ask(op, box, "set_owner", {"point": "till1", "staff": "anna"}, cmd_id="owner-1")
            assert r.status == "ok" and r.result["staff"] == "anna"
            again = ask(op, box, "set_owner", {"point": "till1", "staff": "anna"}, cmd_id="owner-1")
            assert again.status == "ok" and again.result == r.result          # the first answer again
            staff = [e for e in box.journal.iter_all([v.STAFF])]
            assert len(staff) == 1 and staff[0].point == "till1" and staff[0].data["staff"] == "anna"
            assert box.journal.count(v.COMMAND) == 1 and box.journal.count(v.COMMAND_RESULT) == 1

            r = ask(op, box, "restart", {"daemon": "core"})
            assert r.status == "ok" and (box.path.parent / "state" / RESTART_DIR / "core").exists()
            r = ask(op, box, "restart", {"daemon": "everything"})
            assert r.status == "error" and "args.daemon" in r.error

            r = ask(op, box, "reboot", cmd_id="reboot-1")
            assert r.status == "ok"
            end = time.monotonic() + 5
            while not (box.path.parent / "rebooted").exists() and time.monotonic() < end:
                time.sleep(0.05)
            assert (box.path.parent / "rebooted").exists()
            (box.path.parent / "rebooted").unlink()
            assert ask(op, box, "reboot", cmd_id="reboot-1").status == "ok"
            time.sleep(0.5)
            assert not (box.path.parent / "rebooted").exists()                # a repeated id: not again

            r = ask(op, box, "reboot", cmd_id="late-1", expires_in_s=-5)
            assert r.status == "expired"
            time.sleep(0.3)
            assert not (box.path.parent / "rebooted").exists()

            before = fleet.store.db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            r = ask(op, box, "resync", {"from_seq": 1})
            assert r.status == "ok" and r.result["from_seq"] == 1
            assert box.run_until(lambda: box.stage.sent >= box.journal.last_seq() and box.synced())
            after = fleet.store.db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone()
            assert after[0] == after[1] >= before                             # sent again, stored once
            assert ask(op, box, "resync", {"from_seq": "all"}).status == "error"

            r = ask(op, box, "test_notification", {"destination": "nowhere"})
            assert r.status == "error" and "args.destination" in r.error
    finally:
        box.stop()


def test_a_diagnostics_bundle_is_uploaded_like_a_clip_with_no_secret_in_it(fleet):
    fleet.ca.allow("box-1")
    secret = "hunter2-very-secret"
    box = Box(fleet.box_config("box-1", extra="",
                               token=secret))                                  # the claim token is a secret
    try:
        with Operator(fleet.settings("operator")) as op:
            r = ask(op, box, "diagnostics")
            assert r.status == "ok", r.error
            clip = r.result["clip"]
            assert box.run_until(lambda: fleet.store.has_clip("box-1", clip), limit=30)
        path = fleet.tmp / "clips" / "box-1" / r.result["file"]
        with tarfile.open(path) as tar:
            doc = json.load(tar.extractfile("diagnostics.json"))
            log = tar.extractfile("log.txt").read().decode()
        assert doc["device"] == "box-1" and doc["versions"]["appliance"] and doc["config_hash"]
        assert doc["journal"]["last_seq"] >= 1 and "by_type" in doc["journal"] and "disk" in json.dumps(doc["health"])
        assert doc["config"]["provisioning"]["claim_token"] == "***"
        assert secret not in path.read_bytes().decode("latin-1") and secret not in json.dumps(doc) + log
    finally:
        box.stop()


def test_bad_commands_fail_alone(fleet):
    fleet.ca.allow("box-1")
    box = Box(fleet.box_config("box-1"))
    try:
        with Operator(fleet.settings("operator")) as op:
            for suffix, payload in [("cmd/c1", b"{not json"), ("cmd/c2", b'{"id":"other","action":"reboot"}'),
                                    ("cmd/c3", b'{"id":"c3","action":"format_disk"}'),
                                    ("cmd/c4", b'{"id":"c4","action":"reboot","args":' + b'[' * 5000 + b']' * 5000 + b'}'),
                                    ("cmd/..", b'{"id":"..","action":"reboot"}'), ("cmd/c5", b"\xff\xfe" * 100)]:
                op.send_raw("box-1", suffix, payload)
            r = ask(op, box, "set_owner", {"point": "till2", "staff": "bo"})
            assert r.status == "ok"
        assert not (box.path.parent / "rebooted").exists()
        assert box.journal.count(v.COMMAND) == 1                               # only the good one ran
    finally:
        box.stop()
