"""Everything a box sends is hostile until parsed (ARCHITECTURE §11). Each finding of the
attack on the ingest, reproduced without a broker (the ingest's own message handler), and
property tests: any topic or payload gives a typed value or a WireError, never another
exception; the ingest's handler never raises."""
from __future__ import annotations

import json
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.cloud.mqtt import BrokerSettings
from appliance.cloud.wire import (MAX_DEPTH, WireError, decode_ack, decode_batch, decode_manifest, decode_status,
                                  nesting_depth, parse_topic)
from appliance.ids import uuid7
from fleet.ingest import Ingest, IngestStore, Quotas
from fleet.report import fleet_metrics

T0 = 1_795_165_200_000


class Recorder:
    """Stands in for the paho client the handler publishes acks with."""

    def __init__(self):
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic, payload, qos=0):
        self.published.append((topic, payload))


def ingest(tmp_path, **kw) -> tuple[Ingest, IngestStore, Recorder]:
    store = IngestStore(tmp_path / "ingest.db")
    ing = Ingest(BrokerSettings("mqtt://127.0.0.1:1"), store, clips_dir=tmp_path / "cloud", **kw)
    return ing, store, Recorder()


def send(ing: Ingest, rec: Recorder, topic: str, payload: bytes) -> None:
    ing._on_message(rec, None, SimpleNamespace(topic=topic, payload=payload))


def record(seq: int, **over) -> dict:
    r = {"seq": seq, "id": uuid7(T0 + seq % 10**9), "type": "rating", "ts": T0 + seq % 10**9, "point": "till1",
         "source": "rf",
         "data": {"value": 1, "class": "negative"}}
    r.update(over)
    return r


def batch(device: str, records: list, prev: int = 0, last: int | None = None) -> bytes:
    last = last if last is not None else max(r["seq"] for r in records)
    return json.dumps({"device": device, "prev": prev, "last": last, "records": records}).encode()


def stored(store, device=None) -> int:
    q = "SELECT COUNT(*) FROM records" + (" WHERE device = ?" if device else "")
    return store.db.execute(q, (device,) if device else ()).fetchone()[0]


def test_a_box_cannot_store_or_ack_as_another_box_through_a_deeper_topic(tmp_path):
    ing, store, rec = ingest(tmp_path)
    send(ing, rec, "ca/v1/A/clip/x/B/journal", batch("B", [record(1)]))
    send(ing, rec, "ca/v1/A/clip/x/B/status", b'{"state": "offline"}')
    send(ing, rec, "ca/v1/A/clip/B/clip/c/0", b"x")
    assert stored(store) == 0 and rec.published == [] and store.devices() == []
    assert ing.rejected == 3


def test_a_batch_naming_another_device_is_refused(tmp_path):
    ing, store, rec = ingest(tmp_path)
    send(ing, rec, "ca/v1/A/journal", batch("B", [record(1)]))
    assert stored(store) == 0 and rec.published == []


def test_the_ack_goes_to_the_sender_only(tmp_path):
    ing, store, rec = ingest(tmp_path)
    send(ing, rec, "ca/v1/A/journal", batch("A", [record(1), record(2)]))
    assert [t for t, _ in rec.published] == ["ca/v1/A/ack"] and json.loads(rec.published[0][1])["upto"] == 2


