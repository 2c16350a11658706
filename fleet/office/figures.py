"""The overview's figures from the office's tables: the §5 metrics of a scope and period
(the box's own :class:`Tally`, filled from sums), trends by hour of day and by day,
rankings of stores, points and employees."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from appliance.metrics import Tally
from appliance.point import TAGS
from appliance.records import TAG_BIT

BUCKET_MS = 15 * 60 * 1000
"""Trends are summed in SQL by quarter hour of UTC and folded into local hours and days in
Python: every time zone in use is a whole number of quarter hours from UTC."""


@dataclass(frozen=True)
class Scope:
    """What a figure covers: ``devices`` None = every device; else those ids (an empty tuple
    = none); a point (``device/point`` is a point of one box: both given) and an employee."""
    devices: tuple[str, ...] | None = None
    point: str | None = None
    owner: str | None = None

    def where(self, since_ms: int | None, until_ms: int | None, ph: str, table: str = "") -> tuple[str, list]:
        p = f"{table}." if table else ""
        sql, args = [], []
        if self.devices is not None:
            if not self.devices:
                return "1 = 0", []
            sql.append(f"{p}device IN ({','.join([ph] * len(self.devices))})")
            args.extend(self.devices)
        if self.point is not None:
            sql.append(f"{p}point = {ph}")
            args.append(self.point)
        if self.owner is not None:
            sql.append(f"{p}owner = {ph}")
            args.append(self.owner)
        if since_ms is not None:
            sql.append(f"{p}ts >= {ph}")
            args.append(since_ms)
        if until_ms is not None:
            sql.append(f"{p}ts < {ph}")
            args.append(until_ms)
        return " AND ".join(sql) or "1 = 1", args


def _i(x) -> int:
    return int(x or 0)


def _case(cond: str) -> str:
    return f"SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)"


TOP, NEGATIVE = _case("cls = 'top'"), _case("cls = 'negative'")
"""``cls`` is set on rated contacts only."""
_TAG_SUMS = ", ".join(_case(f"(tagbits & {TAG_BIT[t]}) <> 0") for t in TAGS)


def tally(db, ph: str, scope: Scope, since_ms: int | None, until_ms: int | None) -> Tally:
    """The period's counts exactly as the box counts them (:meth:`Tally.add_settled`)."""
    w, a = scope.where(since_ms, until_ms, ph)
    t = Tally()
    row = db.execute(
        f"SELECT COUNT(*), SUM(dur_ms), COUNT(rating), {TOP}, {NEGATIVE}, SUM(superseded),"
        f" SUM(CASE WHEN rating IS NOT NULL THEN happy END), COUNT(CASE WHEN rating IS NOT NULL THEN happy END),"
        f" {_TAG_SUMS} FROM office_contacts WHERE {w}", a).fetchone()
    t.contacts, t.length_ms, t.rated, top, neg, t.superseded, t.happy, t.happy_n = (_i(x) for x in row[:8])
    t.ratings, t.top, t.negative = t.rated, top, neg
    t.tags = Counter({tag: _i(n) for tag, n in zip(TAGS, row[8:], strict=True) if _i(n)})
    for value, n in db.execute(f"SELECT rating, COUNT(*) FROM office_contacts WHERE {w} AND rating IS NOT NULL"
                               " GROUP BY rating", a):
        t.distribution[int(value)] += _i(n)
    for status, value, cls, n, happy, happy_n in db.execute(
            f"SELECT status, value, cls, COUNT(*), SUM(happy), COUNT(happy) FROM office_ratings WHERE {w}"
            f" AND status IN ('orphan', 'misuse') GROUP BY status, value, cls", a):
        if status == "misuse":
            t.misuse += _i(n)
        else:
            t.orphan(int(value), cls, _i(n))
            t.happy += _i(happy)
            t.happy_n += _i(happy_n)
    row = db.execute(f"SELECT COUNT(*), SUM(cents), COUNT(cents), SUM(items), COUNT(items) FROM office_sales"
                     f" WHERE {w}", a).fetchone()
    t.receipts, t.cents, t.priced, t.items, t.counted_items = (_i(x) for x in row)
    row = db.execute(f"SELECT COUNT(*), COUNT(answered_ms), SUM(answered_ms), SUM(escalated), SUM(complaint)"
                     f" FROM office_calls WHERE {w}", a).fetchone()
    t.calls, t.answered, t.answered_ms, t.escalations, t.complaints = (_i(x) for x in row)
    if t.contacts:
        t.median = median_s(db, ph, w, a, t.contacts)
    return t


