"""Benchmark: what the four daemons cost a box when nothing happens (the shop is closed).

    python bench/box_idle.py [--seconds 120] [--json]

Starts ``appliancectl run core``, ``run rf`` (the GPIO receiver on gpiozero's mock pins: no
presses), ``run audio`` (no microphone configured: ``source = "none"``) and ``run sync`` (to a
Mosquitto on loopback) exactly as systemd does (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``), then
measures for each: time to ``READY=1``, RSS after start-up and at the end, CPU over the idle
period (% of one core), and bytes written to storage over it (``/proc/<pid>/io``
``write_bytes``), extrapolated to an hour. The reference, measured in the same run: a bare
``python3 -c 'import time; time.sleep(…)'`` (its RSS), what any Python process costs before
it does anything. The audio spool is on a RAM file system (``/dev/shm``), as ``/run`` is on a
box: the live level file it rewrites every second (for ``audio level``) never reaches the card.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_s, machine, rss_mb  # noqa: E402

CONFIG = """
[device]
id = "bench-box"
state_dir = "{state}"
[time]
timezone = "UTC"
[points.till1]
[points.till2]
[remotes.a1b2c3]
point = "till1"
buttons = {{ 1 = {{ meaning = "rating", value = 2 }}, 2 = {{ meaning = "rating", value = 1 }} }}
[rf]
source = "gpio"
pin = 27
[audio]
source = "none"
spool_dir = "{spool}"
[sync]
broker = "mqtt://127.0.0.1:{port}"
"""


def write_bytes(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/io"):
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from tests.mqtt_broker import Mosquitto
    work = Path(tempfile.mkdtemp(prefix="bench-appliance-"))
    broker = Mosquitto(work / "broker", persistence=False).start()
    cfg = work / "appliance.toml"
    spool = Path(tempfile.mkdtemp(prefix="bench-spool-", dir="/dev/shm"))    # RAM, as /run/appliance on a box
    cfg.write_text(CONFIG.format(state=work / "state", spool=spool, port=broker.port))
    (work / "state").mkdir()
    procs: dict[str, subprocess.Popen] = {}
    socks: dict[str, socket.socket] = {}
    ready: dict[str, float] = {}
    try:
        ref = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        time.sleep(1.0)
        ref_rss = rss_mb(ref.pid)
        ref.kill()
        for daemon in ("core", "rf", "audio", "sync"):
            path = str(work / f"{daemon}.sock")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(path)
            s.setblocking(False)
            socks[daemon] = s
            env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="30000000", GPIOZERO_PIN_FACTORY="mock",
                       APPLIANCE_ASSUME_SYNCED="1")
            start = time.perf_counter()
            procs[daemon] = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg),
                                              "run", daemon], env=env, stdout=subprocess.DEVNULL,
                                             stderr=open(work / f"{daemon}.log", "w"))
            end = start + 30
            while time.perf_counter() < end and daemon not in ready:
                try:
                    msg = s.recv(4096).decode()
                    if "READY=1" in msg:
                        ready[daemon] = time.perf_counter() - start
                except BlockingIOError:
                    time.sleep(0.005)
        time.sleep(5)                               # settle: first commits, connections
        rss0 = {d: rss_mb(p.pid) for d, p in procs.items()}
        cpu0 = {d: cpu_s(p.pid) for d, p in procs.items()}
        wr0 = {d: write_bytes(p.pid) for d, p in procs.items()}
        m0 = time.monotonic()
        while time.monotonic() - m0 < args.seconds:
            for s in socks.values():                # read the notify sockets, as systemd does
                try:
                    while s.recv(4096):
                        pass
                except BlockingIOError:
                    pass
            time.sleep(0.5)
        dt = time.monotonic() - m0
        out = {}
        for d, p in procs.items():
            out[d] = {"alive": p.poll() is None, "ready_s": round(ready.get(d, float("nan")), 2),
                      "rss_start_mb": round(rss0[d], 1), "rss_end_mb": round(rss_mb(p.pid), 1),
                      "idle_cpu_pct": round((cpu_s(p.pid) - cpu0[d]) / dt * 100, 3),
                      "written_mb_per_h": round((write_bytes(p.pid) - wr0[d]) / dt * 3600 / 1e6, 3)}
        total_written = sum(v["written_mb_per_h"] for v in out.values())
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
    if args.json:
        print(json.dumps({"machine": machine(), "seconds": args.seconds, "daemons": out,
                          "written_mb_per_h_total": round(total_written, 3), "ref_python_rss_mb": round(ref_rss, 1)},
                         indent=2))
        return 0
    print(f"machine: {machine()}")
    print(f"idle for {args.seconds:g} s after start-up; reference: a bare Python process, RSS {ref_rss:.1f} MB")
    print(f"{'daemon':8} {'READY':>7} {'RSS start':>10} {'RSS end':>8} {'idle CPU':>9} {'written/h':>10}")
    for d, r in out.items():
        print(f"{d:8} {r['ready_s']:6.2f}s {r['rss_start_mb']:8.1f}MB {r['rss_end_mb']:6.1f}MB "
              f"{r['idle_cpu_pct']:8.2f}% {r['written_mb_per_h']:8.3f}MB" + ("" if r["alive"] else "  (exited!)"))
    total_rss = sum(r["rss_end_mb"] for r in out.values())
    print(f"all four: {total_written:.3f} MB written per idle hour; RSS {total_rss:.0f} MB together = "
          f"{total_rss / (4 * ref_rss):.1f}x four bare Python processes ({4 * ref_rss:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