def test_poison_fails_alone_and_the_ingest_goes_on(tmp_path):
    ing, store, rec = ingest(tmp_path)
    manifest = {"clip": "c1", "file": "c1.ogg", "size": 10, "sha256": "0" * 64, "chunks": 1, "chunk_size": 1024}
    poison = [("ca/v1/A/clip/c1/²", b"x"), (f"ca/v1/A/clip/c1/{'9' * 300}", b"x"),
              ("ca/v1/A/journal", batch("A", [record(2**64 - 1)])),
              ("ca/v1/A/journal", batch("A", [record(1)], last=10**30)),
              ("ca/v1/A/clip/c1/manifest", json.dumps({**manifest, "file": "../../x"}).encode()),
              ("ca/v1/A/clip/c1/manifest", json.dumps({**manifest, "file": "a\u0000b"}).encode()),
              ("ca/v1/A/journal", b'{"device": "A", "prev": 0, "last": 1, "records": [' + b"[" * 5000 + b"]" * 5000
               + b"]}"),
              ("ca/v1/A/journal", b"\xff\xfe"), ("ca/v1/A/journal", b"[]"), ("ca/v1/A/journal", b'{"prev": 1e400}'),
              ("ca/v1/A/journal", batch("A", [record(1, type="contact", data={"contact": "c"})])),
              ("ca/v1/A/journal", batch("A", [record(1, data={"value": "x"})])),
              ("ca/v1/A/status", b'{"state": "hacked"}'), ("ca/v1/A/status", b"[" * 5000)]
    for topic, payload in poison:
        send(ing, rec, topic, payload)
    assert ing.rejected == len(poison) and stored(store) == 0 and rec.published == []
    assert not list((tmp_path / "cloud").rglob("x")) and not (tmp_path / "x").exists()
    send(ing, rec, "ca/v1/A/journal", batch("A", [record(1)]))          # and it still stores
    assert stored(store, "A") == 1


def test_an_internal_error_is_contained_too(tmp_path):
    ing, store, rec = ingest(tmp_path)
    store.db.execute("DROP TABLE records")                               # the store breaks under it
    send(ing, rec, "ca/v1/A/journal", batch("A", [record(1)]))
    assert ing.rejected == 1 and rec.published == []


def test_a_box_over_its_quota_is_refused_without_an_ack(tmp_path):
    ing, store, rec = ingest(tmp_path, quotas=Quotas(records_per_min=150))
    send(ing, rec, "ca/v1/A/journal", batch("A", [record(i) for i in range(1, 101)]))
    send(ing, rec, "ca/v1/A/journal", batch("A", [record(i) for i in range(101, 201)], prev=100))
    send(ing, rec, "ca/v1/B/journal", batch("B", [record(i) for i in range(1, 101)]))   # B is not starved
    assert stored(store, "A") == 100 and stored(store, "B") == 100 and len(rec.published) == 2
    assert any("over its quota of records per minute" in r for _, r in ing.rejections.counts)


def test_a_clip_over_the_size_quota_is_refused(tmp_path):
    ing, store, rec = ingest(tmp_path, quotas=Quotas(clip_bytes=1000))
    m = {"clip": "c1", "file": "c1.ogg", "size": 5000, "sha256": "0" * 64, "chunks": 1, "chunk_size": 8192}
    send(ing, rec, "ca/v1/A/clip/c1/manifest", json.dumps(m).encode())
    assert rec.published == [] and ing.rejected == 1


def test_report_survives_any_stored_row(tmp_path):
    _, store, _ = ingest(tmp_path)
    rows = [("contact", "{}"), ("contact", '{"duration_s": "x"}'), ("rating_settled", "[1]"),
            ("sale_settled", "not json"), ("contact", "[" * 3000 + "]" * 3000)]
    for i, (typ, data) in enumerate(rows):
        store.db.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?)",
                         ("A", i + 1, f"id{i}", typ, "p", T0, "core", data, T0))
    assert fleet_metrics(store.db)["overall"]["contacts"] == 0 and len(fleet_metrics(store.db)) == 1  # all skipped
    store.db.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?)", ("A", 99, "ok", "sale_settled", "p", T0, "core",
                     '{"sale": "e", "receipt": "R", "contact": null, "owner": null}', T0))
    assert fleet_metrics(store.db)["A"]["receipts"] == 1


# --- property tests: typed value or WireError, never another exception -----------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
                           | st.floats(allow_nan=True) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=30)
