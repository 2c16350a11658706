"""``appliancectl rebuild``: derive the core's records again, after a config change (a
rating scale fixed, a grace window changed) or to derive what was imported while the core
was not running.

The settled records (``contact``, ``rating_settled``, ``sale_settled``, ``call_settled``)
counting from the given day on are deleted with their index rows, and the core stage is
reset to replay the journal from its start in one transaction; then the stage runs to the
current time. Earlier records are derived again too but their keys are already there, so
only the deleted range is written anew (with the same ids: derived ids come from the keys).
Killed half-way, it is finished by running it again or by starting ``appliance-core``: the
stage goes on from its cursor. The rebuild is journalled (a ``rebuild`` event: range, counts).
"""
from __future__ import annotations

import os
from typing import Callable

from . import vocabulary as v
from .config.schema import Config
from .core import STAGE, CoreStage
from .errors import ApplianceError
from .daemon import daemon_alive
from .journal import Journal
from .timefmt import iso_ms, parse_ts


class RawPruned(ApplianceError, ValueError):
    """The range asked for reaches back past what retention kept of the raw events."""


class CoreRunning(ApplianceError, RuntimeError):
    """appliance-core is running: it must be stopped first."""


def core_is_running(journal: Journal) -> bool:
    """The process that last committed the core stage (it commits once at start, then on
    every change) is another one and still runs ``appliancectl run core``."""
    stage = next((s for s in journal.stages() if s["name"] == STAGE), None)
    if stage is None:
        return False
    pid = stage["info"].get("pid")
    return pid != os.getpid() and daemon_alive(pid, "core")


def rebuild(cfg: Config, journal: Journal, since_ms: int | None, now_ms: int,
            progress: Callable[[int, int], None] = lambda done, total: None) -> dict:
    """Delete the settled records from ``since_ms`` on (all without it) and derive again up
    to ``now_ms``. Returns counts."""
    if core_is_running(journal):
        raise CoreRunning("appliance-core is running: stop it first "
                          "(systemctl stop appliance-core), rebuild, start it again")
    lo = -(1 << 62) if since_ms is None else since_ms
    row = journal.db.execute("SELECT MAX(json_extract(data, '$.before')) FROM events WHERE type = ? AND "
                             "json_extract(data, '$.kind') = 'raw'", (v.PRUNED,)).fetchone()
    if row[0] is not None and lo < parse_ts(row[0]):
        raise RawPruned(f"raw events before {row[0]} were pruned (journal retention), so records before then "
                        f"cannot be derived again: use --from {row[0][:10]} or later")
    with journal.transaction() as db:
        doomed = db.execute("SELECT seq FROM records WHERE kind IN (0, 1, 2, 3) AND t >= ?", (lo,)).fetchall()
        seqs = [s for (s,) in doomed]
        for i in range(0, len(seqs), 500):
            chunk = seqs[i:i + 500]
            marks = ",".join("?" * len(chunk))
            db.execute(f"DELETE FROM records WHERE seq IN ({marks})", chunk)
            db.execute(f"DELETE FROM events WHERE seq IN ({marks})", chunk)
        db.execute("UPDATE stages SET cursor = 0, state = NULL WHERE name = ?", (STAGE,))
    stage = CoreStage(cfg, journal)
    total = journal.last_seq()
    before = journal.count()
    while True:
        stage.step(now_ms)
        cursor = journal.cursor(STAGE)
        progress(cursor, total)
        if cursor >= journal.last_seq():           # every event taken (held ones wait for their time)
            break
    derived = journal.count() - before
    summary = {"from": iso_ms(since_ms) if since_ms is not None else None, "deleted": len(seqs), "derived": derived}
    journal.append(v.Rebuild(since=summary["from"], deleted=len(seqs), derived=derived).as_event(now_ms, None, "cli"))
    return summary
