"""Cloud-side clip retention: a clip older than the maximum age (counted from its
recording, or from its arrival when the box's clip record is not here) is deleted — the
file, then its row — and every deletion is written to the audit log."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .accounts import Accounts
from .db import Database

log = logging.getLogger(__name__)

BATCH = 500


def prune_clips(db: Database, accounts: Accounts, clips_dir: str | Path, max_age_days: float, now_s: float) -> int:
    """Delete the clips past ``max_age_days``; returns how many."""
    cutoff = int((now_s - max_age_days * 86400) * 1000)
    root = Path(clips_dir).resolve()
    n = 0
    while True:
        rows = db.execute(
            "SELECT k.device, k.id, k.file, COALESCE(o.start_ms, k.received) FROM clips k"
            " LEFT JOIN office_clips o ON o.device = k.device AND o.clip = k.id"
            " WHERE COALESCE(o.start_ms, k.received) < ? LIMIT ?", (cutoff, BATCH)).fetchall()
        if not rows:
            return n
        for device, clip, file, _ in rows:
            path = Path(file)
            try:
                if path.resolve().is_relative_to(root):
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("office: clip %s/%s: cannot delete %s: %s", device, clip, path, exc)
                return n
            db.execute("DELETE FROM clips WHERE device = ? AND id = ?", (device, clip))
            accounts.audit("retention", "delete", device, clip, f"older than {max_age_days:g} days")
            n += 1
