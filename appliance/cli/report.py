"""``appliancectl report`` and ``export ratings``: metrics and the rating log from the
live journal, computed by the same pipeline as the live core."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, time as dtime
from zoneinfo import ZoneInfo

from ..config.schema import Config
from ..metrics import METRIC_KEYS, Period, Tally, tally
from ..timefmt import iso_ms, parse_ts
from .ui import JSON_C1, Style, num, pct, printable, table

GROUPINGS = ("point", "owner", "day", "hour", "week", "month")
TABLE_COLUMNS = [("contacts", "contacts", str), ("mean_duration_s", "mean s", num),
                 ("response_rate", "response", pct), ("csi", "CSI", pct), ("cdi", "CDI", pct),
                 ("cci", "CCI", pct), ("eli", "ELI", pct), ("orphan_ratings", "orphans", str),
                 ("misuse", "misuse", str), ("receipts", "receipts", str), ("conversion", "conv.", pct)]


def parse_bound(value: str | None, tz: str) -> int | None:
    """A --from/--to value: ISO date (midnight in the configured zone) or ISO time."""
    if not value:
        return None
    try:
        if len(value) == 10:
            d = datetime.fromisoformat(value).date()
            return int(datetime.combine(d, dtime(0), ZoneInfo(tz)).timestamp() * 1000)
        return parse_ts(value if value[-1] == "Z" or "+" in value[10:] else value + "Z")
    except ValueError:
        raise ValueError(f"not a date or time: {value!r} (use 2026-11-20 or 2026-11-20T09:00:00Z)") from None


def grouped(cfg: Config, records: list, by: str, lo: int | None, hi: int | None) -> dict[str, dict]:
    if by == "point":
        key = lambda p, t, o: p  # noqa: E731
    elif by == "owner":
        key = lambda p, t, o: o if o is not None else "(nobody)"  # noqa: E731
    else:
        period = Period(by, cfg.time.timezone)
        key = lambda p, t, o: period(t)  # noqa: E731
    groups = tally(records, key, (lo, hi))
    if by == "point":
        for pid in cfg.points:
            groups.setdefault(pid, Tally())
    out = {k: v.result() for k, v in sorted(groups.items())}
    total = tally(records, lambda p, t, o: "total", (lo, hi)).get("total", Tally())
    out["total"] = total.result()
    return out


def render(groups: dict[str, dict], by: str, fmt: str, style: Style) -> str:
    if fmt == "json":
        return json.dumps(groups, indent=2, ensure_ascii=False).translate(JSON_C1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([by, *METRIC_KEYS])
        for k, m in groups.items():
            w.writerow([k, *("" if m[c] is None else m[c] for c in METRIC_KEYS)])
        return buf.getvalue().rstrip("\n")
    rows = []
    for k, m in groups.items():
        label = style(k, "bold") if k == "total" else printable(k)
        rows.append([label] + [f(m[c]) for c, _, f in TABLE_COLUMNS])
    headers = [by] + [h for _, h, _ in TABLE_COLUMNS]
    return table(headers, rows, style, [False] + [True] * len(TABLE_COLUMNS))


def rating_log_csv(records: list) -> str:
    """The seed products' rating log: date-time, remote, button, point, owner; then
    value, class and what became of the press (counted, superseded, orphan, misuse)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["datetime", "remote", "button", "point", "owner", "value", "class", "status"])
    ratings = sorted((r for k, r in records if k == "rating"), key=lambda r: (r.t, r.order))
    for r in ratings:
        w.writerow([iso_ms(r.t), r.remote or "", "" if r.button is None else r.button, r.point,
                    r.owner or "", r.value, r.cls, r.status])
    return buf.getvalue()