def median_s(db, ph: str, where: str, args: list, n: int) -> float:
    """The exact median length (as :func:`appliance.metrics.median_s`): the one or two
    middle lengths in order."""
    lo_i, hi_i = (n - 1) // 2, n // 2
    rows = [int(r[0]) for r in db.execute(f"SELECT dur_ms FROM office_contacts WHERE {where} ORDER BY dur_ms"
                                          f" LIMIT {ph} OFFSET {ph}", [*args, hi_i - lo_i + 1, lo_i])]
    return rows[0] / 1000 if n % 2 else (rows[0] / 1000 + rows[1] / 1000) / 2


@dataclass
class Trend:
    """Contacts, rated, top and negative ratings and receipts per local hour of day (0–23)
    and per local day (``YYYY-MM-DD``)."""
    by_hour: dict[int, list[int]] = field(default_factory=dict)
    by_day: dict[str, list[int]] = field(default_factory=dict)


def trends(db, ph: str, scope: Scope, since_ms: int, until_ms: int, tz: str) -> Trend:
    w, a = scope.where(since_ms, until_ms, ph)
    zone = ZoneInfo(tz)
    out = Trend()

    def fold(bucket: int, values: list[int]) -> None:
        d = datetime.fromtimestamp(bucket * BUCKET_MS / 1000, timezone.utc).astimezone(zone)
        for key, table in ((d.hour, out.by_hour), (d.strftime("%Y-%m-%d"), out.by_day)):
            acc = table.setdefault(key, [0] * 5)
            for i, x in enumerate(values):
                acc[i] += x
    for b, n, rated, top, neg in db.execute(
            f"SELECT ts / {BUCKET_MS}, COUNT(*), COUNT(rating), {TOP}, {NEGATIVE} FROM office_contacts WHERE {w}"
            f" GROUP BY ts / {BUCKET_MS}", a):
        fold(int(b), [_i(n), _i(rated), _i(top), _i(neg), 0])
    for b, n in db.execute(f"SELECT ts / {BUCKET_MS}, COUNT(*) FROM office_sales WHERE {w}"
                           f" GROUP BY ts / {BUCKET_MS}", a):
        fold(int(b), [0, 0, 0, 0, _i(n)])
    return out


@dataclass
class Rank:
    key: str
    label: str
    contacts: int
    rated: int
    top: int
    negative: int
    receipts: int

    def ratio(self, x: int) -> float | None:
        return x / self.contacts if self.contacts else None

    @property
    def csi(self) -> float | None:
        return self.ratio(self.top)

    @property
    def cdi(self) -> float | None:
        return self.ratio(self.negative)

    @property
    def response_rate(self) -> float | None:
        return self.ratio(self.rated)

    @property
    def conversion(self) -> float | None:
        return self.ratio(self.receipts)


def rankings(db, ph: str, scope: Scope, since_ms: int, until_ms: int, by: str,
             label_of=lambda device, point, owner: None) -> list[Rank]:
    """Contacts, ratings and receipts per store (``label_of`` maps a device to its store),
    point (``device/point``) or employee, best CSI first (ties: more contacts first).
    Receipts count as the orphans and misuse do not here: a ranking compares the contacts'
    own figures."""
    w, a = scope.where(since_ms, until_ms, ph)
    cols = {"store": "device", "point": "device, point", "owner": "owner"}[by]
    acc: dict[str, list[int]] = {}

    def key(row: tuple) -> str | None:
        if by == "store":
            return label_of(row[0], None, None)
        if by == "point":
            return f"{row[0]}/{row[1]}"
        return row[0]
    width = len(cols.split(","))
    for row in db.execute(f"SELECT {cols}, COUNT(*), COUNT(rating), {TOP}, {NEGATIVE}"
                          f" FROM office_contacts WHERE {w}"
                          f" GROUP BY {cols}", a):
        k = key(row)
        if k is None:
            continue
        s = acc.setdefault(k, [0, 0, 0, 0, 0])
        for i, x in enumerate(row[width:]):
            s[i] += _i(x)
    for row in db.execute(f"SELECT {cols}, COUNT(*) FROM office_sales WHERE {w} GROUP BY {cols}", a):
        k = key(row)
        if k is not None and k in acc:
            acc[k][4] += _i(row[width])
    ranks = [Rank(k, k, *v) for k, v in acc.items()]
    ranks.sort(key=lambda r: (-(r.csi or 0.0), -r.contacts, r.key))
    return ranks
