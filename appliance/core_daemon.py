"""``appliancectl run core``: the appliance-core daemon. Load config, open the journal,
start the POS inputs, run the core stage until SIGTERM."""
from __future__ import annotations

import logging
import threading
import time

from .clock import Clock, clock_from_env, kernel_synced
from .config.schema import Config
from .core import CoreStage
from .daemon import Job, run_loop
from .drop_folder import DropFolder
from .journal import Journal
from .limits import TimeWindow
from .pos_api import PosApi
from .pruning import prune
from .update_lock import BusyFlag
from . import alerts
from .ids import device_id
from .notify import Notifications
from .notify.report import extender

log = logging.getLogger(__name__)

POLL_S = 0.1
IDLE_POLL_S = 0.5       # after a few seconds without input: instant alerts leave at most this much later
DROP_SCAN_S = 2.0
CLOCK_CHECK_S = 10.0
PRUNE_S = 60.0          # a few short batches a minute: a backlog of years goes within hours
ALERTS_S = 30.0         # windowed and silence alerts, scheduled reports


def correct_clock(journal: Journal, clock: Clock) -> int:
    """If the wall clock is now synchronised, correct this boot's pre-sync events."""
    if not kernel_synced():
        return 0
    n = journal.correct_unsynced(clock.boot, time.time_ns() - time.monotonic_ns())
    if n:
        log.info("clock synchronised: corrected the time of %d earlier events", n)
    return n


def run(cfg: Config, stop: threading.Event | None = None) -> int:
    clock = clock_from_env()
    journal = Journal.in_dir(cfg.device.state_dir)
    stage = CoreStage(cfg, journal)
    pos = PosApi(cfg, str(journal.path), clock).start() if cfg.pos.listen else None
    drop = DropFolder(cfg, journal, cfg.pos.drop_dir, window=lambda: TimeWindow.live(clock.now(), cfg.time.max_ahead_s)
                      ) if cfg.pos.drop_dir else None
    notify = Notifications(cfg, journal, device_id(cfg), extender(cfg, journal)).start()
    jobs = [Job("clock", CLOCK_CHECK_S, lambda: correct_clock(journal, clock)),
            Job("journal retention", PRUNE_S, lambda: prune(cfg, journal, clock.now_ms(), max_batches=20))]
    if cfg.notifications:
        jobs.append(Job("alerts and reports", ALERTS_S, lambda: alerts.evaluate(cfg, journal, clock.now_ms())))
    if drop:
        jobs.append(Job("drop folder", DROP_SCAN_S, drop.scan))
        jobs.append(Job("drop archive", 3600.0, lambda: drop.tidy(cfg.journal.keep_raw_days)))
    contact_lock = BusyFlag(cfg.device.state_dir, "contact")     # no update while a contact is open
    log.info("core: %d points, journal %s", len(cfg.points), journal.path)

    def close() -> None:
        contact_lock.close()
        if pos:
            pos.stop()
        notify.stop()
        journal.close()

    def step() -> bool:
        now = clock.now_ms()
        before = stage.commits
        stage.step(now)                     # every tick: time moves timers on even without events
        notify.step()                       # routing only: sending is the couriers' (threads)
        contact_lock.set(any(t.open_contact is not None for t in stage.state.pipeline.points.values()))
        return stage.commits != before

    def status() -> str:
        points = stage.state.pipeline.points.values()
        text = (f"core: {len(cfg.points)} points, {sum(t.open_contact is not None for t in points)} contacts open, "
                f"{stage.emitted} records derived, at seq {journal.cursor('core')}")
        if pos is not None:
            text += f"; POS API {'up' if pos.alive() else 'DOWN'}"
        if not notify.alive():
            text += "; a notification courier died (the daemon restarts)"
        return text
    return run_loop("core", step, tick_s=POLL_S, idle_tick_s=IDLE_POLL_S, jobs=jobs, stop=stop, on_stop=close,
                    healthy=lambda: (pos is None or pos.alive()) and notify.alive(),
                    ready_status=f"core: {len(cfg.points)} points", status=status)
