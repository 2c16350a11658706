"""Benchmark: durable journal appends and core replay throughput.

    python bench/journal_replay.py [--events 200000] [--appends 3000] [--json]

Each figure is printed next to a reference measured in the same run on the same
machine, as a ratio:
  - appends: our Journal (WAL, synchronous=FULL, UUIDv7, JSON, idempotency key) against
    bare sqlite3 inserts of the same rows with the same durability settings;
  - one-commit-per-event appends against the disk's fsync rate (their physical ceiling);
  - replay (decode + validate + sort + contact pipeline + metrics) against a bare
    ``json.loads`` of the same lines (the cost floor of reading the file at all).
Targets (issue 2): ≥ 5,000 durable events/s, ≥ 50,000 replayed events/s on one core.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from appliance.config import parse_config  # noqa: E402
from appliance.journal import Journal, NewEvent  # noqa: E402
from appliance.metrics import summary  # noqa: E402
from appliance.replay import replay_file  # noqa: E402
from appliance.timefmt import iso_ms  # noqa: E402

CONFIG = """
[points.till1]
pos = true
rating_scale = { 1 = "negative", 2 = "negative", 3 = "neutral", 4 = "neutral", 5 = "top" }
[points.till2]
pos = true
[points.till3]
presence = "sensor"
[sensors.s3]
point = "till3"
"""


def events(n: int, seed: int = 1) -> list[dict]:
    rnd = random.Random(seed)
    out: list[dict] = []
    t = 1_795_165_200_000
    points = ["till1", "till2", "till3"]
    per = n // len(points)
    for p in points:
        t = 1_795_165_200_000
        k = 0
        while k < per:
            dur = rnd.randint(5_000, 240_000)
            if p == "till3":
                out.append({"ts": iso_ms(t), "type": "sensor", "point": p, "present": True})
                out.append({"ts": iso_ms(t + dur), "type": "sensor", "point": p, "present": False})
            else:
                out.append({"ts": iso_ms(t), "type": "presence", "point": p, "state": "arrived"})
                out.append({"ts": iso_ms(t + dur), "type": "presence", "point": p, "state": "left"})
            k += 2
            if rnd.random() < 0.6:
                out.append({"ts": iso_ms(t + dur + rnd.randint(-10_000, 10_000)), "type": "rating",
                            "point": p, "value": rnd.choice([1, 2] if p != "till1" else [1, 3, 5, 5])})
                k += 1
            if rnd.random() < 0.7:
                out.append({"ts": iso_ms(t + dur - 2000), "type": "sale", "point": p,
                            "receipt": f"{p}-{k}", "amount": 9.9})
                k += 1
            if rnd.random() < 0.02:
                out.append({"ts": iso_ms(t), "type": "staff", "point": p, "staff": rnd.choice("abc")})
                k += 1
            t += dur + rnd.randint(1_000, 120_000)
    return out


def bench_fsync(path: Path, n: int = 300) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(fd, b"x" * 64)
        os.fsync(fd)
    dt = time.perf_counter() - t0
    os.close(fd)
    return n / dt


def bench_appends(tmp: Path, n: int, batch: int) -> float:
    j = Journal(tmp / f"j{batch}.db")
    evs = [NewEvent("rating", 1_795_165_200_000 + i, {"value": 5, "class": "top"}, "till1", "bench",
                    key=f"bench:{batch}:{i}") for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        j.append_many(evs[i:i + batch]) if batch > 1 else j.append(evs[i])
    dt = time.perf_counter() - t0
    assert j.count() == n
    j.close()
    return n / dt


def bench_bare_sqlite(tmp: Path, n: int, batch: int) -> float:
    db = sqlite3.connect(tmp / f"bare{batch}.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE e(seq INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER, data TEXT)")
    rows = [(1_795_165_200_000 + i, '{"value":5}') for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO e(ts, data) VALUES (?, ?)", rows[i:i + batch])
        db.execute("COMMIT")
    dt = time.perf_counter() - t0
    db.close()
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000, help="events to replay")
    ap.add_argument("--appends", type=int, default=3_000, help="events to append one per commit")
    ap.add_argument("--json", action="store_true", help="also print one JSON line of results")
    args = ap.parse_args()
    cfg = parse_config(CONFIG)
    res: dict = {"machine": machine()}
    print(f"machine: {res['machine']}")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        tmp = Path(d)
        fsyncs = bench_fsync(tmp / "fsync.bin")
        one = bench_appends(tmp, args.appends, 1)
        bare_one = bench_bare_sqlite(tmp, args.appends, 1)
        batched = bench_appends(tmp, args.appends * 10, 100)
        bare_batched = bench_bare_sqlite(tmp, args.appends * 10, 100)
        res.update(fsync_per_s=fsyncs, append_1=one, bare_1=bare_one, append_100=batched, bare_100=bare_batched)
        print("\njournal appends, durable (WAL, synchronous=FULL; a returned commit survives a power cut)")
        print(f"  {'one event per commit':34} {one:>10,.0f} ev/s   bare sqlite3 {bare_one:>10,.0f}/s  "
              f"ratio {one / bare_one:.2f}   disk fsyncs {fsyncs:,.0f}/s")
        print(f"  {'100 events per commit':34} {batched:>10,.0f} ev/s   bare sqlite3 {bare_batched:>10,.0f}/s  "
              f"ratio {batched / bare_batched:.2f}")

        evs = events(args.events)
        src = tmp / "events.jsonl"
        src.write_text("".join(json.dumps(e) + "\n" for e in evs))
        t0 = time.perf_counter()
        n_lines = sum(1 for line in open(src, "rb") if json.loads(line))
        parse = time.perf_counter() - t0
        t0 = time.perf_counter()
        records, errors, n = replay_file(cfg, str(src))
        metrics = summary(records, cfg.points)
        rep = time.perf_counter() - t0
        assert not errors and n == n_lines
        res.update(replay_events=n, replay_per_s=n / rep, json_loads_per_s=n_lines / parse,
                   contacts=metrics["overall"]["contacts"])
        print(f"\nreplay (decode + validate + sort + contacts + attachment + metrics), {n:,} events, "
              f"{metrics['overall']['contacts']:,} contacts")
        print(f"  {'replay':34} {n / rep:>10,.0f} ev/s   bare json.loads {n_lines / parse:>10,.0f}/s  "
              f"ratio {(n / rep) / (n_lines / parse):.2f}")
    ok_append = batched >= 5_000
    ok_replay = res["replay_per_s"] >= 50_000
    print(f"\ntargets: durable appends ≥ 5,000 ev/s (batched): {'met' if ok_append else 'NOT met'}; "
          f"replay ≥ 50,000 ev/s: {'met' if ok_replay else 'NOT met'}")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
