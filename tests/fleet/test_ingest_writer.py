"""The ingest's group writer: many messages per commit, one ack per box only after the commit, one bad
write failing alone, a dead writer noticed and restarted with nothing it held lost."""
from __future__ import annotations

import json
import threading
import time

import pytest

from appliance.cloud.mqtt import BrokerSettings
from fleet.ingest import GroupWriter, Ingest, IngestStore
from tests.fleet.test_ingest_input import Recorder, batch, record, send, stored


class FlakyStore(IngestStore):
    """Fails every write of one device (a store bug or a constraint it trips)."""

    def _store_records(self, batches, now):
        if any(b.device == "bad" for b in batches):
            raise RuntimeError("simulated store failure")
        return super()._store_records(batches, now)


def writer_ingest(tmp_path, store_cls=IngestStore):
    store = store_cls(tmp_path / "ingest.db")
    ing = Ingest(BrokerSettings("mqtt://127.0.0.1:1"), store)
    rec = Recorder()
    ing.client = rec                      # acks are published through it
    ing.writer = GroupWriter(ing)
    return ing, store, rec


def wait(pred, limit=10.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_groups_commit_together_and_ack_after_the_commit(tmp_path):
    ing, store, rec = writer_ingest(tmp_path)
    for dev in ("A", "B", "C"):                     # queued before the writer runs: one group
        for i in range(1, 41):
            send(ing, rec, f"ca/v1/{dev}/journal", batch(dev, [record(i)], prev=i - 1))
        send(ing, rec, f"ca/v1/{dev}/health", json.dumps({"device": dev, "load": [0.1]}).encode())
    assert rec.published == [] and stored(store) == 0          # nothing acked before it is stored
    ing.writer.start()
    assert wait(lambda: len(rec.published) == 3)
    time.sleep(0.3)
    assert ing.writer.groups == 1 and stored(store) == 120
    # one ack per box per commit, its highest contiguous seq (not one per batch: 120 would
    # queue behind each other at every box)
    assert sorted((t, json.loads(p)) for t, p in rec.published) == [(f"ca/v1/{d}/ack", {"upto": 40}) for d in "ABC"]
    assert {d["id"]: d["health"]["load"] for d in store.devices()} == {d: [0.1] for d in "ABC"}
    ing.writer.stopping.set()
    ing.writer.join(5)


def test_one_bad_write_fails_alone(tmp_path):
    ing, store, rec = writer_ingest(tmp_path, FlakyStore)
    send(ing, rec, "ca/v1/A/journal", batch("A", [record(1)]))
    send(ing, rec, "ca/v1/bad/journal", batch("bad", [record(1)]))
    send(ing, rec, "ca/v1/B/journal", batch("B", [record(1)]))
    ing.writer.start()
    assert wait(lambda: len(rec.published) == 2)
    assert sorted(t for t, _ in rec.published) == ["ca/v1/A/ack", "ca/v1/B/ack"]
    assert stored(store, "A") == 1 and stored(store, "B") == 1 and stored(store, "bad") == 0
    assert ing.rejected == 1 and any("simulated store failure" in r for _, r in ing.rejections.counts)
    ing.writer.stopping.set()
    ing.writer.join(5)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_writer_is_noticed_and_restarted_with_its_queue(tmp_path, monkeypatch):
    ing, store, rec = writer_ingest(tmp_path)
    boom = threading.Event()
    orig = GroupWriter.write

    def dies_once(self, group):
        if not boom.is_set():
            boom.set()
            raise SystemExit("the writer thread dies")        # not contained: the thread ends
        orig(self, group)
    monkeypatch.setattr(GroupWriter, "write", dies_once)
    ing.writer.start()
    ing.started = True
    ing.client = rec
    monkeypatch.setattr("fleet.ingest.network_alive", lambda c: True)
    send(ing, rec, "ca/v1/A/journal", batch("A", [record(1)]))
    assert wait(lambda: not ing.writer.is_alive())
    assert not ing.alive()                                     # the daemon would stop petting the watchdog
    send(ing, rec, "ca/v1/A/journal", batch("A", [record(2)], prev=1))
    ing.step()                                                 # noticed: a new writer on the same queue
    assert ing.writer.is_alive() and ing.alive()
    assert wait(lambda: stored(store, "A") == 1)               # the message that arrived meanwhile is stored
    # (the group the dead writer held was never acked: its box sends it again)
    ing.writer.stopping.set()
    ing.writer.join(5)


def test_two_workers_writing_the_same_devices_in_opposite_orders_never_deadlock(tmp_path):
    """Workers sharing the subscription get any device's messages in any order; their
    groups take the rows device by device in one order, so on PostgreSQL they wait for each
    other instead of deadlocking (a deadlock fails a whole group)."""
    import random
    import uuid

    from appliance.cloud.wire import decode_batch
    from tests.postgres_server import Postgres
    pg = Postgres(tmp_path).start()
    try:
        stores = [IngestStore(pg.url), IngestStore(pg.url)]
        devices = [f"box-{i:02d}" for i in range(40)]
        failures: list[BaseException] = []

        def work(k: int) -> None:
            rnd = random.Random(k)
            for g in range(25):
                order = devices[::-1] if (g + k) % 2 else devices[:]
                rnd.shuffle(order[10:])
                try:
                    items = []
                    for d in order:
                        seq = 1 + g * 2 + k
                        items.append(("batch", decode_batch(batch(d, [record(seq, id=str(uuid.uuid4()))],
                                                                  prev=seq - 1))))
                        items.append(("state", d, "health", json.dumps({"g": g})))
                    stores[k].write_group(items)
                except BaseException as exc:  # noqa: BLE001 - what the test looks for
                    failures.append(exc)
        threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures, failures[:3]
        n, distinct = stores[0].db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone()
        assert n == distinct == 40 * 50
        assert {d["id"]: d["journal_records"] for d in stores[0].devices()} == {d: 50 for d in devices}
        for s in stores:
            s.close()
    finally:
        pg.stop()
