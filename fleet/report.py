"""ARCHITECTURE §5 metrics across devices, from what the boxes synced: their core's
settled records (``contact``, ``rating_settled``, ``sale_settled``), so the cloud counts
exactly as each box did."""
from __future__ import annotations

import json
import sqlite3
import statistics


def fleet_metrics(db: sqlite3.Connection, by: str = "device") -> dict:
    groups: dict[str, dict] = {}

    def g(device: str, point: str | None) -> list[dict]:
        keys = ["overall"] + ([device] if by == "device" else [f"{device}/{point}"] if by == "point" else [])
        out = []
        for k in keys:
            out.append(groups.setdefault(k, {"durations": [], "rated": 0, "ratings": 0, "top": 0, "negative": 0,
                                             "orphans": 0, "misuse": 0, "receipts": 0}))
        return out
    rows = db.execute("SELECT device, type, point, data FROM records WHERE type IN "
                      "('contact', 'rating_settled', 'sale_settled') ORDER BY device, seq")
    for device, typ, point, data in rows:
        d = json.loads(data)
        for t in g(device, point):
            if typ == "contact":
                t["durations"].append(d["duration_s"])
                if d.get("rating") is not None:
                    t["rated"] += 1
                    t["ratings"] += 1
                    t["top"] += "positive" in d.get("tags", [])
                    t["negative"] += "negative" in d.get("tags", [])
            elif typ == "rating_settled":
                if d["status"] == "orphan":
                    t["orphans"] += 1
                    t["ratings"] += 1
                    t["top"] += d.get("class") == "top"
                    t["negative"] += d.get("class") == "negative"
                elif d["status"] == "misuse":
                    t["misuse"] += 1
            elif typ == "sale_settled":
                t["receipts"] += 1
    return {k: _result(v) for k, v in sorted(groups.items(), key=lambda kv: (kv[0] != "overall", kv[0]))}


def _result(t: dict) -> dict:
    n = len(t["durations"])

    def ratio(x: float) -> float | None:
        return x / n if n else None
    return {"contacts": n, "mean_duration_s": statistics.fmean(t["durations"]) if n else None,
            "median_duration_s": statistics.median(t["durations"]) if n else None,
            "ratings": t["ratings"], "top": t["top"], "negative": t["negative"], "orphan_ratings": t["orphans"],
            "misuse": t["misuse"], "response_rate": ratio(t["rated"]), "csi": ratio(t["top"]),
            "cdi": ratio(t["negative"]), "cci": ratio(t["ratings"] - t["top"]),
            "eli": ratio(t["top"] - t["negative"]), "receipts": t["receipts"], "conversion": ratio(t["receipts"])}
