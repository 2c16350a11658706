"""The update lock: an application update never restarts the daemons while a contact is open
(core) or a track is waiting to be cut (audio).

Each daemon holds a shared ``flock`` on ``<state_dir>/locks/<name>.lock`` while it is busy and
lets go when it is not; the updater asks for each lock exclusively without waiting. A daemon
that dies releases its lock with its file descriptors, so a crash never leaves the box
un-updatable, and nothing is written to the SD card on the way (the files exist once)."""
from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

REASONS = {"contact": "a contact is open", "clip": "a track is being cut"}


def lock_dir(state_dir: str | Path) -> Path:
    return Path(state_dir) / "locks"


class BusyFlag:
    """A daemon's side: ``set(True)`` when it becomes busy, ``set(False)`` when it is done
    (cheap when nothing changes: only transitions touch the lock)."""

    def __init__(self, state_dir: str | Path, name: str):
        self.path = lock_dir(state_dir) / f"{name}.lock"
        self.fd: int | None = None

    def set(self, busy: bool) -> None:
        if busy and self.fd is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
            except OSError as exc:            # never stops the daemon: the update waits less, nothing else
                log.warning("update lock %s: %s", self.path.name, exc.strerror or exc)
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:                   # an update is switching right now: it restarts us anyway
                os.close(fd)
                return
            self.fd = fd
        elif not busy and self.fd is not None:
            os.close(self.fd)                 # closing releases the lock
            self.fd = None

    def close(self) -> None:
        self.set(False)


def holders(state_dir: str | Path) -> list[str]:
    """The updater's side: what holds the lock now (empty: the daemons may be restarted)."""
    busy = []
    for p in sorted(lock_dir(state_dir).glob("*.lock")):
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            busy.append(REASONS.get(p.stem, p.stem))
        finally:
            os.close(fd)
    return busy
