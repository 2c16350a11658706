"""``appliancectl run rf``: the appliance-rf daemon. Source -> decoder -> press detector
-> journal, with systemd notify and watchdog."""
from __future__ import annotations

import logging
import os
import sys
import threading
import time

from appliance.clock import clock_from_env
from appliance.config.schema import Config
from appliance import vocabulary as v
from appliance.daemon import IDLE_AFTER_S, Job, run_loop
from appliance.journal import Journal
from appliance.logs import fields

from .mapping import events_for
from .sensors import GpioSensors
from .service import RfService, wall_ms_of
from .sources import open_source
from .sources.base import RfSource, SourceError
from .unknown import UnknownRemoteLimiter

log = logging.getLogger(__name__)

READ_WAIT_S, IDLE_READ_WAIT_S = 0.05, 0.5
"""How long one step waits for the radio: frames and edges wake it at once, so this only
bounds how late a release (the end of a press) is noticed — 50 ms within a few seconds of
the last frame — and how often an idle loop wakes (twice a second)."""
SWITCH_INTERVAL_S = 0.0005
"""The GPIO library calls back from its own thread: hand the interpreter over to the
decoding loop quickly (Python's default is 5 ms, a quarter of the latency budget)."""


class RfJournalWriter:
    """on_press callback: map and journal, stamped with the first frame's wall time."""

    def __init__(self, cfg: Config, journal: Journal, source: RfSource, clock):
        self.cfg = cfg
        self.journal = journal
        self.source = source
        self.clock = clock
        self.written = 0
        self.commits: list[float] = []    # perf_counter of each commit (latency measurements)
        self.kinds: list[str] = []        # the first event type of each commit
        self.unknown = UnknownRemoteLimiter()
        self.radio_state = "ok"                 # only changes are journalled
        self.last_press = ""                    # for STATUS=: "HH:MM:SS remote/button → meaning"

    def __call__(self, event: str, press, ref_us: int) -> None:
        stamp = self.clock.now()
        src_now = self.source.now_us()
        ts = wall_ms_of(press.start_us, src_now, stamp.ts)
        mono = stamp.mono - (src_now - press.start_us) * 1000
        evs = []
        for ev in events_for(self.cfg, event, press, ts):
            evs += self.unknown.admit(ev, stamp.ts) if ev.type == v.UNKNOWN_REMOTE else [ev]
        for ev in evs:
            ev.mono, ev.boot, ev.synced = mono, stamp.boot, stamp.synced
            if "remote" in ev.data:
                self.last_press = (f"{time.strftime('%H:%M:%S', time.localtime(ev.ts / 1000))} "
                                   f"{ev.data['remote']}/{ev.data.get('button')} {ev.type}")
        self._append(evs)

    def tick(self, final: bool = False) -> None:
        """Periodic: close the unknown-remote window; journal the radio's state changes.
        ``final`` (the daemon stops): what the window counted so far is journalled too."""
        now = self.clock.now_ms()
        evs = self.unknown.tick(now, force=final)
        state = getattr(self.source, "state", "ok")
        if state != self.radio_state and state != "starting":
            evs.append(v.RadioState(state=state, error=getattr(self.source, "error", "") or None,
                                    restarts=getattr(self.source, "restarts", 0)).as_event(now, None, "rf"))
            self.radio_state = state
        self._append(evs)

    def _append(self, evs: list) -> None:
        if evs:
            self.journal.append_many(evs)
            self.commits.append(time.perf_counter())
            self.kinds.append(evs[0].type)
            self.written += len(evs)
            for ev in evs:
                log.info("rf: %s %s", ev.type, {k: v for k, v in ev.data.items() if k != "unit_us"},
                         extra=fields(point=ev.point, remote=ev.data.get("remote")))


def run(cfg: Config, stop: threading.Event | None = None, pulses_file: str | None = None) -> int:
    try:
        source = open_source(cfg, pulses_file)
    except SourceError as exc:
        log.error("rf: %s", exc)
        return 3
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    clock = clock_from_env()
    journal = Journal.in_dir(cfg.device.state_dir)
    writer = RfJournalWriter(cfg, journal, source, clock)
    service = RfService.from_config(cfg, source, writer)
    sensors = GpioSensors(cfg, clock) if cfg.sensors else None
    if sensors is not None:
        writer._append(sensors.state_events(journal, clock.now_ms()))
    sim = None
    if os.environ.get("APPLIANCE_SIM_GPIO"):            # the demo: a script for gpiozero's mock pins
        from .sensors import MockPinScript
        sim = MockPinScript(os.environ["APPLIANCE_SIM_GPIO"])
        sim.start()
    log.info("rf: source %s, %d remotes configured, %d GPIO presence sensor(s)", source.name, len(cfg.remotes),
             len(sensors.devices) if sensors else 0)

    last_work = time.monotonic()

    def step() -> bool:
        nonlocal last_work
        idle = time.monotonic() - last_work > IDLE_AFTER_S
        worked = service.step(IDLE_READ_WAIT_S if idle else READ_WAIT_S) > 0   # waits for the radio
        if sensors is not None:
            changes = sensors.drain()
            writer._append(changes)
            worked = worked or bool(changes)
        if source.exhausted():
            for event, press in service.detector.finish():
                writer(event, press, service.t_us)
            time.sleep(0.2)
        if worked:
            last_work = time.monotonic()
        return worked

    def status() -> str:
        radio = getattr(source, "state", "ok")
        text = f"rf: {source.name} {radio}" + (f" ({source.error})" if radio != "ok" and getattr(source, "error", "")
                                              else "")
        lost = getattr(source, "lost", 0)
        text += f", {lost} edges lost (the kernel's queue was full)" if lost else ""
        text += f", last press {writer.last_press}" if writer.last_press else ", no press yet"
        text += f", {writer.written} events"
        return text + (f"; sensors {sensor_line(sensors)}" if sensors else "")

    def close() -> None:
        if sim is not None:
            sim.stop.set()
        source.close()
        if sensors is not None:
            sensors.close()
            writer._append(sensors.drain())
        writer.tick(final=True)
        journal.close()
    return run_loop("rf", step, tick_s=0, stop=stop, on_stop=close, ready_status=f"rf: {source.name}",
                    jobs=[Job("radio", 1.0, writer.tick)], healthy=source.alive, status=status)


def sensor_line(sensors: GpioSensors) -> str:
    """For STATUS=: each sensor's state, or its error."""
    return " ".join(f"{sid}={'error' if 'error' in st else ('present' if st['present'] else 'clear')}"
                    for sid, st in sensors.status().items())
