"""A scheduled report's content (operational reports, ARCHITECTURE §5): for the period, by
point and by owner — contacts, response rate, CSI, CDI, conversion — the worst hour (the
highest share of negative ratings among hours with contacts) and the negative contacts. Read
from the records index when the report is routed, so the message in the outbox is complete;
its chart is drawn when it is sent."""
from __future__ import annotations

import json
from typing import Callable

from .. import records
from ..config.schema import Config
from ..journal import Journal
from ..routing import Message
from ..timefmt import iso_ms, parse_ts

FIGURES = ("contacts", "response_rate", "csi", "cdi", "conversion", "ratings", "negative", "receipts")
MAX_LISTED = 50


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _line(name: str, m: dict) -> str:
    return (f"{name}: {m['contacts']} contacts, response {_pct(m['response_rate'])}, CSI {_pct(m['csi'])}, "
            f"CDI {_pct(m['cdi'])}, conversion {_pct(m['conversion'])}")


def negative_contacts(journal: Journal, lo: int, hi: int, limit: int = MAX_LISTED) -> list[dict]:
    bit = records.TAG_BIT["negative"]
    rows = journal.db.execute("SELECT e.data FROM records r JOIN events e ON e.seq = r.seq WHERE r.kind = 0 AND "
                              "r.t >= ? AND r.t < ? AND (r.shape & ?) != 0 ORDER BY r.t LIMIT ?", (lo, hi, bit, limit))
    out = []
    for (data,) in rows:
        d = json.loads(data)
        out.append({"id": d["contact"], "point": d["point"], "opened": d["opened"], "owner": d["owner"],
                    "rating": d["rating"], "duration_s": d["duration_s"]})
    return out


def build(cfg: Config, journal: Journal, lo: int, hi: int) -> dict:
    tz = cfg.time.timezone
    points = records.report(journal.db, "point", tz, lo, hi, cfg.points)
    owners = records.report(journal.db, "owner", tz, lo, hi)
    hours = records.report(journal.db, "hour", tz, lo, hi)
    hours.pop("total", None)
    hour_figs = {k: t.result() for k, t in hours.items()}
    rated = [(m["negative"] / m["ratings"], k) for k, m in hour_figs.items() if m["ratings"]]
    top = max(rated, key=lambda x: x[0]) if rated else None        # the earliest of equals
    worst = top[1] if top and top[0] > 0 else None
    return {
        "points": {k: {f: t.result()[f] for f in FIGURES} for k, t in points.items()},
        "owners": {k: {f: t.result()[f] for f in FIGURES} for k, t in owners.items() if k != "total"},
        "hours": [[k, m["contacts"], m["negative"]] for k, m in hour_figs.items()],
        "worst_hour": worst,
        "negative_contacts": negative_contacts(journal, lo, hi),
    }


def extender(cfg: Config, journal: Journal) -> Callable[[Message], Message]:
    """Fills a ``report`` message (title, lines, body) when it is routed."""
    def extend(msg: Message) -> Message:
        if msg.kind != "report":
            return msg
        r = dict(msg.body["report"])
        lo, hi = parse_ts(r["start"]), parse_ts(r["end"])
        content = build(cfg, journal, lo, hi)
        r.update(content)
        lines = [f"period: {iso_ms(lo)} – {iso_ms(hi)}"]
        lines += [_line(k, m) for k, m in content["points"].items()]
        lines += [_line(k, m) for k, m in content["owners"].items()]
        if content["worst_hour"]:
            lines.append(f"worst hour: {content['worst_hour']}")
        for c in content["negative_contacts"]:
            lines.append(f"negative: {c['opened']} {c['point']} {c['owner'] or ''} rating {c['rating']} "
                         f"(contact {c['id']})")
        msg.lines = lines
        msg.body = {**msg.body, "report": r}
        return msg
    return extend
