"""Faults between the box and the cloud: connections cut mid-batch and mid-clip, a broker
without persistence restarted, the ingest down while the box publishes, the sync daemon
SIGKILLed at random 100 times. Every record arrives exactly once, every clip
byte-identical, and the box's backlog drains to zero."""
from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from appliance.config import parse_config
from appliance.journal import Journal, NewEvent
from appliance.cloud.mqtt import BrokerSettings
from appliance.cloud.sync import STAGE, SyncStage
from fleet.ingest import Ingest, IngestStore
from tests.conftest import ROOT, clip_event, run_until, spin
from tests.mqtt_broker import Mosquitto
from tests.tcp_proxy import Proxy

KILLS = int(os.environ.get("APPLIANCE_SYNC_KILLS", "100"))


def cfg_for(tmp_path, url, extra=""):
    text = (f'[device]\nid = "box-1"\nstate_dir = "{tmp_path / "state"}"\n[points.p]\n'
            f'[sync]\nbroker = "{url}"\nbatch_max = 40\nchunk_kib = 8\nack_timeout_s = 2\n{extra}')
    (tmp_path / "box.toml").write_text(text)
    return parse_config(text)


def add_records(j: Journal, n: int) -> None:
    j.append_many([NewEvent("rating", 1_795_165_200_000 + i, {"value": 1, "pad": "x" * 200}, "p", "test")
                   for i in range(n)])


def add_clips(j: Journal, clips_dir, n: int, size: int, start: int = 0) -> dict:
    clips_dir.mkdir(parents=True, exist_ok=True)
    sums = {}
    for i in range(start, start + n):
        data = os.urandom(size)
        (clips_dir / f"k{i}.ogg").write_bytes(data)
        sums[f"k{i}"] = hashlib.sha256(data).hexdigest()
        j.append(clip_event(f"k{i}", data, 1_795_165_300_000 + i, "p"))
    return sums


def drained(j: Journal, clips: int) -> bool:
    """All records acknowledged, all clips acknowledged (the backlog is zero)."""
    return j.cursor(STAGE) >= j.last_seq() and len(list(j.iter_all(["clip_acked"]))) >= clips


def check_cloud(tmp_path, store: IngestStore, j: Journal, sums: dict) -> None:
    """Everything the box counts as delivered is in the cloud exactly once; clips identical."""
    cursor = j.cursor(STAGE)
    delivered = {e.id for e in j.iter_all() if e.seq <= cursor}
    n, distinct = store.db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone()
    stored = {r[0] for r in store.db.execute("SELECT id FROM records")}
    assert n == distinct                                   # nothing doubled
    assert delivered <= stored                             # nothing the box forgot is missing
    for cid, digest in sums.items():
        data = (tmp_path / "cloud" / "box-1" / f"{cid}.ogg").read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest


def pump(stage: SyncStage, j: Journal, clips: int, limit: float = 90) -> bool:
    return run_until(lambda: drained(j, clips), stage, limit)


def start_ingest(tmp_path, url) -> tuple[Ingest, IngestStore]:
    store = IngestStore(tmp_path / "ingest.db")
    ingest = Ingest(BrokerSettings(url), store, clips_dir=tmp_path / "cloud")
    ingest.start()
    return ingest, store


def test_connection_cut_mid_batch_and_mid_clip(tmp_path, broker):
    proxy = Proxy(broker.port)
    cfg = cfg_for(tmp_path, proxy.url)
    ingest, store = start_ingest(tmp_path, broker.url)
    with Journal.in_dir(cfg.device.state_dir) as j:
        add_records(j, 800)
        sums = add_clips(j, tmp_path / "state" / "clips", 6, 60_000)
        stage = SyncStage(cfg, j)
        stage.start()
        # cut while batches are in flight, then while clips are half sent
        triggers = [lambda: stage.sent > 100, lambda: stage.sent > 400, lambda: stage.acked > 600,
                    lambda: stage.uploaded_bytes > 50_000, lambda: stage.uploaded_bytes > 150_000,
                    lambda: stage.uploaded_bytes > 280_000]
        cuts = 0
        end = time.monotonic() + 120
        while not drained(j, 6) and time.monotonic() < end:
            stage.step()
            if triggers and triggers[0]():
                triggers.pop(0)
                proxy.cut()
                cuts += 1
        assert drained(j, 6), stage.backlog()
        assert cuts >= 4
        stage.stop()
        ingest.stop()
        check_cloud(tmp_path, store, j, sums)
        assert proxy.bytes > 800 * 200
    proxy.close()


