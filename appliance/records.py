"""The settled records' index: what reports, exports and windowed figures read (ARCHITECTURE
§2, §5).

The core writes each settled record (a contact, a settled rating, sale or call) to the journal
and, in the same transaction, one row of the ``records`` table: its kind, the time it counts
at (§4: a contact at its open time, the others at their own), point, owner and the few numbers
the metrics need (length, rating value, tags and class, amount, answer time). The table is
clustered by (kind, time), so a period's records of one kind are one contiguous range on
disk: a report reads that range only, streaming, and its time and memory do not grow with
the journal.

:func:`tally_groups` fills :class:`appliance.metrics.Tally` objects from those rows; the
metrics themselves are computed by ``Tally.result`` — one formula for the replay, the box and
the cloud. The median length is exact: the lengths are counted by whole second to find the
second the middle contact falls in, then that second's few rows are read in order.
"""
from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime, timedelta, timezone
from operator import itemgetter
from typing import Iterable, Iterator

from zoneinfo import ZoneInfo

from . import vocabulary as v
from .metrics import Period, Tally, cents
from .point import TAGS

KINDS = {v.CONTACT: 0, v.RATING_SETTLED: 1, v.SALE_SETTLED: 2, v.CALL_SETTLED: 3}
"""Record type -> ``records.kind``."""
CONTACT, RATING, SALE, CALL = 0, 1, 2, 3
CLASSES = (None, "negative", "neutral", "top")
"""Rating class -> its code in ``shape`` (bits 16 and up)."""
STATUSES = ("counted", "superseded", "orphan", "misuse")
"""A settled rating's status -> its code in ``shape`` (bits 0-15)."""
TAG_BIT = {tag: 1 << i for i, tag in enumerate(TAGS)}
CLASS_SHIFT = 16
COLUMNS = ("kind", "t", "seq", "point", "owner", "dur_ms", "value", "shape", "superseded", "cents", "answered_ms")


def columns(seq: int, type: str, point: str | None, t: int, owner: str | None, data: dict) -> tuple:
    """The index row of a settled record (``data``: the record's journalled fields)."""
    kind = KINDS[type]
    dur = value = superseded = amount = answered = None
    shape = 0
    if kind == CONTACT:
        dur = round(data["duration_s"] * 1000)
        value = data.get("rating")
        if value is not None:
            cls = data.get("rating_class") or _class_from_tags(data["tags"])
            shape |= CLASSES.index(cls) << CLASS_SHIFT
        for tag in data["tags"]:
            shape |= TAG_BIT[tag]
        superseded = len(data.get("superseded", ()))
    elif kind == RATING:
        value = data["value"]
        shape = STATUSES.index(data["status"]) | CLASSES.index(data["class"]) << CLASS_SHIFT
    elif kind == SALE:
        amount = cents(data.get("amount"))
    else:
        answered = None if data.get("answered_s") is None else round(data["answered_s"] * 1000)
    return (kind, t, seq, point, owner, dur, value, shape, superseded, amount, answered)


def _class_from_tags(tags: list[str]) -> str:
    return "top" if "positive" in tags else "negative" if "negative" in tags else "neutral"


INSERT = f"INSERT OR IGNORE INTO records({', '.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})"


# --- groups -----------------------------------------------------------------------------------

@dataclass
class Group:
    """The records one row of a report counts: time ranges [lo, hi) and an optional filter on
    point or owner (``where``: an SQL condition on ``records``, ``args`` its values)."""
    label: str
    ranges: list[tuple[int, int]] = field(default_factory=list)
    where: str = ""
    args: tuple = ()


def span(db: sqlite3.Connection, lo: int | None, hi: int | None) -> tuple[int, int] | None:
    """[lo, hi) narrowed to the records there are (None when there are none)."""
    first = last = None
    for kind in KINDS.values():
        a, b = db.execute("SELECT MIN(t), MAX(t) FROM records WHERE kind = ?", (kind,)).fetchone()
        if a is not None:
            first = a if first is None else min(first, a)
            last = b if last is None else max(last, b)
    if first is None:
        return None
    lo = first if lo is None else max(lo, first)
    hi = last + 1 if hi is None else min(hi, last + 1)
    return (lo, hi) if lo < hi else None


