"""Notifications: routing stages, outboxes and couriers, one set per destination, run inside
``appliance-core`` (see :mod:`appliance.notify.delivery`)."""
from __future__ import annotations

import threading
import time
from typing import Callable

from ..config.schema import Config
from ..journal import Journal
from ..routing import Message
from .delivery import Courier, RouteStage


class Notifications:
    """Every configured destination: its routing stage (stepped by the core's loop) and its
    courier thread (a slow or dead destination delays only itself)."""

    def __init__(self, cfg: Config, journal: Journal, device: str,
                 extend: Callable[[Message], Message] | None = None, clock: Callable[[], float] = time.time):
        self.stages = [RouteStage(cfg, journal, name, device, extend, clock) for name in cfg.notifications]
        self.couriers = [Courier(cfg, journal.path, name, clock=clock) for name in cfg.notifications]
        self.threads: list[threading.Thread] = []
        self.stop_event = threading.Event()

    def start(self) -> "Notifications":
        for c in self.couriers:
            t = threading.Thread(target=c.run, args=(self.stop_event,), name=f"notify-{c.name}", daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def step(self) -> int:
        queued = 0
        for st, courier in zip(self.stages, self.couriers, strict=True):
            n = st.step()
            if n:
                courier.wake.set()
            queued += n
        return queued

    def alive(self) -> bool:
        """Every courier thread runs (a dead one makes the daemon unhealthy: systemd restarts it)."""
        return all(t.is_alive() for t in self.threads)

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stop_event.set()
        for c in self.couriers:
            c.wake.set()
        for t in self.threads:
            t.join(timeout_s)
