"""ARCHITECTURE §5 metrics across devices, from what the boxes synced: their core's
settled records (``contact``, ``rating_settled``, ``sale_settled``, ``call_settled``),
counted by the box's own formula (``appliance.metrics``), so the cloud counts exactly as
each box did."""
from __future__ import annotations

import json
import logging
import sqlite3

import msgspec

from appliance.metrics import SETTLED, Tally

log = logging.getLogger(__name__)


def fleet_metrics(db: sqlite3.Connection, by: str = "device") -> dict:
    """``by``: device, point (``device/point``) or overall only."""
    groups: dict[str, Tally] = {}
    types = list(SETTLED)
    rows = db.execute(f"SELECT device, type, point, data FROM records WHERE type IN ({','.join('?' * len(types))})"
                      " ORDER BY device, seq", types)
    for device, typ, point, data in rows:
        try:
            rec = msgspec.convert(json.loads(data), SETTLED[typ])
        except (ValueError, RecursionError, msgspec.ValidationError) as exc:
            log.warning("report: skipped a %s record of %s: %s", typ, device, exc)
            continue
        keys = ["overall"] + ([device] if by == "device" else [f"{device}/{point}"] if by == "point" else [])
        for k in keys:
            groups.setdefault(k, Tally()).add_settled(rec)
    return {k: t.result() for k, t in sorted(groups.items(), key=lambda kv: (kv[0] != "overall", kv[0]))}
