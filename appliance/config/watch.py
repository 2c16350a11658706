"""A daemon restarts itself when its part of the configuration changed (a remote config
applied, the technician edited the file) or when asked to (a fleet ``restart`` command): it
stops its loop and exits 0; systemd (``Restart=always``) starts it again with the new config.

A changed file that does not validate changes nothing: the daemon keeps running what it has
and says so in its log."""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path

import msgspec

from ..errors import ConfigError
from .remote import REMOTE_FILE
from .schema import Config

log = logging.getLogger(__name__)

SECTIONS: dict[str, tuple[str, ...] | None] = {
    "core": None,                                   # everything but the link to the cloud
    "rf": ("device", "time", "points", "remotes", "sensors", "rf"),
    "audio": ("device", "time", "points", "audio", "retention"),
    "sync": ("device", "points", "sync", "provisioning", "notifications", "update"),
}
_NOT_CORE = ("sync", "provisioning", "update")
RESTART_DIR = "restart"
"""``<state_dir>/restart/<daemon>``: a request to restart (written by the sync daemon for a
fleet ``restart`` command; the state directory is shared by the daemons' group)."""


def fingerprint(cfg: Config, daemon: str) -> str:
    doc = msgspec.to_builtins(cfg)
    keys = SECTIONS.get(daemon)
    part = {k: v for k, v in doc.items() if (k in keys if keys is not None else k not in _NOT_CORE)}
    return hashlib.sha256(msgspec.json.encode(part)).hexdigest()


def request_restart(state_dir: str | Path, daemon: str) -> Path:
    d = Path(state_dir) / RESTART_DIR
    d.mkdir(exist_ok=True)
    p = d / daemon
    p.write_text(f"{time.time()}\n")
    return p


class ConfigWatch(threading.Thread):
    def __init__(self, path: str | Path, cfg: Config, daemon: str, stop: threading.Event, interval_s: float = 5.0):
        super().__init__(name=f"config-watch-{daemon}", daemon=True)
        self.path = Path(path)
        self.daemon_name = daemon
        self.stop_daemon = stop
        self.interval_s = interval_s
        self.state_dir = Path(cfg.device.state_dir)
        self.print = fingerprint(cfg, daemon)
        self.started_at = time.time()
        self.files = self._stat()
        self.reason = ""
        self.poke = threading.Event()           # SIGHUP (systemctl reload): look now

    def _stat(self) -> tuple:
        out = []
        for p in (self.path, self.state_dir / REMOTE_FILE):
            try:
                st = p.stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def check(self) -> str:
        """One look: the reason to restart, or ''."""
        req = self.state_dir / RESTART_DIR / self.daemon_name
        try:
            if req.stat().st_mtime >= self.started_at - 1:
                try:
                    os.unlink(req)
                except OSError:
                    pass
                return "a restart was requested"
        except OSError:
            pass
        files = self._stat()
        if files == self.files:
            return ""
        self.files = files
        from .load import load_config
        try:
            cfg = load_config(self.path)
        except ConfigError as exc:
            log.error("config: %s changed but does not validate; %s keeps running the config it has:\n%s",
                      self.path, self.daemon_name, exc.report())
            return ""
        new = fingerprint(cfg, self.daemon_name)
        if new == self.print:
            return ""
        return "its configuration changed"

    def reload(self) -> None:
        """SIGHUP (``systemctl reload``): read the configuration now instead of within
        ``interval_s``; a changed part restarts the daemon, an invalid file is said in the log."""
        self.files = ()                         # whatever the files' times say, read them
        self.poke.set()

    def run(self) -> None:
        while not self.stop_daemon.is_set():
            self.poke.wait(self.interval_s)
            self.poke.clear()
            if self.stop_daemon.is_set():
                return
            try:
                reason = self.check()
            except Exception:  # noqa: BLE001 - a watcher that dies would leave the daemon on an old config
                log.exception("config: the watcher failed; restarting %s to be safe", self.daemon_name)
                reason = "its config watcher failed"
            if reason:
                self.reason = reason
                log.warning("%s: %s: restarting to apply it", self.daemon_name, reason)
                self.stop_daemon.set()
                return
