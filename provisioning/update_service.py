"""``appliancectl update run``: the one part of an application update that runs as root
(``appliance-update.service``, started by ``appliance-update.path`` when the sync daemon
leaves a request).

The sync daemon (its own unprivileged user) receives the bundle, checks its signature and
writes ``<state_dir>/updates/request.json``; this service checks the signature again (the
request is input from a less trusted user: only a file name inside the updates folder, an id
and an expiry are taken from it), waits for the maintenance window and the update lock,
installs the release beside the running one, switches, restarts the daemons and keeps the
release only if every daemon is READY and the sync daemon reaches the broker within
``[update] health_timeout_s``. The outcome goes to ``update.json``, where the sync daemon
reads it and answers the fleet's command. A power cut at any moment is finished or undone at
the next start (the path unit starts the service again while the request is there)."""
from __future__ import annotations

import json
import logging
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

from appliance.cloud.sync import STATUS_FILE
from appliance.cloud.wire import NAME_RE
from appliance.config.schema import Config
from appliance.update_lock import holders

from .update import TERMINAL, Outcome, Releases, Updater, in_window, load_public_keys

log = logging.getLogger(__name__)

UNITS = ("appliance-core.service", "appliance-rf.service", "appliance-audio.service", "appliance-sync.service")
REQUEST_FILE = "request.json"
STATE_FILE = "update.json"
WAIT_POLL_S = 30.0
SETTLE_S = 5.0
"""A daemon counts as READY when it has stayed up, with the same process and no restart, this long."""
_BUNDLE_NAME = re.compile(r"^[0-9a-f]{64}\.bundle\Z")


def updates_dir(cfg: Config) -> Path:
    return Path(cfg.device.state_dir) / "updates"


@dataclass
class Request:
    id: str
    bundle: Path
    expires: int                # UTC ms; 0: never


def read_request(directory: Path) -> Request | None:
    """The sync daemon's request, or None (absent or unreadable: then removed, said in the log)."""
    p = directory / REQUEST_FILE
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("update: %s: %s", p, exc)
        return None
    try:
        if len(raw) > 4096:
            raise ValueError("larger than 4 kB")
        doc = json.loads(raw)
        rid, name, expires = doc["id"], doc["bundle"], doc.get("expires", 0)
        if not (isinstance(rid, str) and re.fullmatch(NAME_RE, rid)):    # the wire's names, no newline after
            raise ValueError("bad id")
        if not (isinstance(name, str) and _BUNDLE_NAME.match(name)):
            raise ValueError("bad bundle name")
        if not (isinstance(expires, int) and not isinstance(expires, bool) and 0 <= expires < 2**53):
            raise ValueError("bad expiry")
    except (ValueError, KeyError, TypeError) as exc:
        log.error("update: %s is not a request this service takes (%s); removed", p, exc)
        p.unlink(missing_ok=True)
        return None
    return Request(rid, directory / name, expires)


class SystemdUnits:
    """The daemons as systemd runs them (``systemctl``): the hardware edge of the health check."""

    def __init__(self, units: tuple[str, ...] = UNITS, run: Callable = subprocess.run):
        self.units = units
        self.run = run

    def restart(self) -> None:
        self.run(["systemctl", "--no-block", "restart", *self.units], check=False, capture_output=True, timeout=60)

    def states(self) -> dict[str, tuple[bool, int, int]]:
        """unit -> (READY: active and running, main PID, restarts so far)."""
        r = self.run(["systemctl", "show", "-p", "Id,ActiveState,SubState,MainPID,NRestarts", *self.units],
                     check=False, capture_output=True, text=True, timeout=30)
        out: dict[str, tuple[bool, int, int]] = {}
        for block in r.stdout.strip().split("\n\n"):
            kv = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            unit = kv.get("Id", "")
            try:
                pid, restarts = int(kv.get("MainPID", "0")), int(kv.get("NRestarts", "0"))
            except ValueError:
                pid, restarts = 0, 0
            out[unit] = (kv.get("ActiveState") == "active" and kv.get("SubState") == "running", pid, restarts)
        return out


