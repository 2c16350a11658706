"""``appliancectl run core``: the appliance-core daemon. Load config, open the journal,
start the POS inputs, run the core stage until SIGTERM."""
from __future__ import annotations

import logging
import signal
import threading
import time

from .clock import Clock, clock_from_env, kernel_synced
from .config.schema import Config
from .core import CoreStage
from .drop_folder import DropFolder
from .journal import JOURNAL_NAME, Journal
from .pos_api import PosApi
from .sdnotify import Notifier

log = logging.getLogger(__name__)

POLL_S = 0.1
DROP_SCAN_S = 2.0
CLOCK_CHECK_S = 10.0


def correct_clock(journal: Journal, clock: Clock) -> int:
    """If the wall clock is now synchronised, correct this boot's pre-sync events."""
    if not kernel_synced():
        return 0
    n = journal.correct_unsynced(clock.boot, time.time_ns() - time.monotonic_ns())
    if n:
        log.info("clock synchronised: corrected the time of %d earlier events", n)
    return n


def run(cfg: Config, stop: threading.Event | None = None) -> int:
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    clock = clock_from_env()
    journal = Journal.in_dir(cfg.device.state_dir)
    stage = CoreStage(cfg, journal)
    notifier = Notifier()
    pos = None
    if cfg.pos.listen:
        pos = PosApi(cfg, str(journal.path.parent / JOURNAL_NAME), clock).start()
    drop = DropFolder(cfg, journal, cfg.pos.drop_dir) if cfg.pos.drop_dir else None
    notifier.ready(f"core: {len(cfg.points)} points")
    log.info("core running: %d points, journal %s", len(cfg.points), journal.path)
    last_ping = last_drop = last_clock = 0.0
    try:
        while not stop.is_set():
            mono = time.monotonic()
            if drop and mono - last_drop >= DROP_SCAN_S:
                drop.scan()
                last_drop = mono
            if mono - last_clock >= CLOCK_CHECK_S:
                correct_clock(journal, clock)
                last_clock = mono
            stage.step(clock.now_ms())   # every tick: time moves timers on even without events
            if mono - last_ping >= notifier.ping_interval_s:
                notifier.watchdog()
                last_ping = mono
            stop.wait(POLL_S)
    finally:
        notifier.stopping()
        if pos:
            pos.stop()
        journal.close()
        log.info("core stopped")
    return 0
