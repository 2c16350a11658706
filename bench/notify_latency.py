"""Benchmark: a negative rating press journalled -> the alert accepted by its destination.

    python bench/notify_latency.py [--presses 200] [--json]

Runs the real ``appliancectl run core`` with two destinations on loopback, a webhook (an HTTP
server in this process) and e-mail (aiosmtpd, plain SMTP), both with ``ratings =
["negative"]``, and appends ``--presses`` negative presses to the journal as the rf daemon
does, 50 ms apart (``misuse_presses`` is raised so that such a burst counts). For each press:
the time from its commit to the webhook's request and to the SMTP server's DATA; p50 and p99
beside the bare cost of the same HTTP POST and of the same SMTP send from this process (same
servers, same run). Then the contact pipeline's latency (an arrival committed -> its
``contact_opened`` journalled) with every destination healthy and again while a third
destination hangs (a server that accepts and never answers): it must not change.
"""
from __future__ import annotations

import argparse
import json
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine  # noqa: E402

from appliance.journal import Journal, NewEvent  # noqa: E402
from appliance.timefmt import iso_ms  # noqa: E402

CONFIG = """
[device]
id = "bench-box"
state_dir = "{state}"
[points.till1]
rating_scale = {{ 1 = "negative", 2 = "top" }}
misuse_presses = 100000
[notifications.hook]
kind = "webhook"
url = "http://127.0.0.1:{http}/hook"
ratings = ["negative"]
[notifications.mail]
kind = "email"
host = "127.0.0.1"
port = {smtp}
starttls = false
sender = "box@bench.example"
to = ["manager@bench.example"]
ratings = ["negative"]
{hang}
"""
HANG = """
[notifications.stuck]
kind = "webhook"
url = "http://127.0.0.1:{port}/never"
ratings = ["negative"]
on = ["rated", "unrated"]
timeout_s = 30
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Arrivals:
    def __init__(self):
        self.lock = threading.Lock()
        self.http: dict[str, float] = {}
        self.smtp: dict[str, float] = {}


def http_server(arr: Arrivals) -> ThreadingHTTPServer:
    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            t = time.time()
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ts = json.loads(body).get("rating", {}).get("ts")
            if ts:
                with arr.lock:
                    arr.http.setdefault(ts, t)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *a):
            pass
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def smtp_server(arr: Arrivals):
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            t = time.time()
            for line in envelope.content.decode(errors="replace").splitlines():
                if line.startswith("time: "):
                    with arr.lock:
                        arr.smtp.setdefault(line[6:].strip(), t)
            return "250 OK"
    port = free_port()
    c = Controller(Handler(), hostname="127.0.0.1", port=port)
    c.start()
    return c, port


def hanging_server() -> tuple[socket.socket, int]:
    """Accepts connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s, s.getsockname()[1]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def bare(http_port: int, smtp_port: int, n: int) -> tuple[list[float], list[float]]:
    import http.client
    body = json.dumps({"event": "rating", "device": "bench-box", "rating": {"ts": "bare", "value": 1}}).encode()
    h, m = [], []
    for _ in range(n):
        t = time.perf_counter()
        c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        c.request("POST", "/hook", body=body, headers={"Content-Type": "application/json"})
        c.getresponse().read()
        c.close()
        h.append(time.perf_counter() - t)
    for _ in range(n):
        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = "Negative rating 1 at till1", "box@bench.example", "m@bench.example"
        msg.set_content("time: bare\npoint: till1\n")
        t = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:
            s.send_message(msg)
        m.append(time.perf_counter() - t)
    return h, m


