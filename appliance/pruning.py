"""Journal retention on the box (ARCHITECTURE §2, §10): a box runs for years on an SD card.

Raw events older than ``[journal] keep_raw_days`` and the core's settled records older than
``keep_days`` are deleted in small batches (each its own short transaction, with a pause
between: the POS API and the radio keep their latency), never an event the core has not
taken and, when sync is on, never one the cloud has not acknowledged. When free space falls
under the headroom, raw events are kept one day only. Clip events stay while their clip's
audio may still be on disk. The space goes back to the file system (incremental vacuum), the
WAL is truncated, and every pruning is journalled (a ``pruned`` event: what, how many)."""
from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass

from . import vocabulary as v
from .config.schema import Config
from .journal import RECORD_TYPES, Journal
from .timefmt import iso_ms

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
KEEP_ON_LOW_SPACE_MS = DAY_MS
CLIP_TYPES = (v.CLIP, v.CLIP_TAGS, v.CLIP_ACKED, v.CLIP_DELETED)


@dataclass(frozen=True)
class Plan:
    """What may go: raw events before ``raw_before``, clip events before ``clips_before``,
    settled records before ``records_before`` — and nothing after seq ``max_seq``."""
    raw_before: int
    clips_before: int
    records_before: int
    max_seq: int


def plan(cfg: Config, now_ms: int, core_cursor: int, sync_cursor: int | None, low_space: bool) -> Plan:
    """Pure: the cut-offs for now."""
    keep_raw = KEEP_ON_LOW_SPACE_MS if low_space else round(cfg.journal.keep_raw_days * DAY_MS)
    max_seq = core_cursor if sync_cursor is None else min(core_cursor, sync_cursor)
    clip_keep = max(keep_raw, round((cfg.retention.max_age_days + 1) * DAY_MS))
    return Plan(now_ms - keep_raw, now_ms - clip_keep, now_ms - round(cfg.journal.keep_days * DAY_MS), max_seq)


def low_on_space(cfg: Config) -> bool:
    headroom = cfg.retention.headroom_s * cfg.audio.bitrate_kbps * 125
    try:
        return shutil.disk_usage(cfg.device.state_dir).free < headroom
    except OSError:
        return False


def prune(cfg: Config, journal: Journal, now_ms: int, *, batch: int = 1000, pause_s: float = 0.02,
          max_batches: int | None = None, stop: threading.Event | None = None,
          low_space: bool | None = None) -> dict:
    """One pruning pass (at most ``max_batches`` deleting transactions: the core daemon runs it every
    minute in its loop). Returns counts; journals them when anything went."""
    sync_cursor = journal.cursor("sync") if cfg.sync.broker else None
    p = plan(cfg, now_ms, journal.cursor("core"), sync_cursor,
             low_on_space(cfg) if low_space is None else low_space)
    raw_types = tuple(t for t in v.PAYLOADS if t not in RECORD_TYPES and t not in CLIP_TYPES)
    kinds = [("raw", [("events", t) for t in raw_types], p.raw_before),
             ("clips", [("events", t) for t in CLIP_TYPES], p.clips_before),
             ("records", [("records", k) for k in (0, 1, 2, 3)], p.records_before)]
    counts = {"raw": 0, "clips": 0, "records": 0}
    left = max_batches if max_batches is not None else 1 << 62
    cache = journal.db.execute("PRAGMA cache_size").fetchone()[0]
    journal.db.execute("PRAGMA cache_size=-16384")     # 16 MB while deleting: the indexes' pages stay in
    try:
        _prune(journal, kinds, p, counts, left, batch, pause_s, now_ms, stop)
    finally:
        journal.db.execute(f"PRAGMA cache_size={cache}")
    if any(counts.values()):
        journal.give_back_space()
        log.info("journal: pruned %d raw events, %d clip events, %d settled records", counts["raw"], counts["clips"],
                 counts["records"])
    return counts


OLDEST = {
    "events": "SELECT seq, ts FROM events WHERE type = ? AND seq <= ? ORDER BY seq LIMIT ?",
    "records": "SELECT seq, t FROM records WHERE kind = ? AND seq <= ? ORDER BY t LIMIT ?",
}
"""The oldest rows of one type, each by an index in (nearly) time order: a batch reads only
what it may delete plus one row, however much is kept after it."""


def _candidates(db, table: str, what: object, max_seq: int, before: int, batch: int) -> list[int]:
    """The oldest rows of one type up to the first one still kept (their times rise with seq,
    but for late events: one of those waits until the row before it goes)."""
    out = []
    for seq, t in db.execute(OLDEST[table], (what, max_seq, batch)):
        if t >= before:
            break
        out.append(seq)
    return out


def _prune(journal: Journal, kinds: list, p: Plan, counts: dict, left: int, batch: int, pause_s: float,
           now_ms: int, stop: threading.Event | None) -> None:
    for name, sources, before in kinds:
        for table, what in sources:
            while left > 0 and not (stop and stop.is_set()):
                with journal.transaction() as db:
                    seqs = _candidates(db, table, what, p.max_seq, before, batch)
                    if not seqs:
                        break
                    left -= 1
                    marks = ",".join("?" * len(seqs))
                    db.execute(f"DELETE FROM records WHERE seq IN ({marks})", seqs)
                    db.execute(f"DELETE FROM events WHERE seq IN ({marks})", seqs)
                    journal._insert(v.Pruned(kind=name, count=len(seqs), first_seq=min(seqs), last_seq=max(seqs),
                                             before=iso_ms(before)).as_event(now_ms, None, "core"))
                counts[name] += len(seqs)           # what went is journalled in the same transaction
                if len(seqs) < batch:
                    break
                time.sleep(pause_s)                 # the other writers' turn
