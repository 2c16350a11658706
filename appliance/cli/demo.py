"""``appliancectl demo``: the appliance on simulated hardware, a working day at two points.

What is real: the config file and its validation, the journal, the ``appliance-core``
daemon (``appliancectl run core`` as a child process, exactly as systemd starts it), the
token-authenticated POS HTTP API (receipts and cashier log-ins are POSTed to it) and the
report. What is simulated: the hardware edge — the RF remotes' presses and the presence
sensors — written to the journal as the rf daemon would, and the clock, which runs
``speed`` times faster (shared with the daemon through ``APPLIANCE_SIM_CLOCK``).
"""
from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .. import vocabulary as v
from ..clock import SimClock, boot_id
from ..config import load_config
from ..events import map_button
from ..journal import JOURNAL_NAME, Journal, NewEvent
from ..timefmt import iso_ms, parse_ts
from .ui import Style, num, pct, table

DAY = "2026-11-20"
OPEN_AT = parse_ts(f"{DAY}T09:00:00Z")
CLOSE_AT = parse_ts(f"{DAY}T18:00:00Z")
BOOT = boot_id()

CONFIG = """\
# The demo's appliance: two points of a small shop.
[device]
id = "demo-box"
state_dir = "{state_dir}"
secrets_file = "secrets.toml"

[time]
timezone = "UTC"
reorder_s = {reorder_s}          # half a real second at the demo speed

[points.till1]
name = "Till 1 (RF presence sensor, five-button remote)"
pos = true
rating_scale = {{ 1 = "negative", 2 = "negative", 3 = "neutral", 4 = "neutral", 5 = "top" }}

[points.till2]
name = "Till 2 (GPIO presence sensor, two-button remote)"
presence = "sensor"
pos = true
rating_scale = {{ 1 = "negative", 2 = "top" }}

[sensors.door2]
point = "till2"
kind = "motion"
pin = 17

[remotes.5a1f01]
point = "till1"
name = "till 1 rate-us remote"
buttons = {{ 1 = {{ meaning = "rating", value = 1 }}, 2 = {{ meaning = "rating", value = 2 }}, 3 = {{ meaning = "rating", value = 3 }}, 4 = {{ meaning = "rating", value = 4 }}, 5 = {{ meaning = "rating", value = 5 }} }}

[remotes.5a1f02]
point = "till1"
name = "till 1 RF presence sensor"
buttons = {{ 1 = {{ meaning = "presence", state = "arrived" }}, 2 = {{ meaning = "presence", state = "left" }}, 3 = {{ meaning = "presence", state = "dwell" }} }}

[remotes.7c2e10]
point = "till2"
name = "till 2 green/red remote"
buttons = {{ 1 = {{ meaning = "rating", value = 1 }}, 2 = {{ meaning = "rating", value = 2 }}, 3 = {{ meaning = "call", name = "till 2 call button", location = "checkout 2" }} }}

[remotes.9b0001]
point = "till2"
name = "Carla's staff fob"
buttons = {{ 1 = {{ meaning = "answer", staff = "carla" }} }}

[notifications.rating_log]
kind = "csv"                        # a line per rating press and staff call, as they happen
directory = "{state_dir}/rating-log"
calls = true
escalations = true

[pos]
listen = "127.0.0.1:{port}"
"""


@dataclass(order=True)
class Step:
    t: int
    kind: str            # press | sensor | pos
    what: dict


