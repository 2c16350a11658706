"""Benchmark: a fleet of simulated boxes against one Mosquitto and the reference ingest on
PostgreSQL, two ingest workers sharing the subscription.

    python bench/fleet_scale.py [--boxes 1000] [--procs 4] [--speed 20] [--events-per-min 3] [--seconds 60] [--json]

Each simulated box is a lightweight MQTT client speaking the real wire format (``status``
retained with a last will, one-record ``journal`` batches at QoS 1, ``health`` every 60 s,
``ack`` subscribed); ``--procs`` processes drive ``--boxes`` clients between them (one
network loop per process, no thread per box). Time runs ``--speed`` times faster than a
shop's: at the defaults every box sends an event a second and a health report every 3 s.
The ingest workers are the real ``fleetctl ingest`` (``--shared auto``: MQTT 5 shared
subscription) on one PostgreSQL.

Printed: records/s stored against the rate offered; end-to-end ack latency (a record
published -> the ingest's ack for it back at the box) p50/p99; CPU (% of one core) and
memory of the broker, each ingest worker and PostgreSQL; ``fleetctl devices`` for the
whole fleet; and the arithmetic of what one worker holds. The references, measured in the
same run on the same machine: the broker's bare QoS 1 round trip with no storage, and
PostgreSQL's bare rate of one-row committed transactions.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import paho.mqtt.client as mqtt  # noqa: E402
from common import cpu_s, machine, pids_named, rss_mb  # noqa: E402

from appliance.cloud.wire import Batch, Record, Status, decode_ack, encode  # noqa: E402
from appliance.ids import uuid7  # noqa: E402

PREFIX = "ca/v1"
T0 = 1_795_165_200_000


# --- a simulated box ---------------------------------------------------------------------------

class SimBox:
    def __init__(self, device: str, port: int, rng: random.Random):
        self.device = device
        self.seq = 0
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.acked = 0
        self.rng = rng
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
        c.will_set(f"{PREFIX}/{device}/status", encode(Status(state="offline")), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.max_inflight_messages_set(20)
        self.c = c
        self.connected = False
        c.connect("127.0.0.1", port, keepalive=120)

    def _on_connect(self, c, u, f, rc, p):
        c.subscribe(f"{PREFIX}/{self.device}/ack", qos=1)
        c.publish(f"{PREFIX}/{self.device}/status", encode(Status(state="online")), qos=1, retain=True)
        self.connected = True

    def _on_message(self, c, u, msg):
        try:
            upto = decode_ack(msg.payload).upto
        except ValueError:
            return
        now = time.monotonic()
        for s in range(self.acked + 1, upto + 1):
            t = self.sent.pop(s, None)
            if t is not None:
                self.latencies.append(now - t)
        self.acked = max(self.acked, upto)

    def event(self) -> None:
        self.seq += 1
        ts = T0 + self.seq * 1000
        rec = Record(seq=self.seq, id=uuid7(ts), type="rating", ts=ts, point="till1", source="rf",
                     data={"value": self.rng.choice([1, 2, 3]), "class": "neutral", "remote": "a1b2c3", "button": 1})
        self.sent[self.seq] = time.monotonic()
        self.c.publish(f"{PREFIX}/{self.device}/journal",
                       encode(Batch(device=self.device, prev=self.seq - 1, last=self.seq, records=[rec])), qos=1)

    def health(self) -> None:
        doc = {"device": self.device, "time": int(time.time() * 1000), "uptime_s": 1234.5, "load": [0.1, 0.2, 0.1],
               "temperature_c": 48.3, "disk": {"free_mb": 12000.0, "used_pct": 23.1},
               "backlog": {"count": len(self.sent), "age_s": 0.4}, "microphone": {"state": "ok", "level_dbfs": -38.2},
               "rf": {"last_seen": int(time.time() * 1000)}, "time_sync": True, "versions": {"appliance": "0.1.0"}}
        self.c.publish(f"{PREFIX}/{self.device}/health", json.dumps(doc).encode(), qos=0)


def boxes_process(first: int, n: int, port: int, speed: float, events_per_min: float, seconds: float,
                  start_at: float, out: mp.Queue) -> None:
    rng = random.Random(first)
    boxes = []
    for i in range(first, first + n):
        boxes.append(SimBox(f"box-{i:05d}", port, rng))
        boxes[-1].c.loop(timeout=0)
    ev_interval = 60.0 / events_per_min / speed
    health_interval = 60.0 / speed
    next_ev = [start_at + rng.random() * ev_interval for _ in boxes]
    next_h = [start_at + rng.random() * health_interval for _ in boxes]
    end = start_at + seconds
    while time.time() < start_at:
        for b in boxes:
            b.c.loop(timeout=0)
        time.sleep(0.01)
    offered = healths = 0
    while time.time() < end:
        now = time.time()
        for k, b in enumerate(boxes):
            if now >= next_ev[k]:
                b.event()
                offered += 1
                next_ev[k] += ev_interval * (0.5 + rng.random())
            if now >= next_h[k]:
                b.health()
                healths += 1
                next_h[k] += health_interval
            b.c.loop(timeout=0)
        time.sleep(0.002)
    drain_end = time.time() + 30                  # wait for the last acks
    while time.time() < drain_end and any(b.sent for b in boxes):
        for b in boxes:
            b.c.loop(timeout=0)
        time.sleep(0.005)
    lat = [x for b in boxes for x in b.latencies]
    unacked = sum(len(b.sent) for b in boxes)
    for b in boxes:
        b.c.disconnect()
        b.c.loop(timeout=0)
    out.put({"offered": offered, "healths": healths, "latencies": lat, "unacked": unacked})


# --- references ------------------------------------------------------------------------------

def broker_round_trip(port: int, n: int = 20000) -> float:
    """QoS 1 messages of a one-record batch's size, publisher -> broker -> subscriber, no storage."""
    got = threading.Event()
    count = [0]

    def on_msg(c, u, m):
        count[0] += 1
        if count[0] >= n:
            got.set()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ref-sub", protocol=mqtt.MQTTv5)
    sub.on_message = on_msg
    sub.connect("127.0.0.1", port)
    sub.subscribe("ref/x", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ref-pub", protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    time.sleep(0.5)
    payload = b"x" * 330
    t0 = time.perf_counter()
    for _ in range(n):
        pub.publish("ref/x", payload, qos=1)
    got.wait(120)
    dt = time.perf_counter() - t0
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return count[0] / dt


def pg_commits(url: str, n: int = 3000) -> float:
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE IF NOT EXISTS ref(id SERIAL PRIMARY KEY, data TEXT)")
        t0 = time.perf_counter()
        for i in range(n):
            db.execute("BEGIN")
            db.execute("INSERT INTO ref(data) VALUES (%s)", (f"row {i}",))
            db.execute("COMMIT")
        dt = time.perf_counter() - t0
        db.execute("DROP TABLE ref")
    return n / dt


# --- the run ---------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boxes", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--speed", type=float, default=20.0)
    ap.add_argument("--events-per-min", type=float, default=3.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from tests.mqtt_broker import Mosquitto
    from tests.postgres_server import Postgres

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    broker = Mosquitto(work / "broker", persistence=False, extra="max_connections -1\n").start()
    pg = Postgres(work).start()
    workers = []
    try:
        print(f"machine: {machine()}")
        print(f"fleet: {args.boxes} boxes in {args.procs} processes, time x{args.speed:g} "
              f"({args.events_per_min:g} events and 1 health report per box per shop minute), {args.seconds:g} s")
        ref_mqtt = broker_round_trip(broker.port)
        ref_pg = pg_commits(pg.url)
        fleetctl = str(Path(sys.executable).with_name("fleetctl"))
        for k in (1, 2):
            workers.append(subprocess.Popen(
                [fleetctl, "ingest", "--broker", f"mqtt://127.0.0.1:{broker.port}", "--db", pg.url,
                 "--client-id", f"ingest-{k}"], stdout=subprocess.DEVNULL, stderr=open(work / f"ingest-{k}.log", "w")))
        time.sleep(3)
        q: mp.Queue = mp.Queue()
        per = args.boxes // args.procs
        start_at = time.time() + 5 + args.boxes / 400          # every box connected before the clock starts
        procs = [mp.Process(target=boxes_process, args=(i * per, per if i < args.procs - 1 else args.boxes - i * per,
                                                        broker.port, args.speed, args.events_per_min, args.seconds,
                                                        start_at, q)) for i in range(args.procs)]
        for p in procs:
            p.start()
        while time.time() < start_at:
            time.sleep(0.05)
        watched = {"broker": [broker.proc.pid], "ingest-1": [workers[0].pid], "ingest-2": [workers[1].pid]}
        cpu0 = {k: sum(cpu_s(p) for p in v) for k, v in watched.items()}
        pg_pids = pids_named("postgres")
        cpu0["postgresql"] = sum(cpu_s(p) for p in pg_pids)
        t0 = time.monotonic()
        peak = {k: 0.0 for k in list(watched) + ["postgresql"]}
        while time.monotonic() - t0 < args.seconds:
            for k, v in watched.items():
                peak[k] = max(peak[k], sum(rss_mb(p) for p in v))
            peak["postgresql"] = max(peak["postgresql"], sum(rss_mb(p) for p in pids_named("postgres")))
            time.sleep(1)
        dt = time.monotonic() - t0
        cpu = {k: (sum(cpu_s(p) for p in v) - cpu0[k]) / dt * 100 for k, v in watched.items()}
        cpu["postgresql"] = (sum(cpu_s(p) for p in pids_named("postgres")) - cpu0["postgresql"]) / dt * 100
        results = [q.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
        import psycopg
        with psycopg.connect(pg.url) as db:
            stored = db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone()
            devices = db.execute("SELECT COUNT(*) FROM devices").fetchone()[0]
            health = db.execute("SELECT COUNT(*) FROM device_state WHERE health IS NOT NULL").fetchone()[0]
        t1 = time.perf_counter()
        r = subprocess.run([fleetctl, "devices", "--db", pg.url, "--json"], capture_output=True, text=True)
        devices_s = time.perf_counter() - t1
        listed = len(json.loads(r.stdout)) if r.returncode == 0 else -1
    finally:
        for w in workers:                   # a worker stores and acks what it had taken in before it exits
            w.terminate()
        for w in workers:
            try:
                w.wait(60)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        pg.stop()
        broker.stop()
    offered = sum(x["offered"] for x in results)
    healths = sum(x["healths"] for x in results)
    lat = sorted(x for r_ in results for x in r_["latencies"])
    unacked = sum(x["unacked"] for x in results)
    rate = stored[0] / args.seconds
    p50, p99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000
    worker_core_s = (cpu["ingest-1"] + cpu["ingest-2"]) / 100 * args.seconds
    per_msg_ms = worker_core_s / max(1, stored[0] + healths) * 1000    # a batch or a health report
    ref_commit_ms = 1000 / ref_pg
    box_msgs_per_s = (args.events_per_min + 1) / 60                    # a shop minute: events + one health report
    boxes_per_worker = (700 / per_msg_ms) / box_msgs_per_s             # at 70 % of a core
    out = {"boxes": args.boxes, "devices_seen": devices, "devices_with_health": health, "offered": offered,
           "health_reports": healths, "stored": stored[0], "stored_distinct": stored[1], "unacked": unacked,
           "records_per_s": round(rate, 1), "stored_over_offered": round(stored[0] / max(1, offered), 4),
           "ack_p50_ms": round(p50, 1), "ack_p99_ms": round(p99, 1),
           "cpu_pct": {k: round(v, 1) for k, v in cpu.items()}, "rss_mb": {k: round(v, 1) for k, v in peak.items()},
           "fleetctl_devices_s": round(devices_s, 2), "fleetctl_devices_listed": listed,
           "ref_broker_round_trip_per_s": round(ref_mqtt), "ref_pg_commits_per_s": round(ref_pg),
           "ingest_ms_per_message": round(per_msg_ms, 3), "boxes_per_worker_at_70pct": int(boxes_per_worker)}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"devices seen {devices} (with health {health}); records offered {offered}, stored {stored[0]} "
          f"({stored[1]} distinct) = {stored[0] / max(1, offered):.4f}x offered; unacked at the end {unacked}")
    print(f"stored {rate:,.0f} records/s; the broker's bare QoS 1 round trip (no storage) in this run: "
          f"{ref_mqtt:,.0f}/s ({rate / ref_mqtt:.3f}x)")
    print(f"ack latency, record published -> ack back at the box: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    for k in cpu:
        print(f"  {k:11} CPU {cpu[k]:5.1f} % of a core, RSS peak {peak[k]:6.1f} MB")
    print(f"fleetctl devices --json for {listed} devices: {devices_s:.2f} s")
    print(f"ingest workers: {per_msg_ms:.3f} ms CPU per message (a batch or a health report) = "
          f"{per_msg_ms / ref_commit_ms:.2f}x PostgreSQL's bare one-row commit in this run ({ref_commit_ms:.3f} ms)")
    print(f"one worker at 70 % of a core holds ~{boxes_per_worker:,.0f} boxes sending {args.events_per_min:g} "
          f"events and one health report a minute")
    return 0


if __name__ == "__main__":
    sys.exit(main())
