"""Benchmark: what validating a box's messages costs the cloud ingest.

    python bench/ingest.py [--batches 300] [--records 200] [--json]

The ingest's message handler (``Ingest._on_message``: exact topic shape, bounded typed
decoding with the nesting check, every record checked against the journal vocabulary,
the per-box quota, the SQLite store and the ack) is fed journal batches as a broker would
deliver them (the store on a RAM disk, so the figure is the handler's CPU, not the SD card's
fsync), and timed against the same code path without the checks — the handler as
it was before them (plain decode of unbounded structs, device id from the topic's last
levels, store, ack) — in the same run, on the same store. Aim: ≥ 0.9× the unchecked rate.
Also: the cost of refusing poison (a 5,000-deep batch, a 1 MB one) per message.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import msgspec  # noqa: E402
from common import machine  # noqa: E402

from appliance.cloud.mqtt import BrokerSettings  # noqa: E402
from appliance.cloud.wire import Ack, encode  # noqa: E402
from appliance.ids import uuid7  # noqa: E402
from fleet.ingest import Ingest, IngestStore, Quotas  # noqa: E402

T0 = 1_795_165_200_000


class Recorder:
    def publish(self, topic, payload, qos=0):
        pass


# --- the handler as it was before the checks (for the ratio) ------------------------------

class OldRecord(msgspec.Struct, kw_only=True):
    seq: int
    id: str
    type: str
    ts: int
    point: str | None = None
    source: str = ""
    data: dict[str, Any] = {}


class OldBatch(msgspec.Struct, kw_only=True):
    device: str
    prev: int
    last: int
    records: list[OldRecord]


_old = msgspec.json.Decoder(OldBatch)


def old_handler(store: IngestStore, client, msg) -> None:
    parts = msg.topic.split("/")
    device = parts[-2]
    batch = _old.decode(msg.payload)
    if batch.device != device:
        raise ValueError("another device")
    hw = store.store_batch(batch)
    client.publish(f"ca/v1/{device}/ack", encode(Ack(upto=hw)), qos=1)


def batches(device: str, n: int, size: int, offset: int = 0) -> list[SimpleNamespace]:
    out = []
    for b in range(n):
        recs = []
        for i in range(size):
            seq = offset + b * size + i + 1
            kind = seq % 4
            if kind == 0:
                recs.append({"seq": seq, "id": uuid7(T0 + seq), "type": "rating", "ts": T0 + seq, "point": "till1",
                             "source": "rf", "data": {"value": 2, "class": "top", "remote": "a1b2c", "button": 2,
                                                      "frames": 5, "protocol": "EV1527"}})
            elif kind == 1:
                recs.append({"seq": seq, "id": uuid7(T0 + seq), "type": "sale", "ts": T0 + seq, "point": "till1",
                             "source": "pos-http", "data": {"receipt": f"R{seq}", "amount": 12.5, "items": 3}})
            elif kind == 2:
                recs.append({"seq": seq, "id": uuid7(T0 + seq), "type": "contact", "ts": T0 + seq, "point": "till1",
                             "source": "core", "data": {"contact": uuid7(T0 + seq), "point": "till1",
                                                        "opened": "2026-11-20T09:00:00.000Z",
                                                        "closed": "2026-11-20T09:01:00.000Z", "duration_s": 60.0,
                                                        "owner": "anna", "rating": 5, "sales": [f"R{seq}"],
                                                        "tags": ["positive", "rated", "productive"],
                                                        "superseded": [], "rating_class": "top", "revenue": 12.5}})
            else:
                recs.append({"seq": seq, "id": uuid7(T0 + seq), "type": "rating_settled", "ts": T0 + seq,
                             "point": "till1", "source": "core",
                             "data": {"rating": uuid7(T0 + seq), "value": 5, "class": "top", "status": "counted",
                                      "owner": "anna", "contact": uuid7(T0 + seq)}})
        first = offset + b * size
        payload = json.dumps({"device": device, "prev": first, "last": first + size, "records": recs}).encode()
        out.append(SimpleNamespace(topic=f"ca/v1/{device}/journal", payload=payload))
    return out


def rate(handle, msgs: list, records_per_msg: int) -> float:
    t0 = time.perf_counter()
    for m in msgs:
        handle(m)
    return len(msgs) * records_per_msg / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=100, help="batches per round")
    ap.add_argument("--records", type=int, default=200, help="records per batch (the box sends up to 200)")
    ap.add_argument("--rounds", type=int, default=9, help="rounds, alternating the two paths (median)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ram = "/dev/shm" if Path("/dev/shm").is_dir() else None      # disk latency would drown the difference
    with tempfile.TemporaryDirectory(prefix="bench-ingest-", dir=ram) as tmp:
        store = IngestStore(Path(tmp) / "ingest.db")
        ingest = Ingest(BrokerSettings("mqtt://127.0.0.1:1"), store, quotas=Quotas(records_per_min=10**9,
                                                                                   bytes_per_min=10**12))
        client = Recorder()
        checked, unchecked = [], []
        for r in range(args.rounds):          # alternate, each on fresh devices: same store, same sizes
            old = batches(f"old-{r}", args.batches, args.records)
            new = batches(f"new-{r}", args.batches, args.records)
            unchecked.append(rate(lambda m: old_handler(store, client, m), old, args.records))
            before = ingest.rejected
            checked.append(rate(lambda m: ingest._on_message(client, None, m), new, args.records))
            assert ingest.rejected == before, "the benchmark's records must all be accepted"
        poison = [SimpleNamespace(topic="ca/v1/p/journal", payload=b'{"records": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
                  SimpleNamespace(topic="ca/v1/p/journal", payload=b'{"x": "' + b"a" * (1024 * 1024) + b'"}')]
        t0 = time.perf_counter()
        for _ in range(20):
            for m in poison:
                ingest._on_message(client, None, m)
        poison_ms = (time.perf_counter() - t0) * 1000 / 40
        store.close()
    out = {"machine": machine(), "store": "RAM disk" if ram else "disk", "records_per_batch": args.records,
           "batches": args.batches, "rounds": args.rounds,
           "checked_records_per_s": round(statistics.median(checked)),
           "unchecked_records_per_s": round(statistics.median(unchecked)),
           "ratio": round(statistics.median(checked) / statistics.median(unchecked), 3),
           "poison_refusal_ms": round(poison_ms, 2)}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"machine: {out['machine']}")
    print(f"ingest handler, {args.batches} batches of {args.records} records, median of {args.rounds} rounds "
          f"(store on {out['store']}):")
    print(f"  with the checks (topic shape, bounds, nesting, vocabulary, quota): "
          f"{out['checked_records_per_s']:>8,} records/s")
    print(f"  the same path without them (before):                             "
          f"{out['unchecked_records_per_s']:>8,} records/s")
    print(f"  ratio {out['ratio']:.2f} (aim ≥ 0.9)")
    print(f"  refusing a poison message (5,000-deep, 1 MB): {out['poison_refusal_ms']:.2f} ms each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
