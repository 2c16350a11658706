"""Two boxes behind a real Mosquitto with the per-device ACL, one of them hostile: forged
topics of every shape it may publish, poison messages, a flood over its quota. The honest
box's records are stored exactly once and acknowledged; nothing is stored, acknowledged or
changed for it by the hostile one; the ingest still stores at the end."""
from __future__ import annotations

import hashlib
import json

from appliance.cloud.mqtt import BrokerSettings, make_client
from appliance.cloud.sync import SyncStage
from appliance.config import parse_config
from appliance.ids import uuid7
from appliance.journal import Journal, NewEvent
from fleet.ingest import Ingest, IngestStore, Quotas
from tests.conftest import clip_event, run_until

T0 = 1_795_165_200_000


def record(seq: int, **over) -> dict:
    r = {"seq": seq, "id": uuid7(T0 + seq % 10**9), "type": "rating", "ts": T0 + seq % 10**9, "point": "till1", "source": "rf",
         "data": {"value": 1, "class": "negative"}}
    r.update(over)
    return r


def batch(device: str, records: list[dict], prev: int = 0, last: int | None = None) -> bytes:
    last = last if last is not None else max(r["seq"] for r in records)
    return json.dumps({"device": device, "prev": prev, "last": last, "records": records}).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def poison(me: str) -> list[tuple[str, bytes]]:
    """What a hostile box may publish inside its own topic root."""
    root = f"ca/v1/{me}"
    good_manifest = {"clip": "c1", "file": "c1.ogg", "size": 10, "sha256": "0" * 64, "chunks": 1, "chunk_size": 1024}
    return [
        # forged topic shapes: another box's id deeper in the tree, odd levels
        (f"{root}/clip/x/box-1/journal", batch("box-1", [record(1)])),
        (f"{root}/clip/x/box-1/status", b'{"state": "offline"}'),
        (f"{root}/clip/box-1/clip/c1/0", b"chunk"),
        (f"{root}/journal/box-1", batch("box-1", [record(1)])),
        (f"{root}/box-1/journal", batch("box-1", [record(1)])),
        (f"{root}/journal", batch("box-1", [record(1)])),                # names another device
        ("ca/v1/box-1/journal", batch("box-1", [record(1)])),               # the ACL drops it
        ("ca/v1/box-1/ack", b'{"upto": 9007199254740991}'),                 # the ACL drops it too
        # poison payloads
        (f"{root}/clip/c1/²", b"x"),
        (f"{root}/clip/c1/{'9' * 300}", b"x"),
        (f"{root}/journal", batch(me, [record(2**64 - 1)])),
        (f"{root}/journal", batch(me, [record(1)], last=10**30)),
        (f"{root}/journal", batch(me, [record(1, data={"value": json.loads(nested(60))})])),
        (f"{root}/journal", b'{"device": "' + me.encode() + b'", "prev": 0, "last": 1, "records": ' + nested(5000) + b"}"),
        (f"{root}/journal", b"\xff\xfe not utf-8"),
        (f"{root}/journal", b"[1, 2, 3]"),
        (f"{root}/journal", b'{"device": "x", "prev": 1e400}'),
        (f"{root}/journal", batch(me, [record(1, type="contact", data={"contact": "c"})])),   # not its shape
        (f"{root}/journal", batch(me, [record(1, type="rm_rf", data={})])),                  # unknown type
        (f"{root}/journal", batch(me, [record(1, point="../../etc")])),
        (f"{root}/clip/c1/manifest", json.dumps({**good_manifest, "file": "../x"}).encode()),
        (f"{root}/clip/c1/manifest", json.dumps({**good_manifest, "file": "a\u0000b"}).encode()),
        (f"{root}/clip/c1/manifest", json.dumps({**good_manifest, "size": 10**30}).encode()),
        (f"{root}/clip/c1/manifest", json.dumps({**good_manifest, "clip": "box-1"}).encode()),
        (f"{root}/status", b'{"state": ["online"]}'),
        (f"{root}/status", nested(5000)),
    ]


