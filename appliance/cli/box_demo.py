"""``appliancectl demo``: the whole appliance, live, on simulated hardware.

The four daemons run as real processes, exactly as systemd starts them: ``run rf`` receives
433 MHz pulse trains generated for the script's remotes and RF presence sensor (played in
real time through its pulse-replay source) and reads a PIR on gpiozero's mock pins (driven
by a script inside that process: mock pins exist only there); ``run audio`` hears a
synthetic microphone (speech-like sound, played in real time) and cuts a track per contact
and per press; ``run core`` builds the contacts and takes receipts and log-ins through its
POS HTTP API; ``run sync`` sends everything to a Mosquitto on loopback where ``fleetctl
ingest`` stores it, when Mosquitto is installed. A rating log (a local notification sink)
is written as presses happen. At the end: the box's report beside the cloud's.

Simulated: only the hardware edge (the radio's pulses, the PIR's pin, the microphone's
sound) and the till (HTTP requests). Everything runs in real time, about two minutes.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from audio_capture.synthetic import speech_wav
from rf_receiver.synthetic import merge, press

from .. import vocabulary as v
from ..config import load_config
from ..journal import JOURNAL_NAME, Journal
from ..timefmt import parse_ts
from .demo import _free_port, _post, _wait_port
from .ui import Style, num, pct

RATE_1, PRESENCE_1, RATE_2, FOB = 0x5A1F1, 0x5A1F2, 0x7C2E1, 0x9B001   # EV1527 remote ids
PIR_PIN = 17
LEAD_S = 3.0                            # silence on the radio before the first press

CONFIG = """\
# The demo's appliance: two points of a small shop, every daemon running.
[device]
id = "demo-box"
state_dir = "{work}/state"
secrets_file = "{work}/secrets.toml"

[time]
timezone = "UTC"

[points.till1]
name = "Till 1 (RF presence sensor, five-button remote)"
presence = "rf"
pos = true
rating_grace_s = 5
sale_grace_s = 5
rating_scale = {{ 1 = "negative", 2 = "negative", 3 = "neutral", 4 = "neutral", 5 = "top" }}

[points.till2]
name = "Till 2 (PIR on GPIO {pir}, green/red remote, call button)"
presence = "sensor"
pos = true
min_presence_s = 1
leave_after_s = 2
rating_grace_s = 5
sale_grace_s = 5
escalate_after_s = 15
rating_scale = {{ 1 = "negative", 2 = "top" }}

[sensors.pir2]
point = "till2"
kind = "motion"
pin = {pir}

[remotes.{rate1:05x}]
point = "till1"
name = "till 1 rate-us remote"
buttons = {{ 1 = {{ meaning = "rating", value = 1 }}, 2 = {{ meaning = "rating", value = 2 }}, 3 = {{ meaning = "rating", value = 3 }}, 4 = {{ meaning = "rating", value = 4 }}, 5 = {{ meaning = "rating", value = 5 }} }}

[remotes.{presence1:05x}]
point = "till1"
name = "till 1 RF presence sensor"
buttons = {{ 1 = {{ meaning = "presence", state = "arrived" }}, 2 = {{ meaning = "presence", state = "left" }} }}

[remotes.{rate2:05x}]
point = "till2"
name = "till 2 green/red remote"
buttons = {{ 1 = {{ meaning = "rating", value = 1 }}, 2 = {{ meaning = "rating", value = 2 }}, 3 = {{ meaning = "call", name = "till 2 call button", location = "checkout 2" }} }}

[remotes.{fob:05x}]
point = "till2"
name = "Carla's staff fob"
buttons = {{ 1 = {{ meaning = "answer", staff = "carla" }} }}

[rf]
source = "gpio"

[audio]
source = "file"
device = "{work}/microphone.wav"
spool_dir = "{work}/spool"
segment_s = 2
pre_s = 1
post_s = 1
before_s = 3
after_s = 2

[notifications.rating_log]
kind = "csv"                        # a line per rating press and staff call, as they happen
directory = "{work}/rating-log"
calls = true
escalations = true

