"""Enrolment from nothing through a real Mosquitto configured by ``fleetctl ca init`` (TLS,
client certificates, ACL, CRL): claim, CSR, certificate, reconnect with it; one-time tokens
and the allow-list; the claim credential confined to the provisioning topics; a revoked
device refused by the provisioning service and by the broker."""
from __future__ import annotations

import os
import stat
import time

from cryptography import x509
from cryptography.x509.oid import NameOID

from appliance.cloud.mqtt import make_client
from provisioning.enrol import EnrolmentError, claim_settings, request_certificate
from provisioning.identity import Identity
from tests.mqtt_broker import can_connect
from tests.provisioning.boxes import Box


def test_two_boxes_enrol_from_nothing_and_sync_with_their_own_certificates(fleet):
    [token] = fleet.ca.add_tokens(1)
    fleet.ca.allow("box-2")                                  # box-2 is allow-listed: any claim token
    box1 = Box(fleet.box_config("box-1", token=token))
    box2 = Box(fleet.box_config("box-2", token="not-a-token"))
    try:
        for b in (box1, box2):
            ident = Identity(os.path.join(b.cfg.device.state_dir, "identity"))
            st = os.stat(ident.key_path)
            assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
            cert = ident.certificate()
            assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == b.cfg.device.id
            assert cert.issuer == fleet.ca.cert.subject
            # the box connects with its own certificate, not the claim one
            assert b.stage.settings.cert_file == str(ident.cert_path)
            b.add(50)
        assert box1.run_until(lambda: box1.synced() and box2.synced(), others=[box2])
        rows = dict(fleet.store.db.execute("SELECT device, COUNT(*) FROM records GROUP BY device").fetchall())
        assert rows == {"box-1": 50, "box-2": 50}
        assert fleet.ca.add_tokens(0) == [] and token not in (fleet.ca.dir / "tokens").read_text()  # used up
        # a restart does not enrol again
        issued = len(fleet.ca.issued())
        box1.restart()
        assert len(fleet.ca.issued()) == issued
    finally:
        box1.stop()
        box2.stop()


def test_a_used_or_unknown_token_is_refused(fleet, tmp_path):
    [token] = fleet.ca.add_tokens(1)
    path = fleet.box_config("box-3", token=token)
    from appliance.config import load_config
    cfg = load_config(path)
    ident = Identity(tmp_path / "id3")
    request_certificate(claim_settings(cfg), "ca/v1", "box-3", ident, token)
    try:
        request_certificate(claim_settings(cfg), "ca/v1", "box-4", Identity(tmp_path / "id4"), token)
        raise AssertionError("a used token was accepted")
    except EnrolmentError as exc:
        assert "unknown or used claim token" in str(exc)
    for bad in ("provision", "ingest", "claim"):            # service identities are never issued to a box
        try:
            request_certificate(claim_settings(cfg), "ca/v1", bad, Identity(tmp_path / f"id-{bad}"), "x")
            raise AssertionError(f"{bad} was issued")
        except EnrolmentError as exc:
            assert "cannot be a device id" in str(exc)
    assert [r["device"] for r in fleet.ca.issued()] == ["box-3"]


def test_the_claim_credential_cannot_touch_any_device_topic(fleet):
    fleet.ca.allow("box-1")
    box = Box(fleet.box_config("box-1"))
    try:
        box.add(5)
        assert box.run_until(box.synced)
        heard: list[str] = []
        c, host, port = make_client(fleet.settings("claim"), "claim-snoop")
        c.on_message = lambda cl, u, m: heard.append(m.topic)
        c.connect(host, port)
        c.loop_start()
        c.subscribe("ca/v1/box-1/#", qos=1)
        c.subscribe("ca/v1/+/config/desired", qos=1)
        c.subscribe("ca/v1/#", qos=1)
        time.sleep(0.5)
        forged = b'{"device":"box-1","prev":5,"last":6,"records":[]}'
        c.publish("ca/v1/box-1/journal", forged, qos=1).wait_for_publish(5)
        c.publish("ca/v1/box-1/config/reported", b'{"version":99,"status":"applied"}', qos=1).wait_for_publish(5)
        c.publish("ca/v1/box-1/cmd/x", b'{"id":"x","action":"reboot"}', qos=1).wait_for_publish(5)
        box.add(5, start=5)
        assert box.run_until(box.synced)
        time.sleep(1.0)
        c.loop_stop()
        c.disconnect()
        assert heard == []                                   # it read nothing of any device
        assert not (box.path.parent / "rebooted").exists()   # its command never arrived
        n = fleet.store.db.execute("SELECT COUNT(*) FROM records WHERE device = 'box-1'").fetchone()[0]
        assert n == 10 and fleet.ingest.rejected == 0        # its forgery never reached the ingest
    finally:
        box.stop()


