"""Where 433 MHz input comes from: one small interface (``base.RfSource``), one file per
kind of hardware, and a replay source for recorded pulse trains."""
from __future__ import annotations

from appliance.config.schema import Config

from .base import RfSource, SourceError


def open_source(cfg: Config, pulses_file: str | None = None, realtime: bool = True) -> RfSource:
    """The configured source (or a replay of a pulse file, for tests and demos)."""
    if pulses_file:
        from ..pulses import read_pulse_file
        from .replay import ReplaySource
        with open(pulses_file, "rb") as f:
            trains = [p for _, p in read_pulse_file(f) if not isinstance(p, Exception)]
        return ReplaySource([run for train in trains for run in train], realtime=realtime)
    kind = cfg.rf.source
    if kind == "gpiod":
        from .gpiod import GpiodSource
        return GpiodSource(cfg.rf.chip, cfg.rf.pin)
    if kind == "gpio":
        from .gpio import GpioSource
        return GpioSource(cfg.rf.pin)
    if kind == "rtl_433":
        from .rtl433 import Rtl433Source
        return Rtl433Source()
    if kind == "nrf24":
        from .nrf24 import Nrf24Source
        return Nrf24Source()
    if kind == "none":
        from .none import NoSource
        return NoSource()
    raise SourceError(f"[rf] source = {kind!r}: not a source this box knows")