@pytest.mark.parametrize("persistence", [True, False])
def test_broker_restarted_with_and_without_persistence(tmp_path, persistence):
    broker = Mosquitto(tmp_path / "broker", persistence=persistence).start()
    try:
        cfg = cfg_for(tmp_path, broker.url)
        ingest, store = start_ingest(tmp_path, broker.url)
        with Journal.in_dir(cfg.device.state_dir) as j:
            add_records(j, 400)
            sums = add_clips(j, tmp_path / "state" / "clips", 3, 30_000)
            stage = SyncStage(cfg, j)
            stage.start()
            spin(stage, 20, 0.01)
            broker.stop()
            add_records(j, 200)
            time.sleep(1.0)
            broker.start()
            assert pump(stage, j, 3), stage.backlog()
            stage.stop()
            ingest.stop()
            check_cloud(tmp_path, store, j, sums)
    finally:
        broker.stop()


def test_ingest_down_while_the_box_publishes(tmp_path, broker):
    cfg = cfg_for(tmp_path, broker.url)
    ingest, store = start_ingest(tmp_path, broker.url)
    time.sleep(0.5)
    ingest.stop()                                             # the cloud side is down
    with Journal.in_dir(cfg.device.state_dir) as j:
        add_records(j, 300)
        sums = add_clips(j, tmp_path / "state" / "clips", 2, 20_000)
        stage = SyncStage(cfg, j)
        stage.start()
        spin(stage, 150, 0.01)
        assert j.cursor(STAGE) == 0                           # nothing is acknowledged: nothing forgotten
        ingest, store = start_ingest(tmp_path, broker.url)    # ... and comes back
        assert pump(stage, j, 2), stage.backlog()
        stage.stop()
        ingest.stop()
        check_cloud(tmp_path, store, j, sums)


def test_sync_daemon_sigkilled_at_random(tmp_path, broker):
    cfg = cfg_for(tmp_path, broker.url)
    ingest, store = start_ingest(tmp_path, broker.url)
    rnd = random.Random(9)
    sums = {}
    with Journal.in_dir(cfg.device.state_dir) as j:
        add_records(j, 200)

        def start():
            return subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(tmp_path / "box.toml"),
                                     "run", "sync"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = start()
        for k in range(KILLS):
            time.sleep(rnd.uniform(0.05, 0.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            add_records(j, rnd.randint(0, 30))
            if k % 10 == 0:
                sums.update(add_clips(j, tmp_path / "state" / "clips", 1, 25_000, start=k))
            proc = start()
        end = time.monotonic() + 120
        while not drained(j, len(sums)) and time.monotonic() < end:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert drained(j, len(sums))
        ingest.stop()
        check_cloud(tmp_path, store, j, sums)
        n = store.db.execute("SELECT COUNT(*) FROM records WHERE type = 'rating'").fetchone()[0]
        assert n == len(list(j.iter_all(["rating"])))


def test_clip_upload_resumes_after_a_reboot_from_the_first_missing_chunk(tmp_path, broker):
    proxy = Proxy(broker.port)
    cfg = cfg_for(tmp_path, proxy.url)
    ingest, store = start_ingest(tmp_path, broker.url)
    with Journal.in_dir(cfg.device.state_dir) as j:
        sums = add_clips(j, tmp_path / "state" / "clips", 1, 400_000)      # 49 chunks of 8 KiB
        first = SyncStage(cfg, j)
        first.bucket.rate = 80_000                                         # slow enough to interrupt
        first.start()
        end = time.monotonic() + 30
        while first.uploaded_bytes < 150_000 and time.monotonic() < end:
            first.step()
            time.sleep(0.005)
        proxy.cut()                                                        # power cut: the box reboots
        first.client.loop_stop()
        time.sleep(1.0)
        assert not list(j.iter_all(["clip_acked"]))
        second = SyncStage(cfg, j)                                         # knows nothing of the upload
        second.start()
        assert pump(second, j, 1), second.backlog()
        second.stop()
        ingest.stop()
        check_cloud(tmp_path, store, j, sums)
        assert second.uploaded_bytes <= 400_000 - 100_000                  # it did not start over
    proxy.close()