[pos]
listen = "127.0.0.1:{pos_port}"
{sync}"""


def script() -> tuple[list[tuple[float, int, int]], list[tuple[float, bool]], list[tuple[float, str, dict]]]:
    """The ninety seconds: (RF presses: at, remote, button), (PIR: at, high), (POS: at, path,
    body). Times in seconds after the radio starts."""
    rf: list[tuple[float, int, int]] = []
    pir: list[tuple[float, bool]] = []
    pos: list[tuple[float, str, dict]] = [(1.0, "/v1/staff", {"point": "till1", "staff": "anna"}),
                                          (1.5, "/v1/staff", {"point": "till2", "staff": "boris"})]
    receipt = 100
    for i, (start, length, rating, sale) in enumerate([(4, 10, 5, 23.5), (18, 9, 4, 8.9), (31, 11, None, 41.0),
                                                       (46, 8, 1, None), (58, 12, 5, 15.25), (74, 9, 3, 6.4)]):
        rf += [(start, PRESENCE_1, 1), (start + length, PRESENCE_1, 2)]
        if rating is not None:
            rf.append((start + length - 1.5, RATE_1, rating))
        if sale is not None:
            receipt += 1
            pos.append((start + length - 3, "/v1/sale", {"point": "till1", "receipt": f"R{receipt}",
                                                          "amount": sale, "items": 1 + i % 4}))
    for i, (start, length, rating, sale) in enumerate([(7, 9, 2, 12.0), (22, 10, 1, 30.5), (39, 8, 2, None),
                                                       (55, 11, 2, 9.99), (70, 9, None, 4.5)]):
        pir += [(start, True), (start + length, False)]
        if i == 1:                                   # the customer steps out of view for a moment
            pir += [(start + 4, False), (start + 4.8, True)]
        if rating is not None:
            rf.append((start + length + 1.0, RATE_2, rating))
        if sale is not None:
            receipt += 1
            pos.append((start + length - 2, "/v1/sale", {"point": "till2", "receipt": f"R{receipt}",
                                                          "amount": sale, "items": 2}))
    pos.append((34.0, "/v1/staff", {"point": "till2", "staff": "carla"}))
    rf += [(27.5, RATE_2, 3), (36.0, FOB, 1)]          # a staff call, answered by Carla's fob
    rf += [(66.0, RATE_2, 3), (83.0, FOB, 1)]          # a call nobody answers in 15 s: escalated
    rf += [(84.0 + 1.0 * k, RATE_2, 1 + k % 2) for k in range(6)]   # a child finds the remote: misuse
    return _spaced(sorted(rf)), sorted(pir), sorted(pos)


def _spaced(rf: list[tuple[float, int, int]], gap_s: float = 0.8) -> list[tuple[float, int, int]]:
    """One radio: a press starts once the one before has been released."""
    out: list[tuple[float, int, int]] = []
    for at, remote, button in rf:
        if out and at < out[-1][0] + gap_s:
            at = out[-1][0] + gap_s
        out.append((at, remote, button))
    return out


def pulse_file(path: Path, rf: list[tuple[float, int, int]]) -> Path:
    """The presses as one pulse train (levels and durations), silence between them."""
    runs: list[tuple[int, int]] = [(0, int(LEAD_S * 1e6))]
    t_us = runs[0][1]
    for i, (at, remote, button) in enumerate(rf):
        due = int((LEAD_S + at) * 1e6)
        if due > t_us:
            runs.append((0, due - t_us))
            t_us = due
        p = press(remote << 4 | button, 24, unit=350, repeats=4, seed=i)
        runs += p
        t_us += sum(d for _, d in p)
    runs.append((0, 2_000_000))
    path.write_text(json.dumps({"pulses": [list(r) for r in merge(runs)]}) + "\n")
    return path


def _wait_microphone(state_dir: Path, audio: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until the audio daemon journals that it hears the microphone (the first tracks need
    their pre-roll)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if audio.poll() is not None:
            raise RuntimeError(f"the audio daemon exited with status {audio.returncode}")
        if (state_dir / JOURNAL_NAME).exists():
            with Journal.in_dir(state_dir) as j:
                ev = j.latest(v.MIC_STATE)
            if ev is not None and ev.data.get("state") == "ok":
                return
        time.sleep(0.1)
    raise RuntimeError("the audio daemon did not start hearing the microphone in time")


class Show:
    """What happens, as it happens: read from the journal every daemon writes."""

    def __init__(self, s: Style, t0_ms: int):
        self.s = s
        self.t0 = t0_ms
        self.contacts = self.clips = 0
        self.acked = 0
        self.said = time.monotonic()

    def line(self, ts: int, point: str | None, mark: str, text: str) -> None:
        s = self.s
        print(f"  {s(f'{max(0, ts - self.t0) / 1000:5.1f}s', 'grey')} {(point or ''):6} {mark} {text}")

    def event(self, ev) -> None:
        s, t, p = self.s, ev.ts, ev.point
        if ev.type == v.PRESENCE and ev.source == "rf":
            self.line(t, p, s("»", "cyan"), f"RF presence sensor: {ev.data['state']}")
        elif ev.type == v.SENSOR:
            self.line(t, p, s("»", "cyan"), f"PIR {'sees someone' if ev.data['present'] else 'clear'}")
        elif ev.type == v.RATING_PRESSED:
            r = v.read(ev, v.RatingPressed)
            colour = {"top": "green", "negative": "red"}.get(r.cls, "yellow")
            extra = s(" (misuse: kept out of the indices)", "magenta") if r.misuse else ""
            self.line(t, p, s("★", colour), f"rating {r.value} pressed on remote {r.remote}{extra}")
        elif ev.type == v.SALE and ev.source == "pos-http":
            self.line(t, p, s("$", "green"), f"receipt {ev.data['receipt']} {ev.data.get('amount', '')} (POS API)")
        elif ev.type == v.STAFF:
            self.line(t, p, s("→", "magenta"), f"{ev.data['staff']} logged in")
        elif ev.type == v.CONTACT:
            c = v.read(ev, v.ContactSettled)
            self.contacts += 1
            colour = "red" if "negative" in c.tags else "green" if "positive" in c.tags else "grey"
            opened = (parse_ts(c.opened) - self.t0) / 1000
            self.line(t, p, s("●", colour),
                      f"contact from {opened:.1f} s, {c.duration_s:.1f} s long: {c.owner or '-'}, rating "
                      f"{c.rating if c.rating is not None else '-'}, {len(c.sales)} receipt(s) "
                      f"{s('[' + ', '.join(c.tags) + ']', 'dim')}")
        elif ev.type == v.CLIP:
            c = v.read(ev, v.Clip)
            self.clips += 1
            self.line(t, p, s("♪", "blue"), f"{c.kind} track {c.duration_s:.1f} s, {c.size / 1000:.0f} kB ({c.format})")
        elif ev.type == v.CALL_OPENED:
            self.line(t, p, s("☎", "cyan"), "staff call from the call button")
        elif ev.type == v.CALL_ESCALATED:
            self.line(t, p, s("☎", "red"), "staff call not answered in 15 s: escalated")
        elif ev.type == v.CALL_SETTLED:
            c = v.read(ev, v.CallSettled)
            if c.answered_s is not None:
                self.line(t, p, s("☎", "green"), f"staff call answered in {c.answered_s:.1f} s (staff fob)")

    def cloud(self, acked: int, last: int, final: bool = False) -> None:
        """Every 15 s (and at the end): how far the cloud has acknowledged the journal."""
        now = time.monotonic()
        if acked != self.acked and (final or now - self.said >= 15):
            self.acked, self.said = acked, now
            print(f"  {self.s('      ☁', 'blue')} the cloud holds the journal up to record {acked} of {last}")


def _mosquitto() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.path.exists(p)), None)


def run_box_demo(keep: bool = False, state_dir: str | None = None) -> int:
    s = Style()
    work = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="appliance-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    if (work / "state" / JOURNAL_NAME).exists():
        print(f"{work} already holds a demo; give an empty --state-dir", file=sys.stderr)
        return 2
    procs: dict[str, subprocess.Popen] = {}
    logs = []
    mosq = _mosquitto()
    pos_port, token = _free_port(), secrets.token_urlsafe(24)
    broker_port = _free_port()
    sync = f'\n[sync]\nbroker = "mqtt://127.0.0.1:{broker_port}"\n' if mosq else ""
    cfg_path = work / "appliance.toml"
    cfg_path.write_text(CONFIG.format(work=work, pir=PIR_PIN, rate1=RATE_1, presence1=PRESENCE_1, rate2=RATE_2,
                                      fob=FOB, pos_port=pos_port, sync=sync), encoding="utf-8")
    (work / "secrets.toml").write_text(f'[pos]\ntoken = "{token}"\n', encoding="utf-8")
    os.chmod(work / "secrets.toml", 0o600)
    cfg = load_config(cfg_path)
    rf, pir, pos = script()
    speech_wav(work / "microphone.wav", seconds=20)
    pulse_file(work / "radio.pulses", rf)
    (work / "pir.jsonl").write_text("".join(json.dumps({"at_s": LEAD_S + at, "pin": PIR_PIN, "high": high}) + "\n"
                                            for at, high in pir))
    env = dict(os.environ, APPLIANCE_CONFIG=str(cfg_path), PYTHONUNBUFFERED="1", GPIOZERO_PIN_FACTORY="mock",
               APPLIANCE_SIM_GPIO=str(work / "pir.jsonl"))
    print(s("Contact Analyzer — demo", "bold"), s("(the whole appliance, live, about two minutes)", "grey"))
    print(s(f"  config {cfg_path}", "grey"))
    print(s("  real: the four daemons, journal, POS API, tracks (Opus), " + ("MQTT sync to a local Mosquitto and "
            "fleetctl ingest" if mosq else "no sync (install mosquitto to see it)"), "grey"))
    print(s("  simulated: the radio's pulses, the PIR's pin (gpiozero mock pins), the microphone, the till", "grey"))
    print()

    def start(name: str, argv: list[str]) -> subprocess.Popen:
        log = open(work / f"{name}.log", "w")
        logs.append(log)
        procs[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        return procs[name]
    me = [sys.executable, "-m", "appliance.cli.main"]
    try:
        if mosq:
            (work / "broker").mkdir()
            (work / "broker" / "mosquitto.conf").write_text(
                f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            _wait_port(broker_port, start("mosquitto", [mosq, "-c", str(work / "broker" / "mosquitto.conf")]),
                       "mosquitto")
            start("ingest", [sys.executable, "-c", "import sys; from fleet.cli import main; sys.exit(main())",
                             "ingest", "--broker", f"mqtt://127.0.0.1:{broker_port}", "--db", str(work / "cloud.db"),
                             "--clips", str(work / "cloud-clips")])
        _wait_port(pos_port, start("core", me + ["run", "core"]), "the core daemon")
        start("audio", me + ["run", "audio"])
        if mosq:
            start("sync", me + ["run", "sync"])
        _wait_microphone(work / "state", procs["audio"])
        time.sleep(1.0)                                 # the microphone has been heard a moment
        start("rf", me + ["run", "rf", "--pulses", str(work / "radio.pulses")])
        t0 = time.monotonic() + LEAD_S                  # the script's zero: the radio's lead-in has passed
        show = Show(s, int(time.time() * 1000) + int(LEAD_S * 1000))
        journal = Journal.in_dir(work / "state")
        after, i = 0, 0
        end = max(rf[-1][0], pir[-1][0], pos[-1][0]) + 12    # grace windows, tracks' post-roll, acks
        deadline = end + 60
        while True:
            now = time.monotonic() - t0
            while i < len(pos) and pos[i][0] <= now:
                _post(pos_port, token, pos[i][1], pos[i][2])
                i += 1
            for ev in journal.read(after, 500):
                after = ev.seq
                show.event(ev)
            if mosq:
                show.cloud(journal.cursor("sync"), journal.last_seq())
            for name, p in procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with status {p.returncode}; see {work}/{name}.log")
            if now > end and (not mosq or journal.cursor("sync") >= journal.last_seq()) or now > deadline:
                break
            time.sleep(0.1)
        for ev in journal.read(after, 10_000):
            show.event(ev)
        if mosq:
            show.cloud(journal.cursor("sync"), journal.last_seq(), final=True)
        journal.close()
    except (RuntimeError, OSError) as exc:
        print(s(f"demo failed: {exc}", "red"), file=sys.stderr)
        return 3
    finally:
        for name in ("rf", "audio", "sync", "core", "ingest", "mosquitto"):
            p = procs.get(name)
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        for log in logs:
            log.close()
    _report(cfg, work, s, bool(mosq), show)
    if keep or state_dir:
        print(s(f"\nThe demo's files stay in {work}: try", "grey"),
              f"APPLIANCE_CONFIG={cfg_path} appliancectl status")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


ROWS = [("contacts", "contacts", lambda x: str(x)), ("ratings", "ratings", str), ("csi", "CSI", pct),
        ("cdi", "CDI", pct), ("response_rate", "response rate", pct), ("receipts", "receipts", str),
        ("conversion", "conversion", pct), ("avg_receipt", "average receipt", lambda x: num(x, 2)),
        ("happy_index", "happy index", lambda x: num(x, 1)), ("misuse", "misuse presses", str),
        ("calls", "staff calls", str), ("call_escalations", "escalated", str)]


def _report(cfg, work: Path, s: Style, synced: bool, show: Show) -> None:
    from .report import grouped_journal
    with Journal.in_dir(work / "state", readonly=True) as j:
        box = grouped_journal(cfg, j, "point", None, None)["total"]
    cloud = None
    if synced and (work / "cloud.db").exists():
        from fleet.report import fleet_metrics
        db = sqlite3.connect(work / "cloud.db")
        try:
            cloud = fleet_metrics(db, "none")["overall"]
        finally:
            db.close()
    print()
    print(s("The box's report beside the cloud's", "bold"),
          s("(appliancectl report · fleetctl report --db cloud.db)", "grey"))
    print(f"  {'':16} {'box':>10} {'cloud':>10}")
    for key, label, fmt in ROWS:
        b = fmt(box[key])
        c = fmt(cloud[key]) if cloud is not None else "-"
        same = "" if cloud is None or cloud[key] == box[key] else s("  differs", "red")
        print(f"  {label:16} {b:>10} {c:>10}{same}")
    files = sorted((work / "rating-log").glob("*.csv"))
    lines = sum(len(f.read_text().splitlines()) - 1 for f in files)
    print(f"\n  {show.clips} audio tracks cut; {lines} lines in the live rating log "
          f"([notifications.rating_log]); {show.contacts} contacts")
