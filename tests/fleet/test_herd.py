"""The ingest under a fleet's reconnect: group commit stores every record exactly once across
a SIGKILL of the ingest in the middle of its groups and across a broker restart; two workers
on one PostgreSQL never double a record; acks go once per box per commit at QoS 0, and the
load hint tells the boxes how long the ingest needs. Not timed."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from appliance.cloud.mqtt import BrokerSettings
from appliance.cloud.sync import SyncStage
from appliance.cloud.wire import Load
from appliance.config import parse_config
from appliance.journal import Journal, NewEvent
from fleet.ingest import GroupWriter, Ingest, IngestStore
from tests.fleet.test_ingest_input import batch, record, send

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_795_165_200_000


def box_config(tmp_path: Path, url: str, k: int, batch_max: int = 50):
    return parse_config(f'[device]\nid = "box-{k}"\nstate_dir = "{tmp_path / f"box-{k}"}"\n[points.till1]\n'
                        f'[sync]\nbroker = "{url}"\nbatch_max = {batch_max}\nack_timeout_s = 2\n'
                        f'ack_timeout_max_s = 8\nreconnect_jitter_s = 0.3\n')


class Fleet:
    """A few real sync stages with a backlog each, driven from the test's thread."""

    def __init__(self, tmp_path: Path, url: str, boxes: int, records: int, batch_max: int = 50):
        self.journals, self.stages = [], []
        for k in range(boxes):
            cfg = box_config(tmp_path, url, k, batch_max)
            j = Journal.in_dir(cfg.device.state_dir)
            j.append_many([NewEvent("rating", T0 + i, {"value": 1, "class": "negative"}, "till1", "test")
                           for i in range(records)])
            self.journals.append(j)
            self.stages.append(SyncStage(cfg, j))
        for s in self.stages:
            s.start()

    def drained(self) -> bool:
        return all(s.acked == j.last_seq() for s, j in zip(self.stages, self.journals, strict=True))

    def run(self, seconds: float, until=None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for s in self.stages:
                s.step()
            if (until or self.drained)():
                return True
            time.sleep(0.01)
        return False

    def ids(self) -> set[str]:
        return {e.id for j in self.journals for e in j.iter_all()}

    def close(self) -> None:
        for s in self.stages:
            s.stop()
        for j in self.journals:
            j.close()


def count(db) -> tuple[int, int]:
    return tuple(db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone())


def test_group_commit_stores_exactly_once_across_sigkills_of_the_ingest_mid_group(tmp_path, broker):
    db = tmp_path / "ingest.db"
    IngestStore(db).close()

    def start():
        return subprocess.Popen([sys.executable, "-m", "fleet.cli", "ingest", "--broker", broker.url, "--db", str(db)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import sqlite3
    look = sqlite3.connect(db, timeout=30)
    fleet = Fleet(tmp_path, broker.url, boxes=8, records=3000)
    rnd = random.Random(18)
    proc = start()
    at_kill = []
    try:
        for _ in range(3):
            # let it store some of the backlog, then kill it while the boxes keep sending
            fleet.run(30, until=lambda: count(look)[0] > (len(at_kill) + 1) * 3000 + rnd.randint(0, 2000))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            at_kill.append(count(look)[0])
            fleet.run(rnd.uniform(0.2, 1.0), until=lambda: False)
            proc = start()
        assert fleet.run(180), [s.status_line() for s in fleet.stages]
        ids = fleet.ids()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        fleet.close()
    assert all(0 < n < 24_000 for n in at_kill), at_kill          # each kill came mid-stream
    n, distinct = count(look)
    assert n == distinct == 24_000
    assert {r[0] for r in look.execute("SELECT id FROM records")} == ids
    # every box's mark is its last record: the marks survived the kills with the records
    assert sorted(look.execute("SELECT id, hw FROM devices")) == [(f"box-{k}", 3000) for k in range(8)]
    look.close()


def test_group_commit_stores_exactly_once_across_a_broker_restart(tmp_path, broker):
    store = IngestStore(tmp_path / "ingest.db")
    ingest = Ingest(BrokerSettings(broker.url), store)
    ingest.start()
    fleet = Fleet(tmp_path, broker.url, boxes=6, records=2000)
    try:
        assert fleet.run(60, until=lambda: ingest.stored > 2000)
        broker.stop()                                       # mid-stream: groups in flight, acks unsent
        fleet.run(1.0, until=lambda: False)
        broker.start()
        assert fleet.run(120), [s.status_line() for s in fleet.stages]
        assert ingest.writer is not None and ingest.writer.groups > 0
        ids = fleet.ids()
    finally:
        fleet.close()
        ingest.stop()
    n, distinct = count(store.db)
    assert n == distinct == 12_000
    assert {r[0] for r in store.db.execute("SELECT id FROM records")} == ids
    store.close()


def test_two_workers_on_one_postgresql_never_double_a_record(tmp_path, broker):
    from tests.postgres_server import Postgres
    pg = Postgres(tmp_path).start()
    workers = []
    fleet = None
    try:
        IngestStore(pg.url).close()
        for k in (1, 2):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "fleet.cli", "ingest", "--broker", broker.url, "--db", pg.url,
                 "--client-id", f"ingest-{k}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / f"ingest-{k}.log", "w")))
        end = time.monotonic() + 30
        while time.monotonic() < end and not all("connected to" in (tmp_path / f"ingest-{k}.log").read_text()
                                                 for k in (1, 2)):
            time.sleep(0.1)
        fleet = Fleet(tmp_path, broker.url, boxes=6, records=1500, batch_max=40)
        look = IngestStore(pg.url)
        assert fleet.run(60, until=lambda: count(look.db)[0] > 3000)
        for s in fleet.stages:                              # the fleet asks every box to send it all again:
            s.resend_from(1)                                # each record now reaches either worker twice
        assert fleet.run(180), [s.status_line() for s in fleet.stages]
        n, distinct = count(look.db)
        assert n == distinct == 9000
        assert {r[0] for r in look.db.execute("SELECT id FROM records")} == fleet.ids()
        marks = sorted(look.db.execute("SELECT id, hw FROM devices").fetchall())
        assert marks == [(f"box-{k}", 1500) for k in range(6)]
        assert look.db.execute("SELECT COUNT(*) FROM early_spans").fetchone()[0] == 0
        look.close()
    finally:
        if fleet is not None:
            fleet.close()
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(30)
        pg.stop()
    logs = [(tmp_path / f"ingest-{k}.log").read_text() for k in (1, 2)]
    assert all("sharing the subscription" in t for t in logs)


class QosRecorder:
    def __init__(self):
        self.published: list[tuple[str, bytes, int, bool]] = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.published.append((topic, payload, qos, retain))
        return type("Info", (), {"rc": 0})()


def test_acks_go_at_qos_0_once_per_box_per_commit(tmp_path):
    store = IngestStore(tmp_path / "ingest.db")
    ing = Ingest(BrokerSettings("mqtt://127.0.0.1:1"), store)
    rec = QosRecorder()
    ing.client = rec
    ing.writer = GroupWriter(ing)
    for i in range(1, 31):
        send(ing, rec, "ca/v1/A/journal", batch("A", [record(i)], prev=i - 1))
    send(ing, rec, "ca/v1/B/journal", batch("B", [record(5)], prev=4))   # early: its mark stays 0
    ing.writer.write([ing.writer.queue.get_nowait()[0] for _ in range(31)])
    acks = sorted((t, json.loads(p), q) for t, p, q, _ in rec.published)
    assert acks == [("ca/v1/A/ack", {"upto": 30}, 0), ("ca/v1/B/ack", {"upto": 0}, 0)]
    store.close()


def test_the_load_hint_says_how_long_the_queue_takes_and_is_published_sparingly(tmp_path):
    store = IngestStore(tmp_path / "ingest.db")
    ing = Ingest(BrokerSettings("mqtt://127.0.0.1:1"), store, client_id="ingest-7")
    rec = QosRecorder()
    ing.client = rec
    ing.writer = GroupWriter(ing)
    ing.started = True
    assert ing.load(100.0) == Load()                          # nothing held: idle
    ing.publish_load(100.0)
    assert rec.published == []                                # idle and never busy: nothing to say
    for _ in range(200):
        ing.writer.put(("A", "state", "A", "health", "{}"), 10)
    ing.writer.throughput.add(50, 98.0)                       # 50 messages stored in the last seconds
    ing.writer.throughput.add(50, 100.0)
    load = ing.load(100.0)
    assert load.queued == 200 and load.rate == 50.0 and load.wait_s == 6.0     # 4 s, a quarter more, a second
    ing.publish_load(100.0)
    [(t, p, q, retain)] = rec.published
    assert t == "ca/v1/ingest/load/ingest-7" and q == 1 and retain and json.loads(p)["wait_s"] == 6.0
    ing.publish_load(100.5)                                   # the same figure: not again
    assert len(rec.published) == 1
    for _ in range(200):
        ing.writer.queue.get_nowait()
    ing.publish_load(101.0)                                   # drained: one "idle" hint
    assert json.loads(rec.published[-1][1])["wait_s"] == 0 and len(rec.published) == 2
    ing.publish_load(102.0)
    assert len(rec.published) == 2
    store.close()


def test_the_herd_benchmark_runs_in_small(tmp_path):
    """bench/fleet_herd.py, small (CI's short version of the benchmark): every run stores
    every record exactly once and leaves no box waiting."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "fleet_herd.py"), "--boxes", "20", "--records", "400",
                        "--procs", "1", "--jitter", "0.5", "--sqlite-workers", "1", "--pg-workers", "",
                        "--steady", "40", "--steady-seconds", "3", "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    labels = [run["label"] for run in out["runs"]]
    assert labels == ["floor: bare subscriber, SQLite", "per message, our rows, SQLite", "fleetctl ingest, SQLite"]
    for run in out["runs"]:
        assert run["stored"] == run["stored_distinct"] == run["records"] == 8000, run
        assert run["unfinished_boxes"] == 0 and run["batches_sent"] >= run["batches_needed"] == 40
    [st] = out["steady"]
    assert st["boxes"] == 40 and st["unacked_boxes"] == 0
