"""Any broker a fleet runs: a second, independent implementation (amqtt, MQTT 3.1.1 only, no
shared subscriptions) with default settings on both sides, and a broker that says no to
MQTT 5 in each way it can (a refusal, a closed connection, silence)."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from appliance.cloud import mqtt as box_mqtt
from appliance.cloud.mqtt import BrokerSettings, Handshake
from appliance.cloud.sync import PROTOCOL_FILE, SyncStage
from appliance.config import parse_config
from appliance.journal import Journal, NewEvent
from fleet.ingest import Ingest, IngestStore
from tests.conftest import run_until, spin
from tests.mqtt_broker import Amqtt, free_port


def box_config(tmp_path, url: str, box: str = "box-1"):
    return parse_config(f'[device]\nid = "{box}"\nstate_dir = "{tmp_path / box}"\n[points.till1]\n'
                        f'[sync]\nbroker = "{url}"\n')


@pytest.fixture
def amqtt(tmp_path):
    b = Amqtt(tmp_path / "amqtt").start()
    yield b
    b.stop()


def test_sync_and_ingest_with_default_settings_through_amqtt_every_record_once(tmp_path, amqtt):
    store = IngestStore(tmp_path / "ingest.db")
    ingest = Ingest(BrokerSettings(amqtt.url), store, protocol_auto=True)     # fleetctl ingest's defaults
    ingest.start()
    stages, journals = [], []
    try:
        for n, box in enumerate(("box-1", "box-2")):
            cfg = box_config(tmp_path, amqtt.url, box)
            j = Journal.in_dir(cfg.device.state_dir)
            j.append_many([NewEvent("rating", 1_795_165_200_000 + i, {"value": 1 + n}, "till1", "test")
                           for i in range(400)])
            journals.append(j)
            stage = SyncStage(cfg, j)
            stage.start()
            stages.append(stage)
        end = time.monotonic() + 90
        while time.monotonic() < end and not all(s.acked == j.last_seq() for s, j in zip(stages, journals, strict=True)):
            ingest.step()
            for s in stages:
                s.step()
            time.sleep(0.02)
        assert [s.acked for s in stages] == [j.last_seq() for j in journals]
        assert ingest.settings.protocol == "3.1.1" and ingest.sharing is False
        assert all(s.settings.protocol == "3.1.1" for s in stages)
        # what worked is remembered: the next start goes straight to 3.1.1
        assert (tmp_path / "box-1" / PROTOCOL_FILE).read_text().strip() == "3.1.1"
        assert SyncStage(box_config(tmp_path, amqtt.url), journals[0]).settings.protocol == "3.1.1"
    finally:
        for s in stages:
            s.stop()
        ingest.stop()
        for j in journals:
            j.close()
    rows = store.db.execute("SELECT device, COUNT(*), COUNT(DISTINCT id), MIN(seq), MAX(seq) FROM records"
                            " GROUP BY device ORDER BY device").fetchall()
    assert rows == [("box-1", 400, 400, 1, 400), ("box-2", 400, 400, 1, 400)]
    store.close()


class NoBroker:
    """Accepts TCP connections and then either says nothing or closes them at once."""

    def __init__(self, mode: str):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            if self.mode == "close":
                conn.recv(4096)
                conn.close()
            else:
                self.held.append(conn)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for c in self.held:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("mode", ["silent", "close"])
def test_auto_tries_the_other_protocol_when_mqtt_5_gets_no_connack(tmp_path, monkeypatch, mode):
    monkeypatch.setattr(box_mqtt, "HANDSHAKE_S", 0.5)
    fake = NoBroker(mode)
    try:
        cfg = box_config(tmp_path, f"mqtt://127.0.0.1:{fake.port}")
        with Journal.in_dir(cfg.device.state_dir) as j:
            stage = SyncStage(cfg, j)
            assert stage.settings.protocol == "5"
            stage.start()
            try:
                assert run_until(lambda: stage.settings.protocol == "3.1.1", stage, limit=20)
            finally:
                stage.stop()
            assert fake.accepted >= 1
            assert not (tmp_path / "box-1" / PROTOCOL_FILE).exists()    # nothing worked: nothing remembered
    finally:
        fake.close()


def test_a_broker_that_is_down_says_nothing_about_protocols(tmp_path):
    cfg = box_config(tmp_path, f"mqtt://127.0.0.1:{free_port()}")    # nothing listens
    with Journal.in_dir(cfg.device.state_dir) as j:
        stage = SyncStage(cfg, j)
        stage.start()
        try:
            spin(stage, 150, 0.02)
            assert stage.settings.protocol == "5"
        finally:
            stage.stop()


def test_handshake_rules():
    h = Handshake(timeout_s=5)
    assert not h.failed(100.0)
    h.opened_at = 100.0
    assert not h.failed(104.0) and h.failed(105.5)                   # silence
    h2 = Handshake()
    h2.opened_at = 1.0
    h2.closed()
    assert h2.failed()                                               # closed before a CONNACK

    class RC:
        def __init__(self, v, fail):
            self.value, self.is_failure = v, fail
    h3 = Handshake()
    h3.opened_at = 1.0
    h3.connack(RC(0, False))
    h3.closed()                                                      # a normal disconnect later
    assert not h3.failed(1e9)
    h4 = Handshake()
    h4.connack(RC(132, True))
    assert h4.failed()
    h5 = Handshake()
    h5.connack(RC(135, True))                                        # not authorised: not a protocol matter
    assert not h5.failed()


def test_the_ingest_shares_the_subscription_on_mosquitto(tmp_path, broker):
    store = IngestStore(tmp_path / "ingest.db")
    ingest = Ingest(BrokerSettings(broker.url), store, protocol_auto=True)
    ingest.start()
    try:
        end = time.monotonic() + 10
        while not ingest.subscribed.is_set() and time.monotonic() < end:
            ingest.step()
            time.sleep(0.02)
        assert ingest.subscribed.is_set() and ingest.sharing is True and ingest.settings.protocol == "5"
    finally:
        ingest.stop()
        store.close()


def test_two_ingest_workers_share_the_devices_and_store_each_record_once(tmp_path, broker):
    store = IngestStore(tmp_path / "ingest.db")
    workers = [Ingest(BrokerSettings(broker.url), store, client_id=f"ingest-{k}", protocol_auto=True)
               for k in (1, 2)]
    for w in workers:
        w.start()
    end = time.monotonic() + 10
    while not all(w.subscribed.is_set() for w in workers) and time.monotonic() < end:
        time.sleep(0.02)
    stages, journals = [], []
    try:
        for box in ("box-1", "box-2", "box-3"):
            cfg = parse_config(f'[device]\nid = "{box}"\nstate_dir = "{tmp_path / box}"\n[points.till1]\n'
                               f'[sync]\nbroker = "{broker.url}"\nbatch_max = 20\n')
            j = Journal.in_dir(cfg.device.state_dir)
            j.append_many([NewEvent("rating", 1_795_165_200_000 + i, {"value": 1}, "till1", "test")
                           for i in range(300)])
            journals.append(j)
            stages.append(SyncStage(cfg, j))
            stages[-1].start()
        end = time.monotonic() + 60
        while time.monotonic() < end and not all(s.acked == j.last_seq() for s, j in zip(stages, journals,
                                                                                          strict=True)):
            for s in stages:
                s.step()
            time.sleep(0.01)
        assert all(s.acked == 300 for s in stages)
        assert all(w.sharing is True for w in workers)
        assert all(w.stored > 0 for w in workers)                      # both took a share
        assert sum(w.stored for w in workers) >= 900
    finally:
        for s in stages:
            s.stop()
        for w in workers:
            w.stop()
        for j in journals:
            j.close()
    n, distinct = store.db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone()
    assert n == distinct == 900
    store.close()