payloads = (st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())
            | st.builds(lambda d: b"[" * d + b"]" * d, st.integers(0, 3000)))


def shaped(kind: str):
    """JSON objects with the right keys and any values (the interesting half of the space)."""
    keys = {"batch": ["device", "prev", "last", "records"], "ack": ["upto", "clips", "chunks"],
            "manifest": ["clip", "file", "size", "sha256", "chunks", "chunk_size", "tags", "meta"],
            "status": ["state", "version"]}[kind]
    return st.fixed_dictionaries({}, optional={k: json_values for k in keys}).map(lambda d: json.dumps(d).encode())


@settings(max_examples=300, deadline=None)
@given(st.one_of(payloads, shaped("batch"), shaped("ack"), shaped("manifest"), shaped("status")))
def test_decoders_give_a_value_or_a_wire_error(payload):
    for decode in (decode_batch, decode_ack, decode_manifest, decode_status):
        try:
            decode(payload)
        except WireError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=12) | st.sampled_from(["ca", "v1", "A", "journal", "clip", "manifest", "status",
                                                         "0", "²", "..", ""]), max_size=7))
def test_topics_give_a_shape_or_a_wire_error(levels):
    try:
        t = parse_topic("ca/v1", "/".join(levels))
    except WireError:
        return
    assert t.kind in ("journal", "status", "clip", "health", "info", "csr", "config/reported", "result")
    assert "/" not in t.device and t.device not in ("provision", "claim", "ingest", "operator")


def test_nesting_is_measured_outside_strings():
    assert nesting_depth(b'{"a": "[[[[[[", "b": [1, [2]]}') == 3
    assert nesting_depth(b'"\\"[[["') == 0
    assert nesting_depth(b"[" * (MAX_DEPTH + 1)) == MAX_DEPTH + 1


def test_fleetctl_takes_no_password_on_the_command_line(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT
    r = subprocess.run([sys.executable, "-m", "fleet.cli", "ingest", "--broker", "mqtt://127.0.0.1:1", "--db",
                        str(tmp_path / "i.db"), "--password", "hunter2"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "FLEETCTL_MQTT_PASSWORD" in r.stderr and "hunter2" not in r.stderr + r.stdout
    (tmp_path / "pw").write_text("s3cret\n")
    from fleet.cli import broker_password
    assert broker_password(SimpleNamespace(password_file=str(tmp_path / "pw"))) == "s3cret"


def test_a_dead_network_loop_is_noticed(tmp_path, broker):
    ing = Ingest(BrokerSettings(broker.url), IngestStore(tmp_path / "ingest.db"))
    ing.start()
    assert ing.alive()
    ing.client.loop_stop()                                  # paho's thread is gone: nothing would be stored
    assert not ing.alive()


def test_batches_stored_out_of_order_move_the_mark_once_the_gap_is_filled(tmp_path):
    """Workers sharing the subscription store one box's batches in any order: the ack that
    fills the gap covers the batches that came early, so the box never waits for a resend."""
    ing, store, rec = ingest(tmp_path)
    middle = batch("A", [record(i) for i in range(21, 41)], prev=20)
    send(ing, rec, "ca/v1/A/journal", batch("A", [record(i) for i in range(41, 61)], prev=40))
    send(ing, rec, "ca/v1/A/journal", middle)
    assert [json.loads(p)["upto"] for _, p in rec.published] == [0, 0]
    send(ing, rec, "ca/v1/A/journal", batch("A", [record(i) for i in range(1, 21)]))
    assert json.loads(rec.published[-1][1])["upto"] == 60 and stored(store, "A") == 60
    assert store.db.execute("SELECT COUNT(*) FROM early_spans").fetchone()[0] == 0
    send(ing, rec, "ca/v1/A/journal", middle)                             # a resend (same records)
    assert json.loads(rec.published[-1][1])["upto"] == 60 and stored(store, "A") == 60
