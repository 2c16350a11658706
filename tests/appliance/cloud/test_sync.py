"""Store-and-forward through a real Mosquitto: every journal record reaches the ingest
exactly once, acknowledged end to end, across a broker restart; bad payloads change nothing."""
from __future__ import annotations

import time

from appliance.config import parse_config
from appliance.journal import Journal, NewEvent
from appliance.cloud.mqtt import BrokerSettings
from appliance.cloud.sync import SyncStage
from fleet.ingest import Ingest, IngestStore
from tests.conftest import clip_event, run_until, spin


def device_config(tmp_path, url):
    return parse_config(f'[device]\nid = "box-1"\nstate_dir = "{tmp_path / "state"}"\n[points.till1]\n'
                        f'[sync]\nbroker = "{url}"\nbatch_max = 50\n')


def fill(journal: Journal, n: int, start: int = 0) -> None:
    journal.append_many([NewEvent("rating", 1_795_165_200_000 + i, {"value": 1, "class": "negative"}, "till1",
                                  "test") for i in range(start, start + n)])


def start_cloud(tmp_path, url: str):
    """A box's config, and an ingest on SQLite listening on the broker."""
    store = IngestStore(tmp_path / "ingest.db")
    ingest = Ingest(BrokerSettings(url), store)
    ingest.start()
    return device_config(tmp_path, url), store, ingest


def test_every_record_once_acknowledged_end_to_end(tmp_path, broker):
    cfg, store, ingest = start_cloud(tmp_path, broker.url)
    with Journal.in_dir(cfg.device.state_dir) as j:
        fill(j, 1000)
        stage = SyncStage(cfg, j)
        stage.start()
        try:
            assert run_until(lambda: stage.acked == j.last_seq(), stage)
            assert stage.backlog()["count"] == 0
            ids = {e.id for e in j.iter_all()}
        finally:
            stage.stop()
    ingest.stop()
    rows = store.db.execute("SELECT id FROM records").fetchall()
    assert len(rows) == 1000 and {r[0] for r in rows} == ids
    [dev] = store.devices()
    assert dev["id"] == "box-1" and dev["journal_records"] == 1000


def test_broker_restart_mid_stream_loses_and_doubles_nothing(tmp_path, broker):
    cfg, store, ingest = start_cloud(tmp_path, broker.url)
    with Journal.in_dir(cfg.device.state_dir) as j:
        fill(j, 600)
        stage = SyncStage(cfg, j)
        stage.start()
        try:
            assert run_until(lambda: stage.acked >= 100, stage)
            broker.stop()                                  # the broker goes down mid-stream
            fill(j, 400, start=600)                        # the box keeps journalling
            spin(stage, 50, 0.02)
            broker.start()
            assert run_until(lambda: stage.acked == j.last_seq(), stage, limit=90)
        finally:
            stage.stop()
    ingest.stop()
    n, distinct = store.db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone()
    assert n == distinct == 1000


def test_bad_payloads_change_nothing(tmp_path, broker):
    import paho.mqtt.client as mqtt
    store = IngestStore(tmp_path / "ingest.db")
    ingest = Ingest(BrokerSettings(broker.url), store)
    ingest.start()
    time.sleep(0.5)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="evil")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    for payload in (b"not json", b'{"device": "box-2", "prev": 5, "last": 6, "records": [{"seq": 9}]}',
                    b'{"device": "box-3", "prev": 0, "last": 1, "records": []}'):
        c.publish("ca/v1/box-2/journal", payload, qos=1).wait_for_publish(5)
    end = time.monotonic() + 10
    while ingest.rejected < 3 and time.monotonic() < end:
        time.sleep(0.05)
    c.loop_stop()
    ingest.stop()
    assert ingest.rejected == 3
    assert store.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0


def test_clips_upload_in_chunks_byte_identical_after_the_events(tmp_path, broker):
    import hashlib
    import os
    cfg = parse_config(f'[device]\nid = "box-1"\nstate_dir = "{tmp_path / "state"}"\n[points.till1]\n'
                       f'[sync]\nbroker = "{broker.url}"\nchunk_kib = 16\n')
    clips_dir = tmp_path / "state" / "clips"
    clips_dir.mkdir(parents=True)
    store = IngestStore(tmp_path / "ingest.db")
    ingest = Ingest(BrokerSettings(broker.url), store, clips_dir=tmp_path / "cloud-clips")
    ingest.start()
    sums = {}
    with Journal.in_dir(cfg.device.state_dir) as j:
        fill(j, 50)
        for i, size in enumerate([0, 1, 16 * 1024, 100_000]):
            data = os.urandom(size)
            (clips_dir / f"clip{i}.ogg").write_bytes(data)
            sums[f"clip{i}"] = hashlib.sha256(data).hexdigest()
            j.append(clip_event(f"clip{i}", data, 1_795_165_300_000 + i))
        stage = SyncStage(cfg, j)
        stage.start()
        try:
            assert run_until(lambda: len(list(j.iter_all(["clip_acked"]))) == 4, stage)
        finally:
            stage.stop()
    ingest.stop()
    for cid, digest in sums.items():
        got = (tmp_path / "cloud-clips" / "box-1" / f"{cid}.ogg").read_bytes()
        assert hashlib.sha256(got).hexdigest() == digest
    assert store.db.execute("SELECT COUNT(*) FROM clips").fetchone()[0] == 4