def script(seed: int = 2026) -> list[Step]:
    """A deterministic working day: arrivals, ratings, receipts, log-ins, a misuse burst,
    a long contact, a staff call."""
    rnd = random.Random(seed)
    steps = [Step(OPEN_AT - 300_000, "pos", {"path": "/v1/staff", "point": "till1", "staff": "anna"}),
             Step(OPEN_AT - 240_000, "pos", {"path": "/v1/staff", "point": "till2", "staff": "boris"}),
             Step(parse_ts(f"{DAY}T13:00:00Z"), "pos", {"path": "/v1/staff", "point": "till2", "staff": "carla"})]
    receipt = 1000
    for point, remote, values in (("till1", "5a1f01", [5, 5, 5, 4, 4, 3, 2, 1]),
                                  ("till2", "7c2e10", [2, 2, 2, 1])):
        t = OPEN_AT + rnd.randint(0, 300_000)
        while t < CLOSE_AT - 600_000:
            dur = rnd.randint(40_000, 240_000)
            if rnd.random() < 0.04:
                dur = rnd.randint(330_000, 420_000)   # a long one
            end = t + dur
            if point == "till1":
                steps.append(Step(t, "press", {"remote": "5a1f02", "button": 1}))
                steps.append(Step(end, "press", {"remote": "5a1f02", "button": 2}))
            else:
                steps.append(Step(t, "sensor", {"point": point, "present": True}))
                if dur > 90_000 and rnd.random() < 0.3:   # the customer steps out of view briefly
                    steps.append(Step(t + 60_000, "sensor", {"point": point, "present": False}))
                    steps.append(Step(t + 62_500, "sensor", {"point": point, "present": True}))
                steps.append(Step(end, "sensor", {"point": point, "present": False}))
            if rnd.random() < 0.8:
                receipt += 1
                steps.append(Step(end - rnd.randint(5_000, 30_000), "pos",
                                  {"path": "/v1/sale", "point": point, "receipt": f"R{receipt}",
                                   "amount": round(rnd.uniform(3, 90), 2), "items": rnd.randint(1, 6)}))
            if rnd.random() < 0.6:
                steps.append(Step(end + rnd.randint(-20_000, 12_000), "press",
                                  {"remote": remote, "button": rnd.choice(values)}))
            t = end + rnd.randint(20_000, 900_000)
    burst = parse_ts(f"{DAY}T15:42:00Z")   # a child finds the remote
    steps += [Step(burst + i * 900, "press", {"remote": "7c2e10", "button": 1 + i % 2}) for i in range(7)]
    steps.append(Step(parse_ts(f"{DAY}T11:17:00Z"), "press", {"remote": "7c2e10", "button": 3, "press": "short"}))
    steps.append(Step(parse_ts(f"{DAY}T11:18:10Z"), "press", {"remote": "9b0001", "button": 1}))
    steps.append(Step(parse_ts(f"{DAY}T16:05:00Z"), "press", {"remote": "7c2e10", "button": 3, "press": "short"}))
    steps.append(Step(parse_ts(f"{DAY}T16:09:30Z"), "press", {"remote": "9b0001", "button": 1}))
    return sorted(steps)


class Display:
    STARS = {"top": "green", "neutral": "yellow", "negative": "red"}

    def __init__(self, style: Style):
        self.s = style
        self.contacts = 0

    def event(self, ev) -> None:
        s = self.s
        clock = iso_ms(ev.ts)[11:19]
        if ev.type == v.CONTACT:
            c = v.read(ev, v.ContactSettled)
            self.contacts += 1
            colour = "red" if "negative" in c.tags else "green" if "positive" in c.tags else "grey"
            mark = s("●", colour)
            rating = f"rating {c.rating}" if c.rating is not None else s("no rating", "grey")
            n = len(c.sales)
            sales = f"{n} receipt" + ("s" if n != 1 else "") if n else s("no sale", "grey")
            dur = f"{int(c.duration_s // 60)}m{int(c.duration_s % 60):02d}s"
            print(f"  {s(iso_ms(parse_ts(c.opened))[11:19], 'grey')} {ev.point:6} {mark} contact {dur:>7}  "
                  f"{(c.owner or '-'):6} {rating:10} {sales:11} {s('[' + ', '.join(c.tags) + ']', 'dim')}")
        elif ev.type == v.RATING_SETTLED:
            r = v.read(ev, v.RatingSettled)
            if r.status not in ("orphan", "misuse"):
                return
            colour = "yellow" if r.status == "orphan" else "magenta"
            why = ("(no contact within the grace window)" if r.status == "orphan"
                   else "(5 presses in 10 s: kept out of the indices)")
            print(f"  {s(clock, 'grey')} {ev.point:6} {s('◆', colour)} {r.status} rating {r.value} {s(why, 'dim')}")
        elif ev.type == v.CALL_OPENED:
            call = v.read(ev, v.CallOpened)
            what = "complaint (button held)" if call.complaint else "staff call"
            print(f"  {s(clock, 'grey')} {ev.point:6} {s('☎', 'cyan')} {what} from {call.location or call.name}")
        elif ev.type == v.CALL_ESCALATED:
            print(f"  {s(clock, 'grey')} {ev.point:6} {s('☎', 'red')} staff call not answered in 2 min: escalated")
        elif ev.type == v.CALL_SETTLED:
            call = v.read(ev, v.CallSettled)
            ans = f"answered in {call.answered_s:.0f} s" if call.answered_s is not None else "not answered"
            print(f"  {s(clock, 'grey')} {ev.point:6} {s('☎', 'cyan')} staff call, {ans}")
        elif ev.type == v.STAFF:
            print(f"  {s(clock, 'grey')} {ev.point:6} {s('→', 'magenta')} {ev.data['staff']} logged in (POS)")


