"""ARCHITECTURE §5 metrics across devices, from what the boxes synced: their core's
settled records (``contact``, ``rating_settled``, ``sale_settled``, ``call_settled``),
counted by the box's own formula (``appliance.metrics``), so the cloud counts exactly as
each box did."""
from __future__ import annotations

import json
import logging
import sqlite3
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec

from appliance.metrics import SETTLED, Tally

log = logging.getLogger(__name__)


BY = ("device", "point", "owner", "day", "week", "month", "none")


def period_key(ts_ms: int, by: str, tz: ZoneInfo) -> str:
    d = datetime.fromtimestamp(ts_ms / 1000, tz)
    if by == "day":
        return d.strftime("%Y-%m-%d")
    if by == "week":
        y, w, _ = d.isocalendar()
        return f"{y}-W{w:02d}"
    return d.strftime("%Y-%m")


def fleet_metrics(db: sqlite3.Connection, by: str = "device", since_ms: int | None = None,
                  until_ms: int | None = None, tz: str = "UTC", ph: str = "?",
                  devices: list[str] | None = None) -> dict:
    """``by``: device, point (``device/point``), owner (the employee, fleet-wide), day, week,
    month (in ``tz``) or overall only; records with ``since_ms <= ts < until_ms``, of
    ``devices`` only when given (a store's or a group's)."""
    zone = ZoneInfo(tz)
    groups: dict[str, Tally] = {"overall": Tally()}       # an empty period still has its (zero) overall
    types = list(SETTLED)
    where, params = [f"type IN ({','.join([ph] * len(types))})"], list(types)
    if devices is not None:
        where.append(f"device IN ({','.join([ph] * len(devices))})" if devices else "1 = 0")
        params.extend(devices)
    if since_ms is not None:
        where.append(f"ts >= {ph}")
        params.append(since_ms)
    if until_ms is not None:
        where.append(f"ts < {ph}")
        params.append(until_ms)
    rows = db.execute(f"SELECT device, type, point, ts, data FROM records WHERE {' AND '.join(where)}"
                      " ORDER BY device, seq", params)
    for device, typ, point, ts, data in rows:
        try:
            rec = msgspec.convert(json.loads(data), SETTLED[typ])
        except (ValueError, RecursionError, msgspec.ValidationError) as exc:
            log.warning("report: skipped a %s record of %s: %s", typ, device, exc)
            continue
        keys = ["overall"]
        if by == "device":
            keys.append(device)
        elif by == "point":
            keys.append(f"{device}/{point}")
        elif by == "owner":
            keys.append(getattr(rec, "owner", None) or "(no owner)")
        elif by in ("day", "week", "month"):
            keys.append(period_key(ts, by, zone))
        for k in keys:
            groups.setdefault(k, Tally()).add_settled(rec)
    return {k: t.result() for k, t in sorted(groups.items(), key=lambda kv: (kv[0] != "overall", kv[0]))}
