"""One daemon loop for every ``appliance-*`` service (Frigate's ``util/process.py`` is the
model): it owns SIGTERM/SIGINT, tells systemd READY, STATUS and STOPPING
(``systemd.daemon.notify``), runs the daemon's step and its periodic jobs, and pets the
watchdog only while the loop turns and the daemon says it is healthy — a stalled step or
a dead worker stops the pings, and systemd restarts the service.

A daemon's ``run()`` is then short: load, open its resources, ``run_loop(...)``."""
from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from systemd import daemon as sd

log = logging.getLogger(__name__)


class Notifier:
    """The systemd notify protocol through systemd-python (a no-op when not run by systemd).
    The watchdog period comes from ``WATCHDOG_USEC`` (for this process: ``WATCHDOG_PID``)."""

    def __init__(self, env: dict | None = None):
        env = os.environ if env is None else env
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ok = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_s = int(usec) / 1e6 if ok else None

    @staticmethod
    def notify(*lines: str) -> bool:
        return bool(sd.notify("\n".join(lines)))

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self, status: str = "") -> bool:
        return self.notify("WATCHDOG=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    @property
    def ping_interval_s(self) -> float:
        """How often to pet the watchdog: half its period (or every 10 s)."""
        return self.watchdog_s / 2 if self.watchdog_s else 10.0


@dataclass
class Job:
    """Something a daemon does every ``interval_s`` besides its step (first run at once)."""
    name: str
    interval_s: float
    fn: Callable[[], object]
    last: float = -math.inf


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (only the main thread may install handlers)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())


IDLE_AFTER_S = 5.0
"""A daemon whose step has done nothing for this long waits ``idle_tick_s`` between steps."""


def run_loop(name: str, step: Callable[[], object], *, tick_s: float, idle_tick_s: float | None = None,
             jobs: Iterable[Job] = (),
             healthy: Callable[[], bool] = lambda: True, status: Callable[[], str] | None = None,
             ready_status: str = "", stop: threading.Event | None = None,
             on_stop: Callable[[], None] | None = None, notifier: Notifier | None = None) -> int:
    """Run ``step`` every ``tick_s`` (and the due ``jobs``) until SIGTERM/SIGINT or ``stop``.
    With ``idle_tick_s``, a loop whose step has returned nothing truthy (no work done) for
    ``IDLE_AFTER_S`` steps that much less often: an idle box sleeps (CPU, power).

    The watchdog is pinged only from this loop and only while ``healthy()``: a step that
    hangs, or a worker the daemon reports dead, lets systemd's watchdog fire. An exception
    from ``step`` or a job ends the loop (the daemon exits and systemd restarts it):
    a stage that must survive bad input contains it itself. ``on_stop`` closes the
    daemon's resources after STOPPING was sent."""
    stop = stop or threading.Event()
    install_signal_handlers(stop)
    notifier = notifier or Notifier()
    jobs = list(jobs)
    notifier.ready(ready_status or name)
    log.info("%s running", name)
    last_ping = -math.inf
    was_healthy = True
    last_work = time.monotonic()
    try:
        while not stop.is_set():
            worked = step()
            mono = time.monotonic()
            if worked:
                last_work = mono
            for job in jobs:
                if mono - job.last >= job.interval_s:
                    job.fn()
                    job.last = mono
            if mono - last_ping >= notifier.ping_interval_s:
                ok = healthy()
                if ok:
                    notifier.watchdog(status() if status else "")
                    last_ping = mono
                elif was_healthy:
                    log.error("%s: unhealthy; the watchdog is no longer petted", name)
                was_healthy = ok
            idle = idle_tick_s is not None and mono - last_work >= IDLE_AFTER_S
            stop.wait(min(idle_tick_s if idle else tick_s, notifier.ping_interval_s))   # a long tick never starves the watchdog
    finally:
        notifier.stopping()
        if on_stop is not None:
            on_stop()
        log.info("%s stopped", name)
    return 0


def daemon_alive(pid: object, name: str) -> bool:
    """The process ``pid`` lives and is the daemon ``run <name>`` (not a recycled pid)."""
    if not process_alive(pid):
        return False
    try:
        args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return True                     # another user's process we cannot read: trust the pid
    return b"run" in args and name.encode() in args


def process_alive(pid: object) -> bool:
    """A process with this pid exists (another user's counts: a service's daemon)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