def _post(port: int, token: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str = "the core daemon", timeout: float = 20.0) -> None:
    """Until ``proc`` listens on ``port`` (RuntimeError if it exits or takes too long)."""
    import socket
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not open port {port} in time")


def run_demo(speed: float = 1000.0, keep: bool = False, state_dir: str | None = None) -> int:
    s = Style()
    work = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="appliance-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    if (work / JOURNAL_NAME).exists():
        print(f"{work} already holds a journal; give an empty --state-dir", file=sys.stderr)
        return 2
    port, token = _free_port(), secrets.token_urlsafe(24)
    cfg_path = work / "appliance.toml"
    cfg_path.write_text(CONFIG.format(state_dir=work, port=port, reorder_s=max(2.0, speed / 2)),
                        encoding="utf-8")
    (work / "secrets.toml").write_text(f'[pos]\ntoken = "{token}"\n', encoding="utf-8")
    os.chmod(work / "secrets.toml", 0o600)
    cfg = load_config(cfg_path)
    steps = script()
    start = steps[0].t - 60_000
    epoch = time.time_ns() // 1_000_000
    clock = SimClock(start, speed, epoch)
    env = dict(os.environ, APPLIANCE_SIM_CLOCK=f"{iso_ms(start)}@{speed}", APPLIANCE_SIM_EPOCH=str(epoch),
               APPLIANCE_CONFIG=str(cfg_path), PYTHONUNBUFFERED="1")
    print(s("Contact Analyzer — demo", "bold"), s(f"(a day at two points, {speed:g}× real time)", "grey"))
    print(s(f"  config {cfg_path} · journal {work / JOURNAL_NAME} · POS API 127.0.0.1:{port}", "grey"))
    print(s("  simulated: RF remotes, presence sensors, the clock · real: journal, core daemon, POS API, report", "grey"))
    print()
    log = open(work / "core.log", "w")
    core = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "run", "core"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    display = Display(s)
    try:
        _wait_port(port, core)
        journal = Journal.in_dir(cfg_path.parent)
        after = 0
        i = 0
        last_t = steps[-1].t
        grace = max(max(p.rating_grace_s, p.sale_grace_s) for p in cfg.points.values())
        done_at = last_t + int((grace + cfg.time.reorder_s + 30) * 1000)
        hour = None
        while True:
            now = clock.now_ms()
            while i < len(steps) and steps[i].t <= now:
                _inject(steps[i], cfg, journal, port, token)
                i += 1
            for ev in journal.read(after, 500):
                after = ev.seq
                display.event(ev)
            h = iso_ms(now)[:13]
            if h != hour and now >= OPEN_AT:
                hour = h
                print(s(f"── {h[11:13]}:00 ─ {display.contacts} contacts so far", "grey"))
            if now > done_at and i == len(steps) and _core_caught_up(journal) and _delivered(journal):
                break
            if core.poll() is not None:
                raise RuntimeError(f"the core daemon exited with status {core.returncode}; see {work}/core.log")
            time.sleep(0.02)
        for ev in journal.read(after, 10_000):
            display.event(ev)
        journal.close()
    except (RuntimeError, OSError) as exc:
        print(s(f"demo failed: {exc}", "red"), file=sys.stderr)
        return 3
    finally:
        core.send_signal(signal.SIGTERM)
        try:
            core.wait(10)
        except subprocess.TimeoutExpired:
            core.kill()
        log.close()
    _rating_log(work, s)
    _final_report(cfg, work, s)
    if keep or state_dir:
        print(s(f"\nThe demo's files stay in {work}: try", "grey"),
              f"APPLIANCE_CONFIG={cfg_path} appliancectl report --by owner")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _inject(step: Step, cfg, journal: Journal, port: int, token: str) -> None:
    w = step.what
    if step.kind == "pos":
        body = {k: v for k, v in w.items() if k != "path"}
        body["ts"] = iso_ms(step.t)
        _post(port, token, w["path"], body)
    elif step.kind == "press":
        ev = map_button(w["remote"], w["button"], w.get("press", "short"), step.t, cfg)
        ev.source = "sim-rf"
        ev.mono, ev.boot = time.monotonic_ns(), BOOT
        journal.append(ev)
    elif step.kind == "sensor":
        journal.append(NewEvent(v.SENSOR, step.t, {"present": w["present"]}, w["point"], "sim-gpio",
                                mono=time.monotonic_ns(), boot=BOOT))


