"""Benchmark: the till's HTTP API as the core daemon serves it (``appliancectl run core``).

    python bench/pos_api.py [--requests 300] [--idle 1000] [--json]

Prints, each beside a reference measured in the same run:
  - a till's request latency on a kept-alive connection (receipt validated and journalled
    durably), against the floor — a bare asyncio server on loopback answering a fixed
    response — and against the stdlib ``http.server`` design the API had before (head and
    body in two sends: the Nagle / delayed-ACK stall); aim ≤ 5 ms here;
  - receipts per second from four tills on fresh connections, alone and while ``--idle``
    idle connections hang on the server (ratio: what the idle ones cost).
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine  # noqa: E402

from tests.mqtt_broker import free_port, wait_port  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
ANSWER = b'{"status": "accepted", "seq": 1}'


def floor_server(port: int) -> threading.Thread:
    """Reads a request head and body, answers a fixed response: no parsing, no journal."""
    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next((ln.split(b":")[1] for ln in head.split(b"\r\n")
                                   if ln.lower().startswith(b"content-length")), b"0"))
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: "
                             + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def run():
        loop = asyncio.new_event_loop()
        loop.run_until_complete(asyncio.start_server(serve, "127.0.0.1", port))
        loop.run_forever()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class TwoSends(BaseHTTPRequestHandler):
    """The API's previous server: stdlib http.server, head then body in separate sends."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)


def keepalive_ms(port: int, n: int, path: str = "/v1/sale") -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for i in range(n):
        body = json.dumps({"point": "till1", "receipt": f"K{port}-{i}-{time.monotonic_ns()}"}).encode()
        t0 = time.perf_counter()
        conn.request("POST", path, body=body, headers={"Authorization": f"Bearer {TOKEN}",
                                                       "Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status in (200, 201), r.status
    conn.close()
    return out


def fresh_rps(port: int, n: int, tills: int = 4) -> float:
    per = n // tills

    def till(k: int) -> None:
        for i in range(per):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/v1/sale", body=json.dumps({"point": "till1", "receipt": f"F{k}-{i}-{time.time_ns()}"}),
                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            conn.close()
            assert r.status == 201, r.status
    t0 = time.perf_counter()
    threads = [threading.Thread(target=till, args=(k,)) for k in range(tills)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * tills / (time.perf_counter() - t0)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.idle + 512)), hard))
    with tempfile.TemporaryDirectory(prefix="bench-pos-") as tmp:
        port = free_port()
        cfg = Path(tmp) / "appliance.toml"
        cfg.write_text(f'[device]\nstate_dir = "{tmp}/state"\n[points.till1]\npos = true\n'
                       f'[pos]\nlisten = "127.0.0.1:{port}"\ntoken = "{TOKEN}"\n')
        core = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg), "run", "core"],
                                cwd=ROOT, stderr=subprocess.DEVNULL)
        wait_port(port, core, "core")
        fport, oport = free_port(), free_port()
        floor_server(fport)
        old = ThreadingHTTPServer(("127.0.0.1", oport), TwoSends)
        threading.Thread(target=old.serve_forever, daemon=True).start()
        time.sleep(0.3)
        try:
            keepalive_ms(port, 20)                                  # warm up
            ours = keepalive_ms(port, args.requests)
            floor = keepalive_ms(fport, args.requests)
            before = keepalive_ms(oport, min(args.requests, 100))
            alone = fresh_rps(port, args.requests)
            idle = []
            for _ in range(args.idle):
                s = socket.socket()
                s.connect(("127.0.0.1", port))
                idle.append(s)
            time.sleep(0.5)
            crowded = fresh_rps(port, args.requests)
            crowded_ka = keepalive_ms(port, args.requests)
            for s in idle:
                s.close()
        finally:
            core.send_signal(signal.SIGTERM)
            core.wait(20)
            old.shutdown()
    out = {"machine": machine(),
           "keepalive_ms": {"p50": round(statistics.median(ours), 2), "p99": round(pct(ours, 0.99), 2)},
           "floor_keepalive_ms": {"p50": round(statistics.median(floor), 2), "p99": round(pct(floor, 0.99), 2)},
           "before_keepalive_ms": {"p50": round(statistics.median(before), 2)},
           "fresh_rps": round(alone), "fresh_rps_with_idle": round(crowded), "idle_connections": args.idle,
           "keepalive_ms_with_idle": {"p50": round(statistics.median(crowded_ka), 2)}}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"machine: {out['machine']}")
    print(f"a till's receipt on a kept-alive connection ({args.requests} requests, journalled durably):")
    print(f"  ours   p50 {out['keepalive_ms']['p50']:6.2f} ms  p99 {out['keepalive_ms']['p99']:6.2f} ms  (aim ≤ 5 ms)")
    print(f"  floor  p50 {out['floor_keepalive_ms']['p50']:6.2f} ms  p99 {out['floor_keepalive_ms']['p99']:6.2f} ms"
          f"  (bare asyncio, fixed answer, no journal) — ratio {statistics.median(ours) / statistics.median(floor):.1f}×")
    print(f"  before p50 {out['before_keepalive_ms']['p50']:6.2f} ms  (stdlib http.server, head and body in two sends, "
          f"no journal)")
    print(f"receipts per second, 4 tills on fresh connections: {out['fresh_rps']:,} alone, "
          f"{out['fresh_rps_with_idle']:,} with {args.idle:,} idle connections hanging on "
          f"(ratio {out['fresh_rps_with_idle'] / out['fresh_rps']:.2f}); kept-alive p50 then "
          f"{out['keepalive_ms_with_idle']['p50']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
