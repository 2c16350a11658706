"""Time stamps for events (ARCHITECTURE §3): wall ms, CLOCK_MONOTONIC ns, boot id and
whether the wall clock was NTP-synchronised. Only daemons' I/O shells use a Clock; the
logic is fed times.

A Pi has no RTC: until NTP syncs its wall clock may be far off. Events stamped before
sync carry ``synced = False``; once sync is seen, the learned offset (wall − mono) turns
their ``mono`` into a corrected wall time (:func:`corrected_ts`,
``Journal.correct_unsynced``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .timefmt import parse_ts


@dataclass(frozen=True, slots=True)
class Stamp:
    ts: int          # wall, UTC ms
    mono: int        # CLOCK_MONOTONIC ns
    boot: str
    synced: bool


def corrected_ts(mono_ns: int, offset_ns: int) -> int:
    """Wall ms of an event taken at mono_ns, given offset = wall_ns − mono_ns at sync."""
    return (mono_ns + offset_ns) // 1_000_000


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


class _Timex(ctypes.Structure):
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long),
                ("tolerance", ctypes.c_long), ("time_sec", ctypes.c_long),
                ("time_usec", ctypes.c_long), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
                ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
                ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
                ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("_pad", ctypes.c_int * 11)]


_TIME_ERROR = 5
_libc = None


def kernel_synced() -> bool:
    """adjtimex(2): the kernel clock is synchronised unless it reports TIME_ERROR.
    systemd-timesyncd and chrony both clear the unsync flag once they have a source."""
    global _libc
    if os.environ.get("APPLIANCE_ASSUME_SYNCED") == "1":
        return True
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = _libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        state = -1
    if state == -1:   # not allowed (systemd ProtectClock=): timesyncd's flag file tells
        return Path("/run/systemd/timesync/synchronized").exists()
    return state != _TIME_ERROR


class Clock:
    """The real clock."""

    def __init__(self) -> None:
        self.boot = boot_id()

    def now(self) -> Stamp:
        return Stamp(time.time_ns() // 1_000_000, time.monotonic_ns(), self.boot, kernel_synced())

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class SimClock(Clock):
    """A scaled clock for the demo: wall time starts at ``start_ms`` and runs ``speed``
    times faster. Spec string (env ``APPLIANCE_SIM_CLOCK``): ``<ISO time>@<speed>``;
    every process given the same spec and the same ``APPLIANCE_SIM_EPOCH`` (real ms at
    which the simulated time was ``start``) shares one simulated time."""

    def __init__(self, start_ms: int, speed: float, epoch_ms: int | None = None):
        super().__init__()
        self.start_ms = start_ms
        self.speed = speed
        self.epoch_ms = epoch_ms if epoch_ms is not None else time.time_ns() // 1_000_000

    @classmethod
    def from_env(cls) -> "Clock":
        spec = os.environ.get("APPLIANCE_SIM_CLOCK")
        if not spec:
            return Clock()
        start, _, speed = spec.partition("@")
        epoch = os.environ.get("APPLIANCE_SIM_EPOCH")
        return cls(parse_ts(start), float(speed or 1), int(epoch) if epoch else None)

    def now_ms(self) -> int:
        real = time.time_ns() // 1_000_000
        return self.start_ms + int((real - self.epoch_ms) * self.speed)

    def now(self) -> Stamp:
        return Stamp(self.now_ms(), time.monotonic_ns(), self.boot, True)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds / self.speed)


def clock_from_env() -> Clock:
    return SimClock.from_env()
