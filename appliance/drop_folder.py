"""A watched folder for tills that can only write files.

The till writes ``*.jsonl`` (the events format, ``sale`` and ``staff`` lines) into
``[pos] drop_dir``. A file is followed by offset: each scan reads what was appended since
the last one (at most ``READ_CHUNK`` bytes, so memory stays bounded whatever the file's
size) and journals its complete lines; a file that has not changed for ``settle_s`` is
finished: its last line is taken even without a newline, and it moves to ``done/`` (or to
``rejected/`` when some lines were bad, with ``<name>.errors.txt`` listing them by line
number) under a name no other file has. A line that is bad fails alone: the others are
journalled. Idempotency keys from the file name, the line number and the line's content
make a crash between a commit and the move, or a restart that reads the file again,
harmless.

What the folder holds is untrusted (ARCHITECTURE §11): only regular files are opened
(``O_NOFOLLOW``, checked with ``fstat``); a symlink, a device or anything that cannot be
read is moved aside into ``rejected/`` so the next start is clean; event times must lie in
the box's time window; no line can stop the core.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .config.schema import Config
from .errors import EventError
from .events import MAX_LINE, decode_line
from .journal import Journal, NewEvent
from .limits import FIXED, TimeWindow

log = logging.getLogger(__name__)

ACCEPTED_TYPES = ("sale", "staff")
READ_CHUNK = 1024 * 1024
SUFFIXES = (".jsonl", ".json")


@dataclass
class Followed:
    """A file being read: where the next line starts and when it last changed."""
    offset: int = 0
    line: int = 0                   # lines taken so far
    size: int = -1
    mtime_ns: int = -1
    changed_at: float = 0.0         # monotonic time its size or mtime last changed
    bad: int = 0
    events: int = 0
    skipping: bool = False          # inside an over-long line: drop bytes up to its newline


class DropFolder:
    def __init__(self, cfg: Config, journal: Journal, directory: str | Path, settle_s: float = 2.0,
                 window: Callable[[], TimeWindow] = lambda: FIXED):
        self.cfg = cfg
        self.journal = journal
        self.dir = Path(directory)
        self.settle_s = settle_s
        self.window = window
        self.files: dict[str, Followed] = {}
        for sub in ("done", "rejected"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    # --- the scan -------------------------------------------------------------------------

    def scan(self, now: float | None = None) -> dict[str, int]:
        """Take what the files hold now. Never raises: a file that cannot be handled is
        moved aside. Returns counts: files finished, events journalled, lines rejected."""
        now = time.monotonic() if now is None else now
        counts = {"files": 0, "events": 0, "rejected": 0}
        try:
            names = sorted(os.listdir(self.dir))
        except OSError as exc:
            log.error("POS drop folder %s cannot be read: %s", self.dir, exc)
            return counts
        for name in names:
            if name.startswith(".") or not name.endswith(SUFFIXES):
                continue
            try:
                self._take(name, now, counts)
            except Exception as exc:  # noqa: BLE001 - one file fails alone, the core goes on
                log.error("POS drop file %s could not be processed (%s); moved aside", name, exc)
                self.files.pop(name, None)
                self._move_aside(name, f"could not be processed: {exc}")
                counts["rejected"] += 1
        gone = set(self.files) - set(names)
        for name in gone:
            self.files.pop(name, None)
        return counts

    def _take(self, name: str, now: float, counts: dict[str, int]) -> None:
        path = self.dir / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._move_aside(name, "a symbolic link: only regular files are taken")
                counts["rejected"] += 1
                return
            if exc.errno == errno.ENOENT:
                return
            raise
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                f.close()
                self._move_aside(name, "not a regular file")
                counts["rejected"] += 1
                return
            fol = self.files.get(name)
            if fol is None:                        # first seen by this process: read from the start
                fol = self.files[name] = Followed(changed_at=now)
                (self.dir / "rejected" / f".{name}.errors.partial").unlink(missing_ok=True)
            if (st.st_size, st.st_mtime_ns) != (fol.size, fol.mtime_ns):
                fol.size, fol.mtime_ns, fol.changed_at = st.st_size, st.st_mtime_ns, now
            if st.st_size < fol.offset:          # truncated or replaced: start over (keys dedupe)
                fol.offset = fol.line = 0
            settled = now - fol.changed_at >= self.settle_s
            while True:
                f.seek(fol.offset)
                data = f.read(READ_CHUNK)
                taken = self._lines(name, fol, data, settled and len(data) < READ_CHUNK, counts)
                fol.offset += taken
                if len(data) < READ_CHUNK or taken == 0:
                    break
        if settled and fol.offset >= fol.size:
            self._finish(name, fol)
            counts["files"] += 1

    def _lines(self, name: str, fol: Followed, data: bytes, final: bool, counts: dict[str, int]) -> int:
        """Journal the complete lines of ``data`` (and a last line without newline when the
        file is finished). Returns the bytes consumed."""
        consumed = 0
        events: list[NewEvent] = []
        errors: list[tuple[int, str]] = []
        window = self.window()
        while consumed < len(data):
            nl = data.find(b"\n", consumed)
            if nl < 0:
                if not final and len(data) - consumed <= MAX_LINE:
                    break                           # a line still being written
                end, nxt = len(data), len(data)
            else:
                end, nxt = nl, nl + 1
            line = data[consumed:end]
            consumed = nxt
            if fol.skipping:                        # the tail of an over-long line
                fol.skipping = nl < 0
                continue
            fol.line += 1
            if nl < 0 and len(line) > MAX_LINE:
                fol.skipping = True
            if not line.strip() or line.lstrip().startswith(b"#"):
                continue
            try:
                ev = decode_line(line, self.cfg, window)
                if ev.type not in ACCEPTED_TYPES:
                    raise EventError(f"{ev.type} events are not taken from the POS drop folder "
                                     f"(only {', '.join(ACCEPTED_TYPES)})")
            except EventError as exc:
                errors.append((fol.line, exc.message))
                continue
            digest = hashlib.blake2b(line, digest_size=8).hexdigest()
            ev.source = "pos-drop"
            ev.key = ev.key or f"pos-drop:{name}:{fol.line}:{digest}"
            events.append(ev)
        if events:
            new = sum(1 for s in self.journal.append_many(events) if s is not None)
            fol.events += new
            counts["events"] += new
        if errors:
            fol.bad += len(errors)
            counts["rejected"] += len(errors)
            with open(self.dir / "rejected" / f".{name}.errors.partial", "a", encoding="utf-8") as out:
                out.writelines(f"{name}:{n}: {msg}\n" for n, msg in errors)
            log.warning("POS drop file %s: %d bad line(s), first line %d: %s", name, len(errors), *errors[0])
        return consumed

    def tidy(self, keep_days: float, now_wall: float | None = None) -> int:
        """Archived files (``done/``, ``rejected/``) older than ``keep_days`` go: the folder
        does not grow with uptime (their events are in the journal). Returns files removed."""
        cutoff = (time.time() if now_wall is None else now_wall) - keep_days * 86400
        removed = 0
        for sub in ("done", "rejected"):
            for entry in os.scandir(self.dir / sub):
                try:
                    if not entry.name.startswith(".") and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except OSError:
                    continue
        return removed

    # --- archiving -------------------------------------------------------------------------

    def _unique(self, sub: str, name: str) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        stem, dot, ext = name.rpartition(".")
        for n in range(1000):
            candidate = self.dir / sub / f"{stem}.{stamp}{f'-{n}' if n else ''}{dot}{ext}"
            if not candidate.exists() and not candidate.is_symlink():
                return candidate
        raise OSError(f"no free archive name for {name} in {sub}/")

    def _finish(self, name: str, fol: Followed) -> None:
        partial = self.dir / "rejected" / f".{name}.errors.partial"
        if fol.bad:
            target = self._unique("rejected", name)
            os.replace(self.dir / name, target)
            os.replace(partial, target.with_name(target.name + ".errors.txt"))
            log.warning("POS drop file %s: %d events journalled, %d bad line(s) listed in %s", name, fol.events,
                        fol.bad, target.name + ".errors.txt")
        else:
            target = self._unique("done", name)
            os.replace(self.dir / name, target)
            log.info("POS drop file %s: %d events journalled", name, fol.events)
        self.files.pop(name, None)

    def _move_aside(self, name: str, why: str) -> None:
        """A file that cannot be taken goes to rejected/ (a link itself, never its target)."""
        try:
            target = self._unique("rejected", name)
            os.replace(self.dir / name, target)
            (target.with_name(target.name + ".errors.txt")).write_text(f"{name}: {why}\n", encoding="utf-8")
            log.warning("POS drop file %s moved aside: %s", name, why)
        except OSError as exc:
            log.error("POS drop file %s could not be moved aside: %s", name, exc)
