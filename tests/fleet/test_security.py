"""TLS with verification, per-device client certificates, and a broker ACL that confines
each device to its own topic root; wrong CA and expired certificates are refused; no
secret reaches the logs."""
from __future__ import annotations

import logging
import time


from appliance.config import parse_config
from appliance.journal import Journal, NewEvent
from appliance.cloud.mqtt import BrokerSettings, make_client
from appliance.cloud.sync import SyncStage
from tests.conftest import spin
from fleet.ingest import Ingest, IngestStore
from tests.mqtt_broker import Mosquitto, can_connect


def client_for(b, cn=None, cert=None, ca_file=None, client_id="t"):
    cert = cert or b.certs[cn]
    c, host, port = make_client(BrokerSettings(b.tls_url, ca_file or str(b.ca.path), str(cert[0]), str(cert[1])),
                                client_id)
    result = {}
    c.on_connect = lambda cl, u, f, rc, p: result.setdefault("rc", rc)
    c.on_disconnect = lambda cl, u, f, rc, p: result.setdefault("gone", rc)
    return c, host, port, result


def connects(b, cn=None, cert=None, ca_file=None) -> bool:
    cert = cert or b.certs[cn]
    return can_connect(BrokerSettings(b.tls_url, ca_file or str(b.ca.path), str(cert[0]), str(cert[1])))


def test_device_syncs_over_mutual_tls(tmp_path, tls):
    cert, key = tls.certs["box-1"]
    cfg = parse_config(f'[device]\nid = "box-1"\nstate_dir = "{tmp_path / "state"}"\n[points.p]\n'
                       f'[sync]\nbroker = "{tls.tls_url}"\nca_file = "{tls.ca.path}"\ncert_file = "{cert}"\n'
                       f'key_file = "{key}"\n')
    icert = tls.certs["ingest"]
    store = IngestStore(tmp_path / "ingest.db")
    ingest = Ingest(BrokerSettings(tls.tls_url, str(tls.ca.path), str(icert[0]), str(icert[1])), store)
    ingest.start()
    with Journal.in_dir(cfg.device.state_dir) as j:
        j.append_many([NewEvent("rating", 1_795_165_200_000 + i, {"value": 1}, "p") for i in range(20)])
        stage = SyncStage(cfg, j)
        stage.start()
        end = time.monotonic() + 30
        while stage.acked < j.last_seq() and time.monotonic() < end:
            stage.step()
            time.sleep(0.02)
        stage.stop()
        assert stage.acked == j.last_seq()
    ingest.stop()
    assert store.db.execute("SELECT COUNT(*) FROM records WHERE device = 'box-1'").fetchone()[0] == 20


def test_a_device_cannot_read_or_write_another_devices_topics(tmp_path, tls):
    got: dict[str, list] = {"box-1": [], "box-2": []}
    clients = []
    for cn in ("box-1", "box-2"):
        c, host, port, _ = client_for(tls, cn, client_id=cn)
        c.on_message = lambda cl, u, m, cn=cn: got[cn].append(m.topic)
        c.connect(host, port)
        c.loop_start()
        c.subscribe("ca/v1/box-2/#", qos=1)          # box-1 tries to listen to box-2
        clients.append(c)
    time.sleep(0.5)
    box1, box2 = clients
    box1.publish("ca/v1/box-2/journal", b"forged by box-1", qos=1).wait_for_publish(5)
    box2.publish("ca/v1/box-2/health", b"{}", qos=1).wait_for_publish(5)
    time.sleep(1.0)
    for c in clients:
        c.loop_stop()
        c.disconnect()
    assert got["box-2"] == ["ca/v1/box-2/health"]     # box-1's forgery never arrived
    assert got["box-1"] == []                         # and box-1 heard nothing of box-2


def test_wrong_ca_and_expired_certificates_are_refused(tmp_path, tls):
    assert connects(tls, cn="box-1")
    assert not connects(tls, cert=tls.expired)                             # expired client certificate
    assert not connects(tls, cert=tls.stranger)                            # signed by another CA
    assert not connects(tls, cn="box-1", ca_file=str(tmp_path / "stranger" / "stranger-ca.pem"))  # broker not trusted


def test_no_secret_in_logs(tmp_path, caplog):
    broker = Mosquitto(tmp_path / "broker").start()
    secret = "s3cret-Pa55word-xyz"
    try:
        cfg = parse_config(f'[device]\nid = "box-9"\nstate_dir = "{tmp_path / "state"}"\n[points.p]\n'
                           f'[sync]\nbroker = "{broker.url}"\nusername = "box-9"\npassword = "{secret}"\n')
        caplog.set_level(logging.DEBUG)
        with Journal.in_dir(cfg.device.state_dir) as j:
            stage = SyncStage(cfg, j)
            stage.start()
            spin(stage, 50, 0.02)
            stage.stop()
    finally:
        broker.stop()
    assert "connected to" in caplog.text and secret not in caplog.text