def test_health_info_and_sync_status(tmp_path, broker):
    import json as _json
    import signal
    import subprocess
    import sys

    import paho.mqtt.client as mqtt

    from tests.conftest import ROOT, run_cli
    (tmp_path / "box.toml").write_text(
        f'[device]\nid = "box-7"\nstate_dir = "{tmp_path / "state"}"\n[points.till1]\n'
        f'[sync]\nbroker = "{broker.url}"\nhealth_interval_s = 0.5\nusername = "box-7"\npassword = "hunter2-secret"\n')
    with Journal.in_dir(tmp_path / "state") as j:
        fill(j, 30)
    seen: dict = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
    c.on_message = lambda cl, u, m: seen.setdefault(m.topic.rsplit("/", 1)[1], m.payload)
    c.connect("127.0.0.1", broker.port)
    c.subscribe("ca/v1/box-7/#", qos=1)
    c.loop_start()
    before = _json.loads(run_cli("--config", str(tmp_path / "box.toml"), "sync", "status", "--json").stdout)
    assert before["backlog"] == 30 and before["daemon_running"] is False
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(tmp_path / "box.toml"),
                             "run", "sync"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end and not {"status", "info", "health", "journal"} <= set(seen):
            time.sleep(0.1)
        time.sleep(1.5)
        st = _json.loads(run_cli("--config", str(tmp_path / "box.toml"), "sync", "status", "--json").stdout)
        status_file = tmp_path / "state" / "sync-status.json"
        written = status_file.stat().st_mtime_ns
        time.sleep(3)                                  # idle: nothing changes, nothing is written
        assert status_file.stat().st_mtime_ns == written
        assert _json.loads(run_cli("--config", str(tmp_path / "box.toml"), "sync", "status", "--json").stdout)[
            "daemon_running"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        c.loop_stop()
    assert _json.loads(seen["status"])["state"] == "online"
    info = _json.loads(seen["info"])
    assert info["device"] == "box-7" and "schema" in info and info["config_hash"]
    assert all(b"hunter2-secret" not in payload for payload in seen.values())     # no secret goes up
    health = _json.loads(seen["health"])
    assert {"uptime_s", "load", "disk", "backlog", "time_synced", "versions", "rf_last_seen"} <= set(health)
    assert st["daemon_running"] and st["connected"] and st["backlog"] == 30   # no ingest: nothing acknowledged
    after = _json.loads(run_cli("--config", str(tmp_path / "box.toml"), "sync", "status", "--json").stdout)
    assert after["daemon_running"] is False                                     # stopped: said so


def test_fleet_report_counts_what_the_boxes_counted(tmp_path, broker):
    """Two boxes run the core over a day, sync to the ingest; fleetctl report equals the
    boxes' own metrics summed."""
    import json as _json
    import subprocess
    import sys

    from appliance.core import CoreStage
    from appliance.events import load_file
    from tests.appliance.test_core_stage import random_day
    from tests.conftest import ROOT, make_config, write_events
    store = IngestStore(tmp_path / "ingest.db")
    ingest = Ingest(BrokerSettings(broker.url), store)
    ingest.start()
    expected = {"contacts": 0, "ratings": 0, "top": 0, "negative": 0, "receipts": 0, "orphan_ratings": 0}
    for n, box in enumerate(("box-a", "box-b")):
        d = tmp_path / box
        d.mkdir()
        cfg_path = make_config(d, f'\n[sync]\nbroker = "{broker.url}"\n')
        cfg_path.write_text(cfg_path.read_text().replace("[device]\n", f'[device]\nid = "{box}"\n'))
        from appliance.config import load_config
        cfg = load_config(cfg_path)
        events = write_events(d / "day.jsonl", random_day(n + 5, n_contacts=20))
        evs, errs = load_file(str(events), cfg)
        assert not errs
        with Journal.in_dir(cfg.device.state_dir) as j:
            j.append_many(evs)
            CoreStage(cfg, j, reorder_ms=0).step(evs[-1].ts + 3_600_000)
            r = subprocess.run([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg_path), "report",
                                "--format", "json"], cwd=ROOT, capture_output=True, text=True)
            mine = _json.loads(r.stdout)["total"]
            for k in expected:
                expected[k] += mine[k]
            stage = SyncStage(cfg, j)
            stage.start()
            assert run_until(lambda s=stage: s.acked == j.last_seq(), stage)
            stage.stop()
    # the ingest stores each box's retained "offline" when it arrives: wait for it, not for luck
    end = time.monotonic() + 30
    while any(d["online"] for d in store.devices()) and time.monotonic() < end:
        time.sleep(0.02)
    ingest.stop()
    store.close()
    r = subprocess.run([sys.executable, "-m", "fleet.cli", "report", "--db", str(tmp_path / "ingest.db")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = _json.loads(r.stdout)
    assert set(out) == {"overall", "box-a", "box-b"}
    assert {k: out["overall"][k] for k in expected} == expected
    for by in ("day", "owner", "month"):                 # periods and employees add up to the whole
        r = subprocess.run([sys.executable, "-m", "fleet.cli", "report", "--db", str(tmp_path / "ingest.db"),
                            "--by", by, "--json"], cwd=ROOT, capture_output=True, text=True)
        groups = _json.loads(r.stdout)
        parts = [m for k, m in groups.items() if k != "overall"]
        assert parts and {k: groups["overall"][k] for k in expected} == expected
        assert sum(m["contacts"] for m in parts) == expected["contacts"]
        assert sum(m["ratings"] for m in parts) == expected["ratings"]
    d = subprocess.run([sys.executable, "-m", "fleet.cli", "devices", "--db", str(tmp_path / "ingest.db"), "--json"],
                       cwd=ROOT, capture_output=True, text=True)
    devs = _json.loads(d.stdout)
    assert [(x["id"], x["online"]) for x in devs] == [("box-a", False), ("box-b", False)]
    assert all(x["journal_records"] > 100 and x["last_seen"] for x in devs)


def test_mqtt_3_1_1_end_to_end(tmp_path, broker):
    cfg = parse_config(f'[device]\nid = "box-3"\nstate_dir = "{tmp_path / "state"}"\n[points.till1]\n'
                       f'[sync]\nbroker = "{broker.url}"\nprotocol = "3.1.1"\n')
    store = IngestStore(tmp_path / "ingest.db")
    ingest = Ingest(BrokerSettings(broker.url, protocol="3.1.1"), store)
    ingest.start()
    with Journal.in_dir(cfg.device.state_dir) as j:
        fill(j, 120)
        stage = SyncStage(cfg, j)
        assert stage.client.protocol == 4          # MQTTv311
        stage.start()
        try:
            assert run_until(lambda: stage.acked == j.last_seq(), stage)
        finally:
            stage.stop()
    ingest.stop()
    assert store.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 120


def test_auto_falls_back_to_3_1_1_when_the_broker_refuses_5(tmp_path, broker):
    from appliance.cloud.mqtt import refused_for_protocol
    cfg = parse_config(f'[device]\nid = "box-4"\nstate_dir = "{tmp_path / "state"}"\n[points.till1]\n'
                       f'[sync]\nbroker = "{broker.url}"\n')
    assert refused_for_protocol(132) and refused_for_protocol(1) and not refused_for_protocol(135)
    with Journal.in_dir(cfg.device.state_dir) as j:
        fill(j, 10)
        stage = SyncStage(cfg, j)
        assert stage.client.protocol == 5
        stage.handshake.refused = True              # as a CONNACK 1 / reason 132 sets it
        stage.start()
        try:
            stage.step()
            assert stage.client.protocol == 4 and stage.settings.protocol == "3.1.1"
            assert stage.connected.wait(10)
        finally:
            stage.stop()


def test_ingest_on_postgresql(tmp_path, broker):
    """The same ingest, PostgreSQL by URL (a real server on loopback)."""
    from tests.postgres_server import Postgres
    pg = Postgres(tmp_path).start()
    try:
        cfg = device_config(tmp_path, broker.url)
        store = IngestStore(pg.url)
        ingest = Ingest(BrokerSettings(broker.url), store)
        ingest.start()
        with Journal.in_dir(cfg.device.state_dir) as j:
            fill(j, 300)
            stage = SyncStage(cfg, j)
            stage.start()
            try:
                assert run_until(lambda: stage.acked == j.last_seq(), stage)
            finally:
                stage.stop()
        ingest.stop()
        n, distinct = store.db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone()
        assert n == distinct == 300
        [dev] = store.devices()
        assert dev["id"] == "box-1" and dev["journal_records"] == 300 and dev["online"] is False
        store.close()
    finally:
        pg.stop()
