"""Benchmark: the morning after an outage. N boxes reconnect at once, each with a busy day's
backlog, and the ingest drains them — against a bare per-message durable subscriber in the
same run (the floor).

    python bench/fleet_herd.py [--boxes 1000] [--records 1400] [--procs 2] [--pg-workers 1,2,4]
                               [--steady 1000,10000] [--steady-seconds 60] [--json]

Each simulated box behaves like ``appliance-sync``: its own MQTT 5 session, batches of 200
records (the journal's real record shapes: rating presses, receipts, settled contacts and
ratings), a window of 4 batches, the same :class:`~appliance.cloud.sync.AckWindow` that paces
the real box (the random delay after a reconnect, ``ack_timeout_s`` = 30 s, only the oldest
batch again after a timeout while the broker took every publish, the timeout doubling up to
600 s, never before the ingest's load hint). ``--procs`` processes drive the boxes, each with
one event loop over all its sockets; their own CPU is printed so the simulator is seen not to
be the bottleneck.

Printed per ingest (the floor, ``fleetctl ingest`` on SQLite, then 1/2/4 workers sharing the
subscription on PostgreSQL): drain time (all boxes connect → every record acknowledged),
records/s, ack latency p50/p99 (a batch's first publish → the ack covering it), timeout
resends (oldest-batch resends and full resends) and batches sent against batches needed,
every record stored exactly once, ingest and broker CPU and peak RSS. The floor is a paho
subscriber doing the same durable work per message: SQLite WAL with synchronous=FULL, one
transaction per message, INSERT … ON CONFLICT DO NOTHING into the same records table, its
high-water mark in the same transaction, then the ack (QoS 0, TCP_NODELAY — as ours).

Then the steady state: ``--steady`` fleets of boxes each sending 1–5 records every 5–60 s for
``--steady-seconds`` to ``fleetctl ingest`` on SQLite: ack latency p50/p99.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import resource
import selectors
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import msgspec  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from common import cpu_s, machine, pids_named, rss_mb  # noqa: E402

from appliance.cloud.mqtt import no_delay as mqtt_no_delay  # noqa: E402
from appliance.cloud.sync import WINDOW, AckWindow, broker_took  # noqa: E402
from appliance.cloud.wire import decode_ack, decode_load  # noqa: E402

PREFIX = "ca/v1"
T0 = 1_795_165_200_000
BATCH = 200


# --- the records of a busy day ------------------------------------------------------------------

def record_id(box: int, seq: int, ts: int) -> str:
    """Stable per (box, seq): a record sent again has the same id (the ingest keeps it once)."""
    h = f"{ts:012x}"
    return f"{h[:8]}-{h[8:12]}-7{box % 4096:03x}-8{seq % 4096:03x}-{box:06x}{seq:06x}"


def record_json(box: int, seq: int) -> str:
    ts = T0 + seq * 40_000                       # 1,400 records over about 16 hours
    rid = record_id(box, seq, ts)
    head = f'{{"seq":{seq},"id":"{rid}","ts":{ts},"point":"till1",'
    kind = seq % 4
    if kind == 0:
        return head + ('"type":"rating","source":"rf","data":{"value":2,"class":"top","remote":"a1b2c",'
                       '"button":2,"frames":5,"protocol":"EV1527"}}')
    if kind == 1:
        return head + f'"type":"sale","source":"pos-http","data":{{"receipt":"R{seq}","amount":12.5,"items":3}}}}'
    if kind == 2:
        return head + ('"type":"contact","source":"core","data":{"contact":"' + rid + '","point":"till1",'
                       '"opened":"2026-11-20T09:00:00.000Z","closed":"2026-11-20T09:01:00.000Z","duration_s":60.0,'
                       '"owner":"anna","rating":5,"sales":["R' + str(seq) + '"],'
                       '"tags":["positive","rated","productive"],"superseded":[],"rating_class":"top",'
                       '"revenue":12.5}}')
    return head + ('"type":"rating_settled","source":"core","data":{"rating":"' + rid + '","value":5,'
                   '"class":"top","status":"counted","owner":"anna","contact":"' + rid + '"}}')


def batch_json(device: str, box: int, prev: int, last: int) -> bytes:
    recs = ",".join(record_json(box, s) for s in range(prev + 1, last + 1))
    return f'{{"device":"{device}","prev":{prev},"last":{last},"records":[{recs}]}}'.encode()


# --- a simulated box -------------------------------------------------------------------------------

def no_delay(c, userdata, sock) -> None:
    mqtt_no_delay(sock)


class HerdBox:
    """One box's sync stage with a synthetic journal of ``records`` records: the real
    AckWindow decides when to send, resend and wait; this class only publishes."""

    def __init__(self, index: int, port: int, records: int, pace: dict, rng: random.Random, now: float):
        self.index = index
        self.device = f"box-{index:07d}"
        self.records = records
        self.rng = rng
        self.window = AckWindow(0, pace["timeout"], pace["max_timeout"], pace["jitter"], now=now)
        self.window.connections = 1          # it was online before the outage: this connect is a reconnect
        self.first_sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.published: dict[int, mqtt.MQTTMessageInfo] = {}
        self.batches_sent = 0
        self.done_at: float | None = None
        self.connected = False
        self.steady_next = 0.0
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.device, protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(20)      # as appliance-sync
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_socket_open = no_delay
        self.c = c
        self.port = port

    def connect(self) -> None:
        self.c.connect("127.0.0.1", self.port, keepalive=120)

    def _on_connect(self, c, u, f, rc, p) -> None:
        c.subscribe(f"{PREFIX}/{self.device}/ack", qos=1)
        c.subscribe(f"{PREFIX}/ingest/load/+", qos=0)
        self.window.reconnected(time.monotonic(), self.rng)
        self.published = {}
        self.connected = True

    def _on_message(self, c, u, msg) -> None:
        now = time.monotonic()
        if msg.topic.startswith(f"{PREFIX}/ingest/load/"):
            self.window.on_busy(msg.topic.rsplit("/", 1)[1], decode_load(msg.payload).wait_s, now)
            return
        upto = decode_ack(msg.payload).upto
        self.window.on_ack(upto)
        for last in [k for k in self.first_sent if k <= upto]:
            self.latencies.append(now - self.first_sent.pop(last))

    def step(self, now: float) -> None:
        w = self.window
        upto = w.take_pending()
        if upto is not None:
            w.committed(upto, now)
            self.published = {k: i for k, i in self.published.items() if k > upto}
            if w.acked >= self.records and self.done_at is None:
                self.done_at = now
        if w.stalled(now):
            flight = list(w.in_flight)
            if self.connected and all(k in self.published and broker_took(self.published[k]) for k in flight):
                w.probe(now, self._send(w.acked, now, probe=True))
            else:
                w.resend_all(now)
        while self.connected and w.sent < self.records and w.may_send(now):
            last = self._send(w.sent, now)
            w.sent_batch(last, now)

    def _send(self, prev: int, now: float, probe: bool = False) -> int:
        last = min(prev + BATCH, self.records)
        info = self.c.publish(f"{PREFIX}/{self.device}/journal", batch_json(self.device, self.index, prev, last),
                              qos=1)
        self.batches_sent += 1
        if not probe:
            self.published[last] = info
        self.first_sent.setdefault(last, now)
        return last

    def steady(self, now: float) -> None:
        """The steady state: 1-5 new records every 5-60 s (the journal grows, the window sends)."""
        if now >= self.steady_next:
            if self.steady_next:
                self.records += self.rng.randint(1, 5)
            self.steady_next = now + self.rng.uniform(5, 60)


def drive(boxes: list[HerdBox], until, steady: bool = False) -> None:
    """One event loop for every box of this process (paho's external-loop API)."""
    sel = selectors.DefaultSelector()
    for b in boxes:
        sel.register(b.c.socket(), selectors.EVENT_READ, b)
    last_misc = 0.0
    while not until():
        for key, _ in sel.select(timeout=0.005):
            key.data.c.loop_read()
        now = time.monotonic()
        for b in boxes:
            if steady:
                b.steady(now)
            b.step(now)
            if b.c.want_write():
                b.c.loop_write()
        if now - last_misc > 1.0:
            last_misc = now
            for b in boxes:
                b.c.loop_misc()


def boxes_process(first: int, n: int, port: int, records: int, pace: dict, start_at: float, mode: str,
                  seconds: float, out: mp.Queue) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rng = random.Random(first * 7919 + 1)
    boxes = [HerdBox(i, port, records if mode == "herd" else 0, pace, rng, time.monotonic())
             for i in range(first, first + n)]
    while time.time() < start_at:
        time.sleep(0.005)
    t0 = time.monotonic()
    cpu0 = time.process_time()
    for b in boxes:                          # every box reconnects within about a second
        b.connect()
    if mode == "herd":
        limit = t0 + seconds
        drive(boxes, lambda: all(b.done_at for b in boxes) or time.monotonic() > limit)
    else:
        warm = t0 + 10 + n / 500             # connected, the first random intervals begun
        drive(boxes, lambda: time.monotonic() > warm, steady=True)
        for b in boxes:
            b.latencies.clear()
            b.first_sent = {k: v for k, v in b.first_sent.items() if v >= warm}
        end = time.monotonic() + seconds
        drive(boxes, lambda: time.monotonic() > end, steady=True)
        settle = time.monotonic() + 10
        drive(boxes, lambda: time.monotonic() > settle or all(b.window.acked >= b.records for b in boxes))
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - t0
    for b in boxes:
        b.c.disconnect()
    out.put({"latencies": [x for b in boxes for x in b.latencies],
             "done": [b.done_at - t0 for b in boxes if b.done_at is not None], "boxes": n,
             "unfinished": sum(1 for b in boxes if b.window.acked < b.records),
             "batches_sent": sum(b.batches_sent for b in boxes),
             "batches_needed": sum(-(-b.records // BATCH) for b in boxes),
             "probes": sum(b.window.probes for b in boxes), "rewinds": sum(b.window.rewinds for b in boxes),
             "records": sum(b.records for b in boxes), "cpu_s": cpu, "wall_s": wall})


# --- the floor: a bare per-message durable subscriber ----------------------------------------------

class BareRecord(msgspec.Struct):
    seq: int
    id: str
    type: str
    ts: int
    point: str | None = None
    source: str = ""
    data: msgspec.Raw = msgspec.Raw(b"{}")


class BareBatch(msgspec.Struct):
    device: str
    prev: int
    last: int
    records: list[BareRecord]


def floor_process(port: int, db_path: str, ready: mp.Event, stop: mp.Event) -> None:
    from fleet.ingest import SCHEMA
    db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)   # used on paho's thread
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    for stmt in SCHEMA[:3]:                  # the same records table and index as the ingest's
        db.execute(stmt)
    db.execute("CREATE TABLE marks(id TEXT PRIMARY KEY, hw BIGINT NOT NULL)")
    dec = msgspec.json.Decoder(BareBatch)

    def on_message(c, u, m) -> None:
        b = dec.decode(m.payload)
        now = int(time.time() * 1000)
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO records(device, seq, id, type, point, ts, source, data, received)"
                       " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
                       [(b.device, r.seq, r.id, r.type, r.point, r.ts, r.source, bytes(r.data).decode(), now)
                        for r in b.records])
        row = db.execute("SELECT hw FROM marks WHERE id = ?", (b.device,)).fetchone()
        hw = row[0] if row else 0
        if b.prev <= hw:
            hw = max(hw, b.last)
        db.execute("INSERT INTO marks VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET hw = excluded.hw", (b.device, hw))
        db.execute("COMMIT")
        c.publish(f"{PREFIX}/{b.device}/ack", b'{"upto":%d}' % hw, qos=0)

    subscribe_until(port, "floor", on_message, ready, stop)
    db.close()


def subscribe_until(port: int, name: str, on_message, ready: mp.Event, stop: mp.Event) -> None:
    """A reference subscriber: every box's journal at QoS 1, ``on_message`` on paho's thread."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.on_socket_open = no_delay
    c.on_connect = lambda c, u, f, rc, p: (c.subscribe(f"{PREFIX}/+/journal", qos=1), ready.set())
    c.connect("127.0.0.1", port)
    c.loop_start()
    stop.wait()
    c.loop_stop()


def same_rows_process(port: int, db_path: str, ready: mp.Event, stop: mp.Event) -> None:
    """The second reference: a per-message subscriber writing what ours writes (the records
    and the web office's rows, through the ingest's own store), one transaction per message,
    without our checks — what the group commit and the pipeline buy for the same rows."""
    from appliance.cloud.wire import decode_batch
    from fleet.ingest import IngestStore
    store = IngestStore(db_path)

    def on_message(c, u, m) -> None:
        b = decode_batch(m.payload)
        hw = store.write_group([("batch", b)])[0]
        c.publish(f"{PREFIX}/{b.device}/ack", b'{"upto":%d}' % hw, qos=0)

    subscribe_until(port, "same-rows", on_message, ready, stop)
    store.close()


# --- one run ---------------------------------------------------------------------------------------

def run_fleet(args, port: int, boxes: int, procs_n: int, base: int, records: int, mode: str, seconds: float,
              watched: dict) -> tuple[list[dict], dict, dict, float]:
    """``boxes`` simulated boxes (numbered from ``base``) in ``procs_n`` processes, started
    together; the ``watched`` processes' CPU (% of a core) and peak RSS (MB) until every
    simulator has reported. Returns the simulators' reports, CPU, RSS and the seconds taken."""
    q: mp.Queue = mp.Queue()
    per = -(-boxes // procs_n)
    start_at = time.time() + 1.0
    pace = {"timeout": 30.0, "max_timeout": 600.0, "jitter": args.jitter}
    procs = [mp.Process(target=boxes_process, args=(base + k * per, min(per, boxes - k * per), port, records, pace,
                                                    start_at, mode, seconds, q))
             for k in range(procs_n) if k * per < boxes]
    for p in procs:
        p.start()
    while time.time() < start_at:
        time.sleep(0.01)
    t0 = time.monotonic()
    cpu0 = {k: sum(cpu_s(p) for p in f()) for k, f in watched.items()}
    peak = dict.fromkeys(watched, 0.0)
    results: list[dict] = []
    while len(results) < len(procs):
        for k, f in watched.items():
            peak[k] = max(peak[k], sum(rss_mb(p) for p in f()))
        try:
            results.append(q.get(timeout=0.5))
        except Exception:  # noqa: BLE001 - queue.Empty: not done yet
            if time.monotonic() - t0 > seconds + 900:
                raise
    wall = time.monotonic() - t0
    cpu = {k: (sum(cpu_s(p) for p in f()) - cpu0[k]) / wall * 100 for k, f in watched.items()}
    for p in procs:
        p.join(30)
    return results, cpu, peak, wall


def herd(args, port: int, label: str, pids, watch_pg: bool = False) -> dict:
    watched = dict(pids)
    if watch_pg:
        watched["postgresql"] = lambda: pids_named("postgres")
    results, cpu, peak, wall = run_fleet(args, port, args.boxes, args.procs, 0, args.records, "herd", args.limit,
                                         watched)
    lat = sorted(x for r in results for x in r["latencies"])
    done = [x for r in results for x in r["done"]]
    unfinished = sum(r["unfinished"] for r in results)
    drain = max(done) if done and not unfinished else float("nan")
    total = args.boxes * args.records
    sent, needed = sum(r["batches_sent"] for r in results), sum(r["batches_needed"] for r in results)
    out = {"label": label, "drain_s": round(drain, 1), "records": total,
           "records_per_s": round(total / drain) if drain == drain else 0, "unfinished_boxes": unfinished,
           "ack_p50_s": round(lat[len(lat) // 2], 2) if lat else None,
           "ack_p99_s": round(lat[int(len(lat) * 0.99)], 2) if lat else None,
           "timeout_resends": sum(r["probes"] + r["rewinds"] for r in results),
           "oldest_batch_resends": sum(r["probes"] for r in results),
           "full_resends": sum(r["rewinds"] for r in results),
           "batches_sent": sent, "batches_needed": needed,
           "cpu_pct": {k: round(v, 1) for k, v in cpu.items()}, "rss_mb": {k: round(v, 1) for k, v in peak.items()},
           "simulator_cpu_pct": round(sum(r["cpu_s"] for r in results) / wall * 100, 1)}
    return out


def count_sqlite(path: Path) -> tuple[int, int]:
    db = sqlite3.connect(path)
    n, d = db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone()
    db.close()
    return n, d


def count_pg(url: str) -> tuple[int, int]:
    import psycopg
    with psycopg.connect(url) as db:
        return db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone()


def start_ingest(broker_port: int, db: str, k: int, work: Path) -> subprocess.Popen:
    fleetctl = str(Path(sys.executable).with_name("fleetctl"))
    log = work / f"ingest-{k}-{int(time.time() * 1000)}.log"
    p = subprocess.Popen([fleetctl, "ingest", "--broker", f"mqtt://127.0.0.1:{broker_port}", "--db", db,
                          "--client-id", f"ingest-{k}"], stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    end = time.monotonic() + 30
    while time.monotonic() < end and "connected to" not in log.read_text():
        time.sleep(0.1)
    return p


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def clear_retained(port: int) -> None:
    """A load hint a stopped worker left behind must not reach the next run's boxes."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="herd-clear", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for k in range(1, 9):
        c.publish(f"{PREFIX}/ingest/load/ingest-{k}", b"", qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def steady(args, port: int, n: int, base: int, pids: dict) -> dict:
    """``base``: the first box's number — each fleet its own boxes (a box that the ingest
    already holds records of would rightly refuse acks above what it sent)."""
    results, cpu, peak, _ = run_fleet(args, port, n, max(args.procs, -(-n // 5000)), base, 0, "steady",
                                      args.steady_seconds, pids)
    cpu = {k: round(v, 1) for k, v in cpu.items()}
    lat = sorted(x for r in results for x in r["latencies"])
    wall = max(r["wall_s"] for r in results)
    return {"boxes": n, "acks": len(lat), "unacked_boxes": sum(r["unfinished"] for r in results),
            "ack_p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
            "ack_p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None,
            "timeout_resends": sum(r["probes"] + r["rewinds"] for r in results),
            "simulator_cpu_pct": round(sum(r["cpu_s"] for r in results) / wall * 100, 1),
            "cpu_pct": cpu, "rss_mb": {k: round(v, 1) for k, v in peak.items()}}


QUIET = [False]
"""--json: only the JSON document on stdout."""


def show(r: dict, floor: dict | None, same: dict | None = None) -> None:
    ratio = ""
    if floor and floor["records_per_s"]:
        ratio = f" = {r['records_per_s'] / floor['records_per_s']:.2f}x the floor"
        r["x_floor"] = round(r["records_per_s"] / floor["records_per_s"], 2)
    if same and same["records_per_s"]:
        ratio += f", {r['records_per_s'] / same['records_per_s']:.2f}x per message with our rows"
        r["x_same_rows"] = round(r["records_per_s"] / same["records_per_s"], 2)
    if QUIET[0]:
        return
    print(f"  {r['label']:32} drain {r['drain_s']:6.1f} s, {r['records_per_s']:>7,} records/s{ratio}")
    print(f"  {'':32} ack p50 {r['ack_p50_s']} s, p99 {r['ack_p99_s']} s; timeout resends "
          f"{r['timeout_resends']} (oldest batch {r['oldest_batch_resends']}, all {r['full_resends']}); batches sent "
          f"{r['batches_sent']:,} for {r['batches_needed']:,} needed; stored {r['stored']:,} "
          f"({r['stored_distinct']:,} distinct) of {r['records']:,}; unfinished boxes {r['unfinished_boxes']}")
    parts = ", ".join(f"{k} {r['cpu_pct'][k]:.0f} % / {r['rss_mb'][k]:.0f} MB" for k in r["cpu_pct"])
    print(f"  {'':32} CPU (of one core) / peak RSS: {parts}; simulator {r['simulator_cpu_pct']:.0f} %")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boxes", type=int, default=1000)
    ap.add_argument("--records", type=int, default=1400, help="backlog per box (default 1400: a busy day)")
    ap.add_argument("--procs", type=int, default=2, help="simulator processes (default 2)")
    ap.add_argument("--jitter", type=float, default=5.0, help="the boxes' reconnect_jitter_s (default 5)")
    ap.add_argument("--sqlite-workers", default="1,2", help="SQLite runs: workers each (default 1,2)")
    ap.add_argument("--pg-workers", default="1,2,4", help="PostgreSQL runs: workers each (default 1,2,4; '' none)")
    ap.add_argument("--steady", default="1000,10000", help="steady-state fleets (default 1000,10000; '' none)")
    ap.add_argument("--steady-seconds", type=float, default=60.0)
    ap.add_argument("--limit", type=float, default=900.0, help="give a drain up after this many seconds")
    ap.add_argument("--herd", action=argparse.BooleanOptionalAction, default=True,
                    help="the reconnect runs (default on; --no-herd: the steady state only)")
    ap.add_argument("--same-rows", action=argparse.BooleanOptionalAction, default=True,
                    help="also the per-message subscriber writing the same rows as ours (default on)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))     # the broker inherits it: 10,000 connections
    from tests.mqtt_broker import Mosquitto
    work = Path(tempfile.mkdtemp(prefix="bench-herd-"))
    broker = Mosquitto(work / "broker", persistence=False,
                       extra="max_connections -1\nmax_queued_messages 0\n").start()
    bpid = broker.proc.pid
    runs: list[dict] = []
    steady_runs: list[dict] = []
    pg = None
    say = (lambda *a, **k: None) if args.json else print
    QUIET[0] = args.json
    try:
        say(f"machine: {machine()}")
        say(f"herd: {args.boxes} boxes x {args.records} records ({args.boxes * args.records:,}) in batches of {BATCH}, "
            f"window {WINDOW}, ack timeout 30 s, reconnect jitter {args.jitter:g} s; {args.procs} simulator processes")
        # the floor, and the per-message subscriber writing our rows
        floor = same = None
        refs = [("floor: bare subscriber, SQLite", floor_process, "floor.db")] if args.herd else []
        if args.same_rows and args.herd:
            refs.append(("per message, our rows, SQLite", same_rows_process, "same.db"))
        say("")
        for label, target, name in refs:
            clear_retained(broker.port)
            ready, stop = mp.Event(), mp.Event()
            fdb = work / name
            fp = mp.Process(target=target, args=(broker.port, str(fdb), ready, stop))
            fp.start()
            ready.wait(30)
            r = herd(args, broker.port, label, {"subscriber": lambda fp=fp: [fp.pid], "broker": lambda: [bpid]})
            stop.set()
            fp.join(30)
            r["stored"], r["stored_distinct"] = count_sqlite(fdb)
            runs.append(r)
            show(r, floor)
            if floor is not None:
                same = r
            floor = floor or r
        # ours on SQLite: one worker, then more sharing the subscription (and the file)
        for n in [int(x) for x in args.sqlite_workers.split(",") if x.strip() and args.herd]:
            clear_retained(broker.port)
            db = work / f"ingest-{n}.db"
            ws = [start_ingest(broker.port, str(db), k, work) for k in range(1, n + 1)]
            r = herd(args, broker.port, "fleetctl ingest, SQLite" + (f" x{n}" if n > 1 else ""),
                     {"ingest": lambda ws=ws: [w.pid for w in ws], "broker": lambda: [bpid]})
            stop_all(ws)
            r["stored"], r["stored_distinct"] = count_sqlite(db)
            r["workers"] = n
            runs.append(r)
            show(r, floor, same)
        # PostgreSQL, 1/2/4 workers
        counts = [int(x) for x in args.pg_workers.split(",") if x.strip() and args.herd]
        if counts:
            from tests.postgres_server import Postgres
            pg = Postgres(work).start()
            import psycopg
            for n in counts:
                clear_retained(broker.port)
                url = pg.url.rsplit("/", 1)[0] + f"/herd{n}"
                with psycopg.connect(pg.url, autocommit=True) as c:
                    c.execute(f"CREATE DATABASE herd{n}")
                ws = [start_ingest(broker.port, url, k, work) for k in range(1, n + 1)]
                time.sleep(1)
                r = herd(args, broker.port, f"fleetctl ingest x{n}, PostgreSQL",
                         {"ingest": lambda ws=ws: [w.pid for w in ws], "broker": lambda: [bpid]}, watch_pg=True)
                stop_all(ws)
                r["stored"], r["stored_distinct"] = count_pg(url)
                r["workers"] = n
                runs.append(r)
                show(r, floor, same)
        # the steady state
        sizes = [int(x) for x in args.steady.split(",") if x.strip()]
        if sizes:
            clear_retained(broker.port)
            db = work / "steady.db"
            w = start_ingest(broker.port, str(db), 1, work)
            say("")
            for j, n in enumerate(sizes):
                s = steady(args, broker.port, n, 1_000_000 * (j + 1),
                           {"ingest": lambda: [w.pid], "broker": lambda: [bpid]})
                steady_runs.append(s)
                say(f"  steady state, {n:>6,} boxes sending 1-5 records every 5-60 s for {args.steady_seconds:g} s: "
                    f"{s['acks']:,} acks, p50 {s['ack_p50_ms']} ms, p99 {s['ack_p99_ms']} ms; timeout resends "
                    f"{s['timeout_resends']}; boxes left unacked {s['unacked_boxes']}; simulator "
                    f"{s['simulator_cpu_pct']:.0f} % of a core; " + ", ".join(
                        f"{k} {s['cpu_pct'][k]:.0f} % / {s['rss_mb'][k]:.0f} MB" for k in s["cpu_pct"]))
            stop_all([w])
    finally:
        if pg is not None:
            pg.stop()
        broker.stop()
    if args.json:
        print(json.dumps({"machine": machine(), "boxes": args.boxes, "records": args.records, "runs": runs,
                          "steady": steady_runs}, indent=2))
    return 0


if __name__ == "__main__":
    mp.set_start_method("fork")
    sys.exit(main())