def run_core(cfg: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg), "run", "core"],
                            cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def contact_latency(j: Journal, n: int) -> list[float]:
    """An arrival committed -> its ``contact_opened`` journalled by the core (``n`` times)."""
    out = []
    for _ in range(n):
        t = int(time.time() * 1000)
        j.append(NewEvent("presence", t, {"state": "arrived"}, "till1", "bench"))
        t0 = time.time()
        want = t
        while time.time() < t0 + 10:
            row = j.db.execute("SELECT 1 FROM events WHERE type = 'contact_opened' AND json_extract(data, '$.opened')"
                               " = ? LIMIT 1", (want,)).fetchone()
            if row:
                out.append(time.time() - t0)
                break
            time.sleep(0.002)
        j.append(NewEvent("presence", int(time.time() * 1000), {"state": "left"}, "till1", "bench"))
        time.sleep(0.05)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presses", type=int, default=200)
    ap.add_argument("--contacts", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    arr = Arrivals()
    srv = http_server(arr)
    smtp, smtp_port = smtp_server(arr)
    stuck, stuck_port = hanging_server()
    tmp = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    out: dict = {"machine": machine(), "presses": args.presses}
    try:
        bare_http, bare_smtp = bare(srv.server_address[1], smtp_port, 50)
        for phase, hang in (("healthy", ""), ("one destination hangs", HANG.format(port=stuck_port))):
            state = tmp / phase.replace(" ", "-")
            state.mkdir()
            cfg = tmp / f"{state.name}.toml"
            cfg.write_text(CONFIG.format(state=state, http=srv.server_address[1], smtp=smtp_port, hang=hang))
            core = run_core(cfg, tmp / "core.log")
            try:
                time.sleep(2.0)
                with Journal(state / "journal.db") as j:
                    res: dict = {}
                    if phase == "healthy":
                        committed = {}
                        now = int(time.time() * 1000)
                        for i in range(args.presses):
                            ts = now + i * 50
                            while time.time() * 1000 < ts:
                                time.sleep(0.001)
                            j.append(NewEvent("rating", ts, {"value": 1, "class": "negative"}, "till1", "bench"))
                            committed[iso_ms(ts)] = time.time()
                        deadline = time.time() + 60
                        while time.time() < deadline and not all(k in arr.http and k in arr.smtp for k in committed):
                            time.sleep(0.05)
                        http_lat = [arr.http[k] - t for k, t in committed.items() if k in arr.http]
                        smtp_lat = [arr.smtp[k] - t for k, t in committed.items() if k in arr.smtp]
                        res.update({
                            "webhook": {"n": len(http_lat), "p50_ms": round(1000 * statistics.median(http_lat), 1),
                                        "p99_ms": round(1000 * pct(http_lat, 0.99), 1)},
                            "smtp": {"n": len(smtp_lat), "p50_ms": round(1000 * statistics.median(smtp_lat), 1),
                                     "p99_ms": round(1000 * pct(smtp_lat, 0.99), 1)},
                        })
                    cl = contact_latency(j, args.contacts)
                    res["contact_opened_p50_ms"] = round(1000 * statistics.median(cl), 1)
                    res["contact_opened_p99_ms"] = round(1000 * pct(cl, 0.99), 1)
                    res["contacts"] = len(cl)
            finally:
                core.send_signal(signal.SIGTERM)
                core.wait(30)
            out[phase] = res
        out["bare_http_post"] = {"p50_ms": round(1000 * statistics.median(bare_http), 2),
                                 "p99_ms": round(1000 * pct(bare_http, 0.99), 2)}
        out["bare_smtp_send"] = {"p50_ms": round(1000 * statistics.median(bare_smtp), 2),
                                 "p99_ms": round(1000 * pct(bare_smtp, 0.99), 2)}
    finally:
        srv.shutdown()
        smtp.stop()
        stuck.close()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    h = out["healthy"]
    print(f"machine: {out['machine']}")
    print(f"{args.presses} negative presses, 50 ms apart, through the real appliance-core ([time] reorder_s 0.5)")
    for name, bare_key in (("webhook", "bare_http_post"), ("smtp", "bare_smtp_send")):
        b = out[bare_key]
        print(f"  press journalled -> {name:7} accepted: p50 {h[name]['p50_ms']:7.1f} ms  p99 {h[name]['p99_ms']:7.1f}"
              f" ms  ({h[name]['n']} received)   bare send p50 {b['p50_ms']:.2f} ms p99 {b['p99_ms']:.2f} ms")
    s = out["one destination hangs"]
    print(f"  contact pipeline (arrival -> contact_opened): p50 {h['contact_opened_p50_ms']} ms p99 "
          f"{h['contact_opened_p99_ms']} ms healthy; p50 {s['contact_opened_p50_ms']} ms p99 "
          f"{s['contact_opened_p99_ms']} ms while a destination hangs ({s['contacts']} contacts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