def test_a_revoked_device_is_refused(fleet, tmp_path):
    fleet.ca.allow("box-1")
    fleet.ca.allow("box-2")
    box1, box2 = Box(fleet.box_config("box-1")), Box(fleet.box_config("box-2"))
    s2 = box2.stage.settings
    box1.stop()
    box2.stop()
    assert fleet.ca.revoke("box-2") == 1
    crl = x509.load_pem_x509_crl((fleet.ca.dir / "crl.pem").read_bytes())
    assert len(list(crl)) == 1
    fleet.restart_broker()                                   # the broker reads the new CRL
    time.sleep(0.5)
    assert not can_connect(s2)                               # the broker refuses its certificate
    assert can_connect(fleet.settings("ingest"))
    box1.start()                                             # box-1 goes on as before
    try:
        box1.add(3)
        assert box1.run_until(box1.synced)
    finally:
        box1.stop()
    # and the provisioning service will not issue box-2 another certificate
    from appliance.config import load_config
    cfg = load_config(fleet.box_config("box-2"))
    try:
        request_certificate(claim_settings(cfg), "ca/v1", "box-2", Identity(tmp_path / "again"), "x")
        raise AssertionError("a revoked device was enrolled again")
    except EnrolmentError as exc:
        assert "revoked" in str(exc)


def test_a_certificate_near_expiry_is_renewed_without_losing_the_journals_place(fleet):
    from appliance.config import load_config
    path = fleet.box_config("box-5")
    cfg = load_config(path)
    ident = Identity(os.path.join(cfg.device.state_dir, "identity"))
    ident.install("box-5", fleet.ca.sign("box-5", ident.csr("box-5"), None, days=5), fleet.ca.ca_pem)
    first = ident.certificate().serial_number
    box = Box(path)                                          # enrolled already: no claim
    try:
        assert len(fleet.ca.issued()) == 1
        box.add(20)
        assert box.run_until(box.synced)
        acked = box.stage.acked
        assert box.run_until(lambda: box.agent.renewed == 1)  # 5 days left < renew_before_days (30)
        cert = ident.certificate()
        assert cert.serial_number != first and (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 364
        assert [r["renewal"] for r in fleet.ca.issued()] == [True, True]
        assert box.stage.acked == acked                      # the journal's place did not move
        box.add(5, start=20)
        assert box.run_until(box.synced) and box.stage.acked == acked + 5
        assert box.stage.settings.cert_file == str(ident.cert_path)
        n = fleet.store.db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records WHERE device='box-5'").fetchone()
        assert n == (25, 25)
    finally:
        box.stop()


def test_fleetctl_provision_serve_enrols_a_box(fleet, tmp_path):
    import signal
    import subprocess
    import sys
    fleet.provision.stop()                                   # the command line's service instead
    [token] = fleet.ca.add_tokens(1)
    proc = subprocess.Popen([sys.executable, "-m", "fleet.cli", "provision", "serve", "--ca", str(fleet.ca.dir),
                             "--broker", fleet.url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.5)
        box = Box(fleet.box_config("box-6", token=token))
        box.stop()
        assert Identity(os.path.join(box.cfg.device.state_dir, "identity")).enrolled()
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0 and "issued a certificate to box-6" in out