class Health:
    """Every daemon READY — active since the restart with the same process and no restart
    for ``settle_s`` — and, when a broker is configured, the (new) sync daemon connected."""

    def __init__(self, units, status_file: Path, need_broker: bool, sync_unit: str = UNITS[-1],
                 settle_s: float = SETTLE_S, clock: Callable[[], float] = time.monotonic):
        self.units = units
        self.status_file = status_file
        self.need_broker = need_broker
        self.sync_unit = sync_unit
        self.settle_s = settle_s
        self.clock = clock
        self.since: tuple | None = None
        self.restarted_at = 0.0
        self.last_problem = ""

    def restart(self) -> None:
        self.since = None
        self.restarted_at = time.time()
        self.units.restart()

    def healthy(self) -> bool:
        states = self.units.states()
        down = [u for u in self.units.units if not states.get(u, (False, 0, 0))[0]]
        if down:
            self.since, self.last_problem = None, f"not READY: {', '.join(down)}"
            return False
        key = tuple(sorted(states.items()))
        if self.since is None or self.since[0] != key:
            self.since = (key, self.clock())
            return False
        if self.clock() - self.since[1] < self.settle_s:
            return False
        if self.need_broker:
            try:
                st = json.loads(self.status_file.read_text())
            except (OSError, ValueError):
                st = {}
            if not (st.get("connected") and st.get("pid") == states[self.sync_unit][1]
                    and st.get("time", 0) >= self.restarted_at):
                self.last_problem = "the sync daemon has not reached the broker"
                return False
        return True


def make_updater(cfg: Config, units=None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> tuple[Updater, Health]:
    state_dir = cfg.device.state_dir
    health = Health(units or SystemdUnits(), Path(state_dir) / STATUS_FILE, bool(cfg.sync.broker), clock=clock)
    zone = ZoneInfo(cfg.time.timezone)
    up = Updater(Releases(Path(cfg.update.releases_dir)), updates_dir(cfg) / STATE_FILE,
                 load_public_keys(Path(cfg.update.keys_dir)), restart=health.restart, healthy=health.healthy,
                 busy=lambda: "; ".join(holders(state_dir)) or None,
                 in_window=lambda: in_window(cfg.update.window, datetime.now(zone)),
                 health_timeout_s=cfg.update.health_timeout_s, clock=clock, sleep=sleep,
                 why_unhealthy=lambda: health.last_problem)
    return up, health


def run(cfg: Config, units=None, stop: threading.Event | None = None, poll_s: float = WAIT_POLL_S,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> Outcome | None:
    """Finish an interrupted update, then take the waiting request (if any) to its end."""
    stop = stop or threading.Event()
    directory = updates_dir(cfg)
    up, health = make_updater(cfg, units)
    recovered = up.recover()
    if recovered is not None:
        log.info("update: an interrupted update of %s: %s %s", recovered.version, recovered.status, recovered.detail)
    req = read_request(directory)
    if req is None:
        return recovered
    st = up.state()
    out: Outcome | None = None
    if st.get("id") == req.id and st.get("phase") in TERMINAL:     # done before a power cut took the cleanup
        out = Outcome(st["phase"], st.get("version"), st.get("previous"), st.get("error", ""))
    waiting = ""
    while out is None:
        if req.expires and now_ms() > req.expires:
            up.note(id=req.id, phase="expired", previous=up.releases.current(),
                     error=f"not installed before the command expired ({waiting or 'waited'})")
            out = Outcome("expired", None, up.releases.current(), waiting)
            break
        res = up.apply(req.bundle, req.id)
        if res.status != "deferred":
            out = res
            break
        if res.detail != waiting:
            waiting = res.detail
            up.note_waiting(req.id, waiting)
            log.info("update %s: waiting (%s)", req.id, waiting)
        if stop.wait(poll_s):
            return None                        # stopped: the request stays for the next start
    log.info("update %s: %s %s %s", req.id, out.status, out.version or "", out.detail)
    (directory / REQUEST_FILE).unlink(missing_ok=True)
    req.bundle.unlink(missing_ok=True)
    return out
