"""A watched folder for tills that can only write files.

The till writes ``*.jsonl`` (the events format, ``sale`` and ``staff`` lines) into
``pos.drop_dir``, ideally under a temporary name and renamed when complete; files younger
than ``settle_s`` are left for the next scan. A file is validated whole: if any line is
bad it moves to ``rejected/`` with a ``.errors.txt`` beside it and nothing is journalled;
otherwise all its events are appended in one transaction and it moves to ``done/``.
Keys derived from the file's content make a crash between commit and move harmless.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from .config.schema import Config
from .events import load_file
from .journal import Journal

log = logging.getLogger(__name__)

ACCEPTED_TYPES = ("sale", "staff")


class DropFolder:
    def __init__(self, cfg: Config, journal: Journal, directory: str | Path, settle_s: float = 2.0):
        self.cfg = cfg
        self.journal = journal
        self.dir = Path(directory)
        self.settle_s = settle_s
        for sub in ("done", "rejected"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    def scan(self) -> dict[str, int]:
        """Take every settled file once. Returns counts: files, events, rejected."""
        counts = {"files": 0, "events": 0, "rejected": 0}
        now = time.time()
        for path in sorted(self.dir.iterdir()):
            if not path.is_file() or path.name.startswith(".") or path.suffix not in (".jsonl", ".json"):
                continue
            if now - path.stat().st_mtime < self.settle_s:
                continue
            counts["files"] += 1
            events, errors = load_file(str(path), self.cfg, source="pos-drop")
            for ev in events:
                if ev.type not in ACCEPTED_TYPES:
                    errors.append((0, f"{ev.type} events are not taken from the POS drop folder "
                                      f"(only {', '.join(ACCEPTED_TYPES)})"))
                    break
            if errors:
                counts["rejected"] += 1
                report = errors.report(path.name) + "\n"
                (self.dir / "rejected" / f"{path.name}.errors.txt").write_text(report, encoding="utf-8")
                os.replace(path, self.dir / "rejected" / path.name)
                log.warning("POS drop file %s rejected:\n%s", path.name, report.rstrip())
                continue
            seqs = self.journal.append_many(events)
            new = sum(1 for s in seqs if s is not None)
            counts["events"] += new
            os.replace(path, self.dir / "done" / path.name)
            log.info("POS drop file %s: %d events journalled (%d already there)",
                     path.name, new, len(events) - new)
        return counts
