"""Benchmark: the whole appliance on this machine — the four daemons idle (the shop closed),
then an hour of a busy point played faster, then idle again.

    python bench/box.py [--idle 120] [--contacts 60] [--period 6] [--json]

Starts a Mosquitto and ``fleetctl ingest`` (the cloud, acknowledging) on loopback, then
``appliancectl run core`` (with its POS API), ``run rf`` (source ``rtl_433``: a stand-in
``rtl_433`` first on PATH prints the decodes the benchmark writes into a FIFO, the same
JSON lines the real one prints), ``run audio`` (a WAV of speech-like sound as the
microphone, in real time, looped) and ``run sync``, exactly as systemd starts them
(``NOTIFY_SOCKET``, ``WATCHDOG_USEC``). Measured for each daemon: time to ``READY=1``, RSS
after start-up, CPU (% of one core, with its children: the audio daemon encodes each track
in a short-lived child) and bytes written to storage (``/proc/<pid>/io`` ``write_bytes``,
children included once they end) over the idle period, the same over the busy phase, and RSS after it.
Idle CPU is the scheduler's nanosecond account of the daemon's threads (``/proc/PID/task/*/schedstat``;
no child runs while idle); the tick-sampled utime+stime, off by whole 10 ms ticks at this level, is
in the JSON beside it (``idle_cpu_ticks_pct``).

The busy phase is an hour of a busy point: ``--contacts`` customers (60), one every
``--period`` seconds (6: the hour 10x faster). Each: the RF presence sensor's *arrived*, a
rating press, a receipt through the POS API, *left*. Every contact gets its contact track
and each press its press track (Opus, cut from the spool), every record and clip goes to the
ingest. At the end the benchmark checks that the journal holds every contact and the ingest
every record (a benchmark that lost data would say so).

Reference, measured in the same run: a bare ``python3 -c 'import time; time.sleep(…)'``
(RSS and CPU of a Python process doing nothing). The audio spool is on a RAM file system
(``/dev/shm``), as ``/run`` is on a box.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))      # after the packages: bench/audio_capture.py is a script

from common import cpu_s, machine, rss_mb, run_s  # noqa: E402

from audio_capture.synthetic import speech_wav  # noqa: E402

DAEMONS = ("core", "rf", "audio", "sync")
TOKEN = "bench-token-0123456789"
PRESENCE_REMOTE, RATING_REMOTE = 0x5A1, 0x5A2
CONFIG = """
[device]
id = "bench-box"
state_dir = "{state}"
[time]
timezone = "UTC"
[points.till1]
presence = "rf"
pos = true
[remotes.{presence}]
point = "till1"
buttons = {{ {arrived} = {{ meaning = "presence", state = "arrived" }}, {left} = {{ meaning = "presence", state = "left" }} }}
[remotes.{rating}]
point = "till1"
buttons = {{ {top} = {{ meaning = "rating", value = 2 }}, {negative} = {{ meaning = "rating", value = 1 }} }}
[rf]
source = "rtl_433"
[audio]
source = "file"
device = "{wav}"
spool_dir = "{spool}"
[pos]
listen = "127.0.0.1:{pos_port}"
token = "{token}"
[sync]
broker = "mqtt://127.0.0.1:{port}"
"""
FAKE_RTL = "#!/bin/sh\nexec cat \"$BENCH_RTL_FIFO\"\n"


def write_bytes(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/io"):
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generic(id_: int, cmd: int) -> tuple[dict, str, int]:
    from rf_receiver.sources.rtl433 import frame_from_message
    msg = {"model": "Generic-Remote", "id": id_, "cmd": cmd}
    f = frame_from_message(msg, 0)
    return msg, f.remote, f.button


class Radio:
    """The FIFO the stand-in rtl_433 reads: a press is its decode three times (a remote repeats
    its frame), then silence."""

    def __init__(self, path: Path):
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDWR)           # never blocks, and keeps the pipe open across rtl_433 restarts

    def press(self, msg: dict) -> None:
        line = (json.dumps(msg) + "\n").encode()
        for _ in range(3):
            os.write(self.fd, line)
            time.sleep(0.03)

    def close(self) -> None:
        os.close(self.fd)


def post_sale(port: int, receipt: str, amount: float) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/sale", method="POST",
                                 data=json.dumps({"point": "till1", "receipt": receipt, "amount": amount,
                                                  "items": 2}).encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def drain(socks: dict) -> None:
    for s in socks.values():                            # read the notify sockets, as systemd does
        try:
            while s.recv(4096):
                pass
        except BlockingIOError:
            pass


def sample(procs: dict) -> dict:
    # children count: the audio daemon encodes each track in a short-lived child
    return {d: (cpu_s(p.pid, children=True), write_bytes(p.pid), time.monotonic(), run_s(p.pid))
            for d, p in procs.items()}


def diff(a: dict, b: dict) -> dict:
    out = {}
    for d in a:
        dt = b[d][2] - a[d][2]
        out[d] = {"cpu_pct": round((b[d][0] - a[d][0]) / dt * 100, 3), "written_bytes": b[d][1] - a[d][1],
                  "seconds": round(dt, 1), "run_pct": round((b[d][3] - a[d][3]) / dt * 100, 3)}
    return out


def wait_while(socks: dict, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        drain(socks)
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=float, default=120.0, help="seconds of idle before and after (default 120)")
    ap.add_argument("--contacts", type=int, default=60, help="customers in the busy phase (default 60: an hour)")
    ap.add_argument("--period", type=float, default=6.0, help="seconds between customers (default 6)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from tests.mqtt_broker import Mosquitto
    work = Path(tempfile.mkdtemp(prefix="bench-appliance-"))
    spool = Path(tempfile.mkdtemp(prefix="bench-spool-", dir="/dev/shm"))    # RAM, as /run/appliance on a box
    broker = Mosquitto(work / "broker", persistence=False).start()
    bin_dir = work / "bin"
    bin_dir.mkdir()
    (bin_dir / "rtl_433").write_text(FAKE_RTL)
    (bin_dir / "rtl_433").chmod(0o755)
    radio = Radio(work / "rtl.fifo")
    speech_wav(work / "mic.wav")
    arrived, p_remote, b_arrived = generic(PRESENCE_REMOTE, 0x11)
    left, _, b_left = generic(PRESENCE_REMOTE, 0x12)
    top, r_remote, b_top = generic(RATING_REMOTE, 0x21)
    negative, _, b_negative = generic(RATING_REMOTE, 0x22)
    pos_port = free_port()
    cfg = work / "appliance.toml"
    cfg.write_text(CONFIG.format(state=work / "state", spool=spool, port=broker.port, wav=work / "mic.wav",
                                 pos_port=pos_port, token=TOKEN, presence=p_remote, arrived=b_arrived,
                                 left=b_left, rating=r_remote, top=b_top, negative=b_negative))
    (work / "state").mkdir()
    procs: dict[str, subprocess.Popen] = {}
    socks: dict[str, socket.socket] = {}
    ready: dict[str, float] = {}
    ingest = None
    try:
        ref = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        ingest = subprocess.Popen([str(Path(sys.executable).with_name("fleetctl")), "ingest", "--broker",
                                   broker.url, "--db", str(work / "cloud.db"), "--clips", str(work / "cloud-clips")],
                                  stdout=subprocess.DEVNULL, stderr=open(work / "ingest.log", "w"))
        for daemon in DAEMONS:
            path = str(work / f"{daemon}.sock")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(path)
            s.setblocking(False)
            socks[daemon] = s
            env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="30000000", APPLIANCE_ASSUME_SYNCED="1",
                       PATH=f"{bin_dir}:{os.environ['PATH']}", BENCH_RTL_FIFO=str(work / "rtl.fifo"))
            start = time.perf_counter()
            procs[daemon] = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg),
                                              "run", daemon], env=env, stdout=subprocess.DEVNULL,
                                             stderr=open(work / f"{daemon}.log", "w"))
            end = start + 30
            while time.perf_counter() < end and daemon not in ready:
                try:
                    if "READY=1" in s.recv(4096).decode():
                        ready[daemon] = time.perf_counter() - start
                except BlockingIOError:
                    time.sleep(0.005)
        wait_while(socks, 8)                            # settle: first commits, connections, first acks
        rss_start = {d: rss_mb(p.pid) for d, p in procs.items()}
        ref_cpu0, a = run_s(ref.pid), sample(procs)
        wait_while(socks, args.idle)
        idle = diff(a, sample(procs))
        ref_cpu_pct = (run_s(ref.pid) - ref_cpu0) / idle["core"]["seconds"] * 100
        ref_rss = rss_mb(ref.pid)

        # --- an hour of a busy point, faster -----------------------------------------------------
        a = sample(procs)
        statuses = []
        t0 = time.monotonic()
        for i in range(args.contacts):
            due = t0 + i * args.period
            wait_while(socks, max(0.0, due - time.monotonic()))
            radio.press(arrived)
            wait_while(socks, 1.0)
            radio.press(top if i % 4 else negative)
            wait_while(socks, 1.0)
            statuses.append(post_sale(pos_port, f"B{i:04d}", 10.0 + i % 7))
            wait_while(socks, max(0.5, args.period - 3.5))
            radio.press(left)
        wait_while(socks, 2)
        busy = diff(a, sample(procs))
        # settle: grace windows (30 s), tracks (post_s), upload and acknowledgement
        a = sample(procs)
        wait_while(socks, 40)
        settle = diff(a, sample(procs))
        rss_end = {d: rss_mb(p.pid) for d, p in procs.items()}
        alive = {d: p.poll() is None for d, p in procs.items()}
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        for p in (ingest, locals().get("ref")):
            if p is not None:
                p.terminate()
                p.wait(20)
        radio.close()
        broker.stop()
    db = sqlite3.connect(work / "state" / "journal.db")
    contacts = db.execute("SELECT COUNT(*) FROM events WHERE type = 'contact'").fetchone()[0]
    clips = db.execute("SELECT COUNT(*) FROM events WHERE type = 'clip'").fetchone()[0]
    last_seq = db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    acked = db.execute("SELECT cursor FROM stages WHERE name = 'sync'").fetchone()[0]
    db.close()
    cloud = sqlite3.connect(work / "cloud.db")
    tables = {r[0] for r in cloud.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    stored = cloud.execute("SELECT COUNT(*) FROM records").fetchone()[0] if "records" in tables else None
    cloud.close()
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(spool, ignore_errors=True)
    out = {d: {"alive": alive[d], "ready_s": round(ready.get(d, float("nan")), 2),
               "rss_start_mb": round(rss_start[d], 1), "rss_end_mb": round(rss_end[d], 1),
               "idle_cpu_pct": idle[d]["run_pct"],
               "idle_cpu_ticks_pct": idle[d]["cpu_pct"],
               "idle_written_mb_per_h": round(idle[d]["written_bytes"] / idle[d]["seconds"] * 3600 / 1e6, 3),
               "busy_cpu_pct": busy[d]["cpu_pct"],
               "busy_written_mb": round((busy[d]["written_bytes"] + settle[d]["written_bytes"]) / 1e6, 3)}
           for d in DAEMONS}
    check = {"contacts_played": args.contacts, "receipts_accepted": statuses.count(201), "contacts_journalled": contacts,
             "clips": clips, "journal_last_seq": last_seq, "acked_by_cloud": acked, "cloud_records": stored}
    doc = {"machine": machine(), "idle_s": args.idle, "busy_s": busy["core"]["seconds"], "daemons": out,
           "check": check, "ref_python_rss_mb": round(ref_rss, 1), "ref_python_cpu_pct": round(ref_cpu_pct, 3)}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0 if contacts == args.contacts else 1
    print(f"machine: {machine()}")
    print(f"idle {args.idle:g} s; busy: {args.contacts} contacts one every {args.period:g} s "
          f"({busy['core']['seconds']:.0f} s); reference: a bare Python process, RSS {ref_rss:.1f} MB, "
          f"CPU {ref_cpu_pct:.3f} %")
    print(f"{'daemon':7} {'READY':>6} {'RSS start':>9} {'RSS end':>8} {'idle CPU':>9} {'idle writes':>12} "
          f"{'busy CPU':>9} {'busy writes':>12}")
    for d, r in out.items():
        print(f"{d:7} {r['ready_s']:5.2f}s {r['rss_start_mb']:7.1f}MB {r['rss_end_mb']:6.1f}MB "
              f"{r['idle_cpu_pct']:8.2f}% {r['idle_written_mb_per_h']:7.3f}MB/h {r['busy_cpu_pct']:8.2f}% "
              f"{r['busy_written_mb']:8.2f}MB" + ("" if r["alive"] else "  (exited!)"))
    total_idle = sum(r["idle_written_mb_per_h"] for r in out.values())
    total_busy = sum(r["busy_written_mb"] for r in out.values())
    total_rss = sum(r["rss_end_mb"] for r in out.values())
    print(f"all four: {total_idle:.3f} MB/h written idle; {total_busy:.1f} MB written for the busy hour "
          f"({total_busy / max(1, args.contacts) * 1000:.0f} kB per contact); RSS {total_rss:.0f} MB together = "
          f"{total_rss / (4 * ref_rss):.1f}x four bare Python processes")
    print(f"check: {contacts}/{args.contacts} contacts journalled, {statuses.count(201)} receipts accepted, "
          f"{clips} clips, cloud acknowledged seq {acked} of {last_seq}, {stored} records in the cloud")
    return 0 if contacts == args.contacts else 1


if __name__ == "__main__":
    sys.exit(main())
