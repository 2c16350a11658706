"""Benchmark: draining a backlog through Mosquitto on loopback.

    python bench/sync_drain.py [--records 20000] [--json]

Prints, next to references measured in the same run on the same broker:
  - backlog drain rate (journal records/s, end to end: published, stored by the ingest,
    acknowledged, cursor committed) against the raw ceiling of a bare paho QoS 1 publisher
    sending the same bytes in the same batch sizes with nobody answering, as a ratio
    (target ≥ 0.5);
  - clip upload rate (MB/s, chunks + manifest + reassembly + sha256 check + ack) against
    the same bare publisher sending the same chunk bytes;
  - the time to drain a simulated 24-hour outage of a busy point: 3,000 events and 600
    clips (30 kB each: a minute of Opus at ~4 kB/s);
  - ingest throughput (records stored per second).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine  # noqa: E402

from appliance import vocabulary as v  # noqa: E402
from appliance.config import parse_config  # noqa: E402
from appliance.journal import Journal, NewEvent  # noqa: E402
from appliance.cloud.mqtt import BrokerSettings  # noqa: E402
from appliance.cloud.sync import STAGE, SyncStage  # noqa: E402
from fleet.ingest import Ingest, IngestStore  # noqa: E402
from tests.mqtt_broker import Mosquitto  # noqa: E402


def fill(j: Journal, n: int) -> None:
    for k in range(0, n, 1000):
        j.append_many([NewEvent("rating", 1_795_165_200_000 + i, {"value": 1, "class": "negative", "remote": "a1b2c"},
                                "till1", "rf") for i in range(k, min(n, k + 1000))])


def add_clips(j: Journal, d: Path, n: int, size: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    import hashlib
    evs = []
    for i in range(n):
        data = os.urandom(size)
        (d / f"c{i}.ogg").write_bytes(data)
        evs.append(v.Clip(clip=f"c{i}", kind="contact", file=f"c{i}.ogg", start="", end="", duration_s=0.0,
                          format="opus", size=size, sha256=hashlib.sha256(data).hexdigest())
                   .as_event(1_795_165_300_000 + i, "till1", "audio"))
    j.append_many(evs)


def drain(tmp: Path, url: str, records: int, clips: int, clip_size: int) -> dict:
    cfg = parse_config(f'[device]\nid = "box-1"\nstate_dir = "{tmp / "state"}"\n[points.till1]\n'
                       f'[sync]\nbroker = "{url}"\nbatch_max = 200\n')
    store = IngestStore(tmp / "ingest.db")
    ingest = Ingest(BrokerSettings(url), store, clips_dir=tmp / "cloud", client_id=f"ingest-{tmp.name}")
    ingest.start()
    with Journal.in_dir(cfg.device.state_dir) as j:
        fill(j, records)
        if clips:
            add_clips(j, tmp / "state" / "clips", clips, clip_size)
        journal_bytes = j.db.execute("SELECT SUM(LENGTH(data)) FROM events").fetchone()[0]
        stage = SyncStage(cfg, j)
        stage.start()
        stage.connected.wait(10)
        t0 = time.perf_counter()
        t_records = None
        while True:
            stage.step()
            if t_records is None and j.cursor(STAGE) >= records + clips:
                t_records = time.perf_counter() - t0
            if j.cursor(STAGE) >= j.last_seq() and len(list(j.iter_all(["clip_acked"]))) >= clips:
                break
            time.sleep(0.001)
        total = time.perf_counter() - t0
        stage.stop()
    ingest.stop()
    stored = store.db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    store.close()
    return {"records_s": t_records, "total_s": total, "stored": stored, "journal_bytes": journal_bytes}


def ceiling(url_port: int, payloads: list[bytes]) -> float:
    """A bare paho QoS 1 publisher: the same messages, nobody answering."""
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ceiling")
    c.connect("127.0.0.1", url_port)
    c.loop_start()
    t0 = time.perf_counter()
    infos = [c.publish("bench/ceiling", p, qos=1) for p in payloads]
    for i in infos:
        i.wait_for_publish(60)
    dt = time.perf_counter() - t0
    c.loop_stop()
    c.disconnect()
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res: dict = {"machine": machine()}
    print(f"machine: {res['machine']}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Mosquitto(tmp / "broker").start()
        try:
            (tmp / "r").mkdir()
            r = drain(tmp / "r", broker.url, args.records, 0, 0)
            from appliance.cloud.wire import Batch, Record
            from appliance.cloud.wire import encode
            payload = encode(Batch(device="box-1", prev=0, last=200, records=[Record(
                seq=i, id="0" * 36, type="rating", ts=1_795_165_200_000, point="till1", source="rf",
                data={"value": 1, "class": "negative", "remote": "a1b2c"}) for i in range(1, 201)]))
            ceil = ceiling(broker.port, [payload] * (args.records // 200))
            one = encode(Record(seq=1, id="0" * 36, type="rating", ts=1_795_165_200_000, point="till1", source="rf",
                                data={"value": 1, "class": "negative", "remote": "a1b2c"}))
            naive = ceiling(broker.port, [one] * args.records)
            rate, ceil_rate, naive_rate = args.records / r["records_s"], args.records / ceil, args.records / naive
            res.update(drain_records_s=rate, ceiling_records_s=ceil_rate, ratio=rate / ceil_rate,
                       naive_records_s=naive_rate, naive_ratio=rate / naive_rate)
            print(f"\njournal backlog of {args.records:,} records (end to end: stored by the ingest, acknowledged, "
                  f"cursor committed)")
            print(f"  drain {rate:,.0f} records/s")
            print(f"  bare paho QoS 1 publisher, one record per message: {naive_rate:,.0f}/s  -> ratio {rate / naive_rate:.2f}")
            print(f"  bare paho QoS 1 publisher, our batch payloads, nobody storing or answering: {ceil_rate:,.0f}/s"
                  f"  -> ratio {rate / ceil_rate:.2f} (target ≥ 0.5)")
            print(f"  ingest stored {r['stored']:,} records: {r['stored'] / r['records_s']:,.0f} records/s")

            (tmp / "o").mkdir()
            o = drain(tmp / "o", broker.url, 3000, 600, 30_000)
            mb = 600 * 30_000 / 1e6
            cc = ceiling(broker.port, [os.urandom(30_000) for _ in range(600)])
            res.update(outage_drain_s=o["total_s"], clip_mb_s=mb / (o["total_s"] - o["records_s"]),
                       clip_ceiling_mb_s=mb / cc)
            print(f"\n24-hour outage of a busy point: 3,000 events + 600 clips of 30 kB ({mb:.0f} MB)")
            print(f"  drained in {o['total_s']:.1f} s (events first: {o['records_s']:.2f} s); clips "
                  f"{mb / (o['total_s'] - o['records_s']):.1f} MB/s vs bare publisher {mb / cc:.1f} MB/s "
                  f"(ratio {(mb / (o['total_s'] - o['records_s'])) / (mb / cc):.2f})")
        finally:
            broker.stop()
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
