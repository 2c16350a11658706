"""``appliancectl run rf``: the appliance-rf daemon. Source -> decoder -> press detector
-> journal, with systemd notify and watchdog."""
from __future__ import annotations

import logging
import signal
import sys
import threading
import time

from appliance.clock import clock_from_env
from appliance.config.schema import Config
from appliance.journal import Journal
from appliance.sdnotify import Notifier

from .mapping import events_for
from .press import PressDetector
from .service import RfService, wall_ms_of
from .sources.base import RfSource, SourceError

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005
"""The GPIO library calls back from its own thread: hand the interpreter over to the
decoding loop quickly (Python's default is 5 ms, a quarter of the latency budget)."""


def open_source(cfg: Config, pulses_file: str | None = None, realtime: bool = True) -> RfSource:
    """The configured source (or a replay of a pulse file, for tests and demos)."""
    if pulses_file:
        from .pulses import read_pulse_file
        from .sources.replay import ReplaySource
        with open(pulses_file, "rb") as f:
            trains = [p for _, p in read_pulse_file(f) if not isinstance(p, Exception)]
        flat = [run for train in trains for run in train]
        return ReplaySource(flat, realtime=realtime)
    kind = cfg.rf.source
    if kind == "gpio":
        from .sources.gpio import GpioSource
        return GpioSource(cfg.rf.pin)
    if kind == "rtl_433":
        from .sources.rtl433 import Rtl433Source
        return Rtl433Source()
    if kind == "nrf24":
        from .sources.nrf24 import Nrf24Source
        return Nrf24Source()
    raise SourceError('[rf] source = "none": no RF input configured')


def receiver_for(cfg: Config):
    from .decoders.declared import from_config
    from .receiver import Receiver
    return Receiver(declared=from_config(cfg.rf.decoders))


def detector_for(cfg: Config) -> PressDetector:
    return PressDetector(cfg.rf.min_frames, round(cfg.rf.long_press_s * 1e6))


class RfJournalWriter:
    """on_press callback: map and journal, stamped with the first frame's wall time."""

    def __init__(self, cfg: Config, journal: Journal, source: RfSource, clock):
        self.cfg = cfg
        self.journal = journal
        self.source = source
        self.clock = clock
        self.written = 0
        self.commits: list[float] = []    # perf_counter of each commit (latency measurements)

    def __call__(self, event: str, press, ref_us: int) -> None:
        stamp = self.clock.now()
        src_now = self.source.now_us()
        ts = wall_ms_of(press.start_us, src_now, stamp.ts)
        mono = stamp.mono - (src_now - press.start_us) * 1000
        evs = events_for(self.cfg, event, press, ts)
        for ev in evs:
            ev.mono, ev.boot, ev.synced = mono, stamp.boot, stamp.synced
        if evs:
            self.journal.append_many(evs)
            self.commits.append(time.perf_counter())
            self.written += len(evs)
            for ev in evs:
                log.info("rf: %s %s", ev.type, {k: v for k, v in ev.data.items() if k != "unit_us"})


def run(cfg: Config, stop: threading.Event | None = None, pulses_file: str | None = None) -> int:
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        source = open_source(cfg, pulses_file)
    except SourceError as exc:
        log.error("rf: %s", exc)
        return 3
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    clock = clock_from_env()
    journal = Journal.in_dir(cfg.device.state_dir)
    writer = RfJournalWriter(cfg, journal, source, clock)
    service = RfService(source, detector_for(cfg), writer, receiver=receiver_for(cfg))
    notifier = Notifier()
    notifier.ready(f"rf: {source.name}")
    log.info("rf running: source %s, %d remotes configured", source.name, len(cfg.remotes))
    last_ping = 0.0
    try:
        while not stop.is_set():
            service.step(0.005)
            if source.exhausted():
                for event, press in service.detector.finish():
                    writer(event, press, service.t_us)
                stop.wait(0.2)
            mono = time.monotonic()
            if mono - last_ping >= notifier.ping_interval_s:
                notifier.watchdog()
                notifier.status(f"rf: {service.frames} frames, {writer.written} events")
                last_ping = mono
    finally:
        notifier.stopping()
        source.close()
        journal.close()
    return 0