def test_a_hostile_box_cannot_speak_for_another_or_stop_the_ingest(tmp_path, tls):
    cert, key = tls.certs["box-1"]
    store = IngestStore(tmp_path / "ingest.db")
    icert = tls.certs["ingest"]
    ingest = Ingest(BrokerSettings(tls.tls_url, str(tls.ca.path), str(icert[0]), str(icert[1])), store,
                    clips_dir=tmp_path / "cloud", quotas=Quotas(records_per_min=600))
    ingest.start()
    assert ingest.subscribed.wait(10)
    hostile, host, port = make_client(BrokerSettings(tls.tls_url, str(tls.ca.path), *map(str, tls.certs["box-2"])),
                                      "box-2")
    hostile.connect(host, port)
    hostile.loop_start()
    cfg = parse_config(f'[device]\nid = "box-1"\nstate_dir = "{tmp_path / "state"}"\n[points.till1]\n'
                       f'[sync]\nbroker = "{tls.tls_url}"\nca_file = "{tls.ca.path}"\ncert_file = "{cert}"\n'
                       f'key_file = "{key}"\nack_timeout_s = 3\n')
    clips_dir = tmp_path / "state" / "clips"
    clips_dir.mkdir(parents=True)
    data = b"honest audio" * 1000
    (clips_dir / "hc1.ogg").write_bytes(data)
    try:
        with Journal.in_dir(cfg.device.state_dir) as j:
            j.append_many([NewEvent("rating", T0 + i, {"value": 1, "class": "negative"}, "till1", "rf")
                           for i in range(300)])
            j.append(clip_event("hc1", data, T0 + 400))
            stage = SyncStage(cfg, j)
            stage.start()
            for t, payload in poison("box-2"):                       # before, during and after the honest sync
                hostile.publish(t, payload, qos=1)
            # a flood of valid records over the hostile box's quota
            for k in range(20):
                recs = [record(k * 100 + i + 1) for i in range(100)]
                hostile.publish("ca/v1/box-2/journal", batch("box-2", recs, prev=k * 100), qos=1).wait_for_publish(5)
            assert run_until(lambda: stage.acked == j.last_seq() and not stage.uploading and j.count("clip_acked"), stage,
                             limit=60)
            for t, payload in poison("box-2"):
                hostile.publish(t, payload, qos=1).wait_for_publish(5)
            j.append_many([NewEvent("rating", T0 + 1000 + i, {"value": 1, "class": "negative"}, "till1", "rf")
                           for i in range(50)])
            assert run_until(lambda: stage.acked == j.last_seq(), stage, limit=30)   # the ingest still stores
            ids = {e.id for e in j.iter_all()}
            stage.stop()
    finally:
        alive_at_the_end = ingest.alive()
        hostile.loop_stop()
        hostile.disconnect()
        ingest.stop()
    rows = store.db.execute("SELECT id, COUNT(*) FROM records WHERE device = 'box-1' GROUP BY id").fetchall()
    assert {r[0] for r in rows} == ids and all(n == 1 for _, n in rows)          # exactly once, nothing forged
    n_hostile = store.db.execute("SELECT COUNT(*) FROM records WHERE device = 'box-2'").fetchone()[0]
    assert 0 < n_hostile < 2000, sorted(ingest.rejections.counts.items())         # its flood was cut at its quota
    assert store.db.execute("SELECT COUNT(*) FROM records WHERE device NOT IN ('box-1', 'box-2')").fetchone()[0] == 0
    [(path, sha)] = store.db.execute("SELECT file, sha256 FROM clips WHERE device = 'box-1'").fetchall()
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == sha == hashlib.sha256(data).hexdigest()
    assert store.db.execute("SELECT COUNT(*) FROM clips WHERE device != 'box-1'").fetchone()[0] == 0
    assert sorted(p.name for p in (tmp_path / "cloud").iterdir()) in (["box-1"], ["box-1", "box-2"])
    # every poison message that reached the ingest was rejected (the ACL and the ingest's exact
    # subscriptions kept the rest away), twice over, and the flood beyond the quota too
    assert ingest.rejected >= 2 * 19 and not ingest.rejections.counts.get(("box-1", "*"))
    assert all(dev in ("box-2", "?") for dev, _ in ingest.rejections.counts)
    assert alive_at_the_end
    devices = {d["id"]: d for d in store.devices()}
    assert set(devices) <= {"box-1", "box-2"}
