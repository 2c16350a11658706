"""systemd notify protocol (READY, WATCHDOG, STATUS, STOPPING) without a dependency:
a datagram to ``$NOTIFY_SOCKET``. A no-op when not run by systemd."""
from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, env: dict | None = None):
        env = os.environ if env is None else env
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ok = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_s = int(usec) / 1e6 if ok else None
        if self.address and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]

    def notify(self, state: str) -> bool:
        if not self.address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(state.encode(), self.address)
            except OSError:
                return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    @property
    def ping_interval_s(self) -> float:
        """How often to pet the watchdog: half its period (or every 10 s)."""
        return self.watchdog_s / 2 if self.watchdog_s else 10.0
