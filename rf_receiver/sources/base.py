"""The interface every RF source implements (STYLE 1).

A source hands over *edges* (batches of edge times in its own ticks, ``ticks_per_us`` to
the µs) or *runs* (level 0/1, duration µs) for the OOK pipeline, or, when the hardware
decodes by itself (rtl_433, an nRF24 link), ready *frames*. All times are in the source's
own timebase; ``now_us`` tells the current time in it, so presses can be ended when their
repeats stop.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from appliance.errors import HardwareError

from ..decoders.base import Frame


@dataclass(slots=True)
class Run:
    level: int
    duration_us: int


@dataclass(slots=True)
class Edges:
    """Edges in the order they happened: each one's time (the source's ticks) and the
    level after the first; levels alternate from there. ``restart``: edges were lost
    before these (an overflow), so what came before cannot be joined to them."""
    level: int
    ts: list[int]
    restart: bool = False


class SourceError(HardwareError):
    """The source cannot run (no such device, no permission, missing program)."""


class RfSource(ABC):
    name = "source"
    ticks_per_us = 1
    hurry = False
    """Set by the service while a press waits for its confirming frame: a source that
    gathers edges into batches to save CPU hands them over at once instead."""

    @abstractmethod
    def read(self, timeout_s: float) -> list[Edges | Run | Frame]:
        """What arrived since the last call; waits up to timeout_s for something."""

    @abstractmethod
    def now_us(self) -> int:
        """The current time in this source's timebase."""

    def exhausted(self) -> bool:
        """True when no more input can come (a replay at its end)."""
        return False

    def alive(self) -> bool:
        """False when a worker of the source died for good (the daemon then stops petting
        its watchdog and systemd restarts it)."""
        return True

    def close(self) -> None:  # noqa: B027 - a backend may override it; the default holds nothing
        pass

    def __enter__(self) -> "RfSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