def period_groups(unit: str, tz: str, lo: int, hi: int) -> list[Group]:
    """One group per hour, day, week or month of the zone that [lo, hi) touches, clipped to
    it. A local hour that happens twice (the autumn change) is one group with two ranges."""
    zone = ZoneInfo(tz)
    label = Period(unit, tz)
    groups: dict[str, Group] = {}
    for a, b in _boundaries(unit, zone, lo, hi):
        a, b = max(a, lo), min(b, hi)
        if a < b:
            groups.setdefault(label(a), Group(label(a))).ranges.append((a, b))
    return list(groups.values())


def _boundaries(unit: str, zone: ZoneInfo, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    if unit == "hour":
        # every zone's offset is a multiple of 15 minutes: a local hour starts on a quarter
        step = 900_000
        label = Period("hour", zone.key)
        t = lo - lo % step
        start, cur = t, label(t)
        while t < hi:
            t += step
            nxt = label(t)
            if nxt != cur or t >= hi:
                yield start, t
                start, cur = t, nxt
        return
    d = datetime.fromtimestamp(lo / 1000, timezone.utc).astimezone(zone).date()
    if unit == "week":
        d -= timedelta(days=d.weekday())
    elif unit == "month":
        d = d.replace(day=1)
    elif unit != "day":
        raise ValueError(f"unknown period {unit!r}")
    start = _midnight(d, zone)
    while start < hi:
        d = _next(unit, d)
        end = _midnight(d, zone)
        yield start, end
        start = end


def _next(unit: str, d: date) -> date:
    if unit == "day":
        return d + timedelta(days=1)
    if unit == "week":
        return d + timedelta(days=7)
    return (d.replace(day=28) + timedelta(days=4)).replace(day=1)


def _midnight(d: date, zone: ZoneInfo) -> int:
    return int(datetime.combine(d, dtime(0), zone).timestamp() * 1000)


def column_groups(db: sqlite3.Connection, column: str, lo: int, hi: int, absent: str | None) -> list[Group]:
    """One group per distinct point or owner among the records of [lo, hi); ``absent`` labels
    the records with none (or leaves them out when None)."""
    assert column in ("point", "owner")
    seen: set = set()
    for kind in KINDS.values():
        seen.update(x for (x,) in db.execute(f"SELECT DISTINCT {column} FROM records WHERE kind = ? AND t >= ? "
                                             f"AND t < ?", (kind, lo, hi)))
    out = []
    for x in sorted(seen, key=lambda x: (x is None, x or "")):
        if x is None:
            if absent is not None:
                out.append(Group(absent, [(lo, hi)], f"{column} IS NULL"))
        else:
            out.append(Group(x, [(lo, hi)], f"{column} = ?", (x,)))
    return out


# --- tallies ----------------------------------------------------------------------------------

class Tallier:
    """Fills tallies from the records index: one pass per kind and group over its ranges."""

    def __init__(self, db: sqlite3.Connection, chunk: int = 20_000):
        self.db = db
        self.chunk = chunk

    def _rows(self, kind: int, g: Group, cols: str, extra: str = "", args: tuple = ()) -> Iterator[list]:
        where = " AND " + g.where if g.where else ""
        for lo, hi in g.ranges:
            cur = self.db.execute(f"SELECT {cols} FROM records WHERE kind = ? AND t >= ? AND t < ?{where}{extra}",
                                  (kind, lo, hi, *g.args, *args))
            while rows := cur.fetchmany(self.chunk):
                yield rows

    def tally(self, g: Group) -> tuple[Tally, Counter]:
        """The group's tally and its contacts' lengths counted by whole second."""
        t = Tally()
        seconds: Counter = Counter()
        shapes: Counter = Counter()
        for rows in self._rows(CONTACT, g, "value, shape, dur_ms / 1000"):
            shapes.update(map(itemgetter(0, 1), rows))
            seconds.update(map(itemgetter(2), rows))
        for rows in self._rows(CONTACT, g, "COUNT(*), TOTAL(dur_ms), TOTAL(superseded)"):
            (n, length, superseded), = rows
            t.contacts += n
            t.length_ms += int(length)
            t.superseded += int(superseded)
        for (value, shape), k in shapes.items():
            for tag, bit in TAG_BIT.items():
                if shape & bit:
                    t.tags[tag] += k
            if value is not None:
                t.rated += k
                t._rating(value, CLASSES[shape >> CLASS_SHIFT], k)
        for rows in self._rows(RATING, g, "value, shape", " AND (shape & 65535) >= ?", (STATUSES.index("orphan"),)):
            for (value, shape), k in Counter(rows).items():
                if STATUSES[shape & 0xFFFF] == "orphan":
                    t.orphan(value, CLASSES[shape >> CLASS_SHIFT], k)
                else:
                    t.misuse += k
        for rows in self._rows(SALE, g, "COUNT(*), TOTAL(cents)"):
            (n, amount), = rows
            t.receipts += n
            t.cents += int(amount)
        for rows in self._rows(CALL, g, "COUNT(*), COUNT(answered_ms), TOTAL(answered_ms)"):
            (n, answered, answered_ms), = rows
            t.calls += n
            t.answered += answered
            t.answered_ms += int(answered_ms)
        return t, seconds

    def median(self, g: Group, seconds: Counter, n: int) -> float | None:
        """The exact median length (as ``statistics.median`` of the lengths in seconds): the
        second holding each middle contact, then its rank inside that second."""
        if not n:
            return None
        ranks = sorted({(n - 1) // 2, n // 2})
        found = []
        for rank in ranks:
            below = 0
            for sec in sorted(seconds):
                if below + seconds[sec] > rank:
                    found.append(self._nth(g, sec, rank - below))
                    break
                below += seconds[sec]
        return found[0] / 1000 if len(found) == 1 else (found[0] / 1000 + found[1] / 1000) / 2

    def _nth(self, g: Group, sec: int, k: int) -> int:
        lengths = sorted(x for rows in self._rows(CONTACT, g, "dur_ms", " AND dur_ms >= ? AND dur_ms < ?",
                                                  (sec * 1000, sec * 1000 + 1000)) for (x,) in rows)
        return lengths[k]


def tally_groups(db: sqlite3.Connection, groups: Iterable[Group], total: Group | None = None,
                 partition: bool = True) -> tuple[dict[str, Tally], Tally | None]:
    """The tally of each group and of ``total``; when the groups partition ``total`` its
    counts are their sum (only its median is read again)."""
    tallier = Tallier(db)
    out: dict[str, Tally] = {}
    all_seconds: Counter = Counter()
    whole = Tally()
    for g in groups:
        t, seconds = tallier.tally(g)
        if t.empty():
            continue                        # a period without records has no row
        t.median = tallier.median(g, seconds, t.contacts)
        out[g.label] = t
        whole.merge(t)
        all_seconds.update(seconds)
    if total is None:
        return out, None
    if not partition:
        whole, all_seconds = tallier.tally(total)
    whole.median = tallier.median(total, all_seconds, whole.contacts)
    return out, whole


def report(db: sqlite3.Connection, by: str, tz: str, lo: int | None, hi: int | None,
           points: Iterable[str] = ()) -> dict[str, Tally]:
    """The tallies of a report by ``by`` (point, owner, hour, day, week, month) over [lo, hi),
    then a ``total`` row; every point in ``points`` has a row when grouped by point."""
    out: dict[str, Tally] = {}
    total: Tally | None = Tally()
    s = span(db, lo, hi)
    if s is not None:
        a, b = s
        partition = True
        if by == "point":
            groups = column_groups(db, "point", a, b, None)
            partition = not _has_pointless(db, a, b)
        elif by == "owner":
            groups = column_groups(db, "owner", a, b, "(nobody)")
        else:
            groups = period_groups(by, tz, a, b)
        out, total = tally_groups(db, groups, Group("total", [(a, b)]), partition)
    if by == "point":
        for pid in points:
            out.setdefault(pid, Tally())
    res = dict(sorted(out.items()))
    res["total"] = total or Tally()
    return res


def _has_pointless(db: sqlite3.Connection, lo: int, hi: int) -> bool:
    return any(db.execute("SELECT 1 FROM records WHERE kind = ? AND t >= ? AND t < ? AND point IS NULL LIMIT 1",
                          (k, lo, hi)).fetchone() for k in KINDS.values())