def _core_caught_up(journal: Journal) -> bool:
    core = next((st for st in journal.stages() if st["name"] == "core"), None)
    return core is not None and core["cursor"] >= journal.last_seq() and core["info"].get("held") == 0


def _delivered(journal: Journal) -> bool:
    """Every routed message confirmed by its destination (the outboxes are empty)."""
    return journal.db.execute("SELECT COUNT(*) FROM outbox WHERE dead = 0").fetchone()[0] == 0


def _rating_log(work: Path, s: Style) -> None:
    files = sorted((work / "rating-log").glob("*.csv"))
    lines = sum(len(f.read_text().splitlines()) - 1 for f in files)
    print(s("The live rating log", "bold"), s("([notifications.rating_log], kind = \"csv\")", "grey"))
    print(f"  {lines} lines (a rating press or a staff call each, written as it happened) in "
          f"{', '.join(str(f) for f in files) or 'no file'}")
    for f in files[:1]:
        for line in f.read_text().splitlines()[:4]:
            print(s(f"    {line}", "grey"))
    print()


def _final_report(cfg, work: Path, s: Style) -> None:
    """The report as ``appliancectl report`` gives it: from the core's settled records."""
    from .report import TABLE_COLUMNS, grouped_journal
    print()
    print(s("The day's report", "bold"), s("(appliancectl report --by point / --by owner)", "grey"))
    with Journal.in_dir(work, readonly=True) as j:
        for by in ("point", "owner"):
            groups = grouped_journal(cfg, j, by, None, None)
            rows = [[s(k, "bold") if k == "total" else k] + [f(m[c]) for c, _, f in TABLE_COLUMNS]
                    for k, m in groups.items()]
            print(table([by] + [h for _, h, _ in TABLE_COLUMNS], rows, s, [False] + [True] * len(TABLE_COLUMNS)))
            print()
        m = grouped_journal(cfg, j, "point", None, None)["total"]
    print(f"CSI {s(pct(m['csi']), 'green')} of contacts ended with a top rating, "
          f"CDI {s(pct(m['cdi']), 'red')} with a negative one; "
          f"{pct(m['response_rate'])} of customers rated; personal conversion {pct(m['conversion'])}; "
          f"mean contact {num(m['mean_duration_s'], 0)} s.")
