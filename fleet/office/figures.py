"""The overview's figures from the office's tables: the §5 metrics of a scope and period
(the box's own :class:`Tally`, filled from sums), trends by hour of day and by day,
rankings of stores, points and employees."""
from __future__ import annotations

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


@dataclass
class Rank:
    key: str                              # the store, device/point or employee
    contacts: int = 0
    rated: int = 0
    top: int = 0
    negative: int = 0
    receipts: int = 0

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


@dataclass
class Overview:
    """A period's :class:`Tally` and its rankings, read in one pass over each table."""
    tally: Tally
    ranks: dict[str, list[Rank]]          # store, point, owner: best CSI first


def _own_store(device: str) -> str | None:
    return device


def overview(db, ph: str, scope: Scope, since_ms: int | None, until_ms: int | None,
             store_of=_own_store) -> Overview:
    """The period's counts exactly as the box counts them (:meth:`Tally.add_settled`), and
    contacts, ratings and receipts per store (``store_of`` maps a device to its store's
    name), point (``device/point``) and employee. Each table is read once, grouped by
    (device, point, owner, …): a few thousand groups whatever the period's length."""
    w, a = scope.where(since_ms, until_ms, ph)
    t = Tally()
    ranks: dict[str, dict[str, Rank]] = {"store": {}, "point": {}, "owner": {}}

    def keys(device: str, point: str | None, owner: str | None):
        return (("store", store_of(device)), ("point", f"{device}/{point}"), ("owner", owner))
    for row in db.execute(
            f"SELECT device, point, owner, rating, cls, COUNT(*), SUM(dur_ms), SUM(superseded), SUM(happy),"
            f" COUNT(happy), {_TAG_SUMS} FROM office_contacts WHERE {w}"
            f" GROUP BY device, point, owner, rating, cls", a):
        device, point, owner, rating, cls = row[:5]
        n, length, superseded, happy, happy_n = (_i(x) for x in row[5:10])
        t.contacts += n
        t.length_ms += length
        t.superseded += superseded
        for tag, k in zip(TAGS, row[10:], strict=True):
            if _i(k):
                t.tags[tag] += _i(k)
        if rating is not None:
            t.rated += n
            t._rating(int(rating), cls, n)
            t.happy += happy
            t.happy_n += happy_n
        for kind, key in keys(device, point, owner):
            if key is None:
                continue
            r = ranks[kind].get(key) or ranks[kind].setdefault(key, Rank(key))
            r.contacts += n
            if rating is not None:
                r.rated += n
                r.top += n if cls == "top" else 0
                r.negative += n if cls == "negative" else 0
    for status, value, cls, n, happy, happy_n in db.execute(
            f"SELECT status, value, cls, COUNT(*), SUM(happy), COUNT(happy) FROM office_ratings WHERE {w}"
            f" AND status IN ('orphan', 'misuse') GROUP BY status, value, cls", a):
        if status == "misuse":
            t.misuse += _i(n)
        else:
            t.orphan(int(value), cls, _i(n))
            t.happy += _i(happy)
            t.happy_n += _i(happy_n)
    for device, point, owner, n, cents, priced, items, counted in db.execute(
            f"SELECT device, point, owner, COUNT(*), SUM(cents), COUNT(cents), SUM(items), COUNT(items)"
            f" FROM office_sales WHERE {w} GROUP BY device, point, owner", a):
        t.receipts += _i(n)
        t.cents += _i(cents)
        t.priced += _i(priced)
        t.items += _i(items)
        t.counted_items += _i(counted)
        for kind, key in keys(device, point, owner):
            r = ranks[kind].get(key)
            if r is not None:          # a ranking compares contacts' own figures: receipts where there were contacts
                r.receipts += _i(n)
    row = db.execute(f"SELECT COUNT(*), COUNT(answered_ms), SUM(answered_ms), SUM(escalated), SUM(complaint)"
                     f" FROM office_calls WHERE {w}", a).fetchone()
    t.calls, t.answered, t.answered_ms, t.escalations, t.complaints = (_i(x) for x in row)
    if t.contacts:
        t.median = median_s(db, ph, w, a, t.contacts)
    ordered = {}
    for kind, found in ranks.items():
        ordered[kind] = sorted(found.values(), key=lambda r: (-(r.csi or 0.0), -r.contacts, r.key))
    return Overview(t, ordered)


def tally(db, ph: str, scope: Scope, since_ms: int | None, until_ms: int | None) -> Tally:
    return overview(db, ph, scope, since_ms, until_ms).tally


MEDIAN_BUCKET_MS = 1000


def median_s(db, ph: str, where: str, args: list, n: int) -> float:
    """The exact median length (as :func:`appliance.metrics.median_s`): the lengths counted by
    the second (one grouped pass, a few hundred rows), then the one or two middle lengths read
    in order from the second(s) that hold them — a sort of a few hundred rows, not of the
    period."""
    lo_i, hi_i = (n - 1) // 2, n // 2
    hist = sorted((int(b), _i(c)) for b, c in db.execute(
        f"SELECT dur_ms / {MEDIAN_BUCKET_MS}, COUNT(*) FROM office_contacts WHERE {where}"
        f" GROUP BY dur_ms / {MEDIAN_BUCKET_MS}", args))
    seen, first, before, last = 0, None, 0, None
    for b, c in hist:
        if first is None and seen + c > lo_i:
            first, before = b, seen
        seen += c
        if seen > hi_i:
            last = b
            break
    rows = [int(r[0]) for r in db.execute(
        f"SELECT dur_ms FROM office_contacts WHERE {where} AND dur_ms >= {ph} AND dur_ms < {ph}"
        f" ORDER BY dur_ms LIMIT {ph} OFFSET {ph}",
        [*args, first * MEDIAN_BUCKET_MS, (last + 1) * MEDIAN_BUCKET_MS, hi_i - lo_i + 1, lo_i - before])]
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
