"""``appliancectl report`` and ``export ratings``: metrics and the rating log from the core's
settled records in the journal, read by their index for the period asked (one formula:
``appliance.metrics``); the same report from replayed records is the oracle tests hold it to."""
from __future__ import annotations

import csv
import io
import json

from datetime import datetime, time as dtime
from zoneinfo import ZoneInfo

from ..config.schema import Config
from .. import records
from ..metrics import METRIC_KEYS, Period, Tally, tally
from ..timefmt import iso_ms, parse_ts
from .ui import JSON_C1, Style, num, pct, printable, table

GROUPINGS = ("point", "owner", "day", "hour", "week", "month")
TABLE_COLUMNS = [("contacts", "contacts", str), ("mean_duration_s", "mean s", num),
                 ("response_rate", "response", pct), ("csi", "CSI", pct), ("cdi", "CDI", pct),
                 ("cci", "CCI", pct), ("eli", "ELI", pct), ("orphan_ratings", "orphans", str),
                 ("misuse", "misuse", str), ("receipts", "receipts", str), ("conversion", "conv.", pct),
                 ("avg_receipt", "avg rcpt", lambda x: num(x, 2)), ("happy_index", "happy", lambda x: num(x, 0)),
                 ("calls", "calls", str), ("call_escalations", "escal.", str)]


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


def group_key(cfg: Config, by: str):
    """key(point, time, owner) -> the row label of a report by ``by``."""
    if by == "point":
        return lambda p, t, o: p
    if by == "owner":
        return lambda p, t, o: o if o is not None else "(nobody)"
    period = Period(by, cfg.time.timezone)
    return lambda p, t, o: period(t)


def grouped_journal(cfg: Config, journal, by: str, lo: int | None, hi: int | None) -> dict[str, dict]:
    """A report from the records index of the period only (``appliance.records``): its time
    and memory do not grow with the journal."""
    tallies = records.report(journal.db, by, cfg.time.timezone, lo, hi, cfg.points)
    return {k: t.result() for k, t in tallies.items()}


def grouped(cfg: Config, records: list, by: str, lo: int | None, hi: int | None) -> dict[str, dict]:
    """The same report from pipeline records (a replay: the oracle the journal's report equals)."""
    key = group_key(cfg, by)
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


RATING_LOG_HEADER = ["datetime", "remote", "button", "point", "owner", "value", "class", "status"]


def rating_log_rows(journal, lo: int | None = None, hi: int | None = None):
    """The rating log from the core's settled ratings, in time order, streamed: value, class
    and status from the records index, remote and button from the record (JSON read by
    SQLite); records settled before they carried the remote look up the press."""
    for point, t, owner, value, cls, status, remote, button, has_remote, ref in records.rating_log(journal.db, lo, hi):
        if has_remote is None:                      # settled before the record carried them
            press = journal.by_id(ref)
            if press is not None:
                remote, button = press.data.get("remote"), press.data.get("button")
        yield [iso_ms(t), remote or "", "" if button is None else button, point, owner or "", value, cls, status]


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
