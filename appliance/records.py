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
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta, timezone
from operator import itemgetter
from typing import Iterable, Iterator

from zoneinfo import ZoneInfo

from . import vocabulary as v
from .metrics import Period, Tally, cents, class_from_tags, happy_units
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
ESCALATED, COMPLAINT = 1, 2
"""A call's ``shape`` bits."""
COLUMNS = ("kind", "t", "seq", "point", "owner", "dur_ms", "value", "shape", "superseded", "cents", "answered_ms",
           "happy")


def columns(seq: int, type: str, point: str | None, t: int, owner: str | None, data: dict) -> tuple:
    """The index row of a settled record (``data``: the record's journalled fields)."""
    kind = KINDS[type]
    dur = value = superseded = amount = answered = happy = None
    shape = 0
    if kind == CONTACT:
        dur = round(data["duration_s"] * 1000)
        value = data.get("rating")
        if value is not None:
            cls = data.get("rating_class") or class_from_tags(data["tags"])
            shape |= CLASSES.index(cls) << CLASS_SHIFT
        for tag in data["tags"]:
            shape |= TAG_BIT[tag]
        superseded = len(data.get("superseded", ()))
        happy = happy_units(data.get("happy"))
    elif kind == RATING:
        value = data["value"]
        shape = STATUSES.index(data["status"]) | CLASSES.index(data["class"]) << CLASS_SHIFT
        happy = happy_units(data.get("happy"))
    elif kind == SALE:
        amount = None if data.get("amount") is None else cents(data["amount"])
        value = data.get("items")
    else:
        answered = None if data.get("answered_s") is None else round(data["answered_s"] * 1000)
        shape = ESCALATED * bool(data.get("escalated")) | COMPLAINT * bool(data.get("complaint"))
    return (kind, t, seq, point, owner, dur, value, shape, superseded, amount, answered, happy)


INSERT = f"INSERT OR IGNORE INTO records({', '.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})"


# --- scans ------------------------------------------------------------------------------------

@dataclass
class Scan:
    """Records read in one pass: time ranges [lo, hi), an optional filter (``where``, an SQL
    condition with ``args``) and the label each row counts under (``label``: an SQL
    expression — a quoted constant for a period, the point or the owner column)."""
    ranges: list[tuple[int, int]]
    label: str = "'total'"
    where: str = ""
    args: tuple = ()

    @property
    def constant(self) -> bool:
        return self.label.startswith("'")


def span(db: sqlite3.Connection, lo: int | None, hi: int | None) -> tuple[int, int] | None:
    """[lo, hi) narrowed to the records there are (None when there are none)."""
    first = last = None
    for kind in KINDS.values():
        # one aggregate a query: SQLite answers MIN or MAX alone from the index's end
        a = db.execute("SELECT MIN(t) FROM records WHERE kind = ?", (kind,)).fetchone()[0]
        b = db.execute("SELECT MAX(t) FROM records WHERE kind = ?", (kind,)).fetchone()[0]
        if a is not None:
            first = a if first is None else min(first, a)
            last = b if last is None else max(last, b)
    if first is None:
        return None
    lo = first if lo is None else max(lo, first)
    hi = last + 1 if hi is None else min(hi, last + 1)
    return (lo, hi) if lo < hi else None


def period_scans(unit: str, tz: str, lo: int, hi: int) -> list[Scan]:
    """One scan per hour, day, week or month of the zone that [lo, hi) touches, clipped to
    it. A local hour that happens twice (the autumn change) is one scan with two ranges."""
    zone = ZoneInfo(tz)
    label = Period(unit, tz)
    scans: dict[str, Scan] = {}
    for a, b in _boundaries(unit, zone, lo, hi):
        a, b = max(a, lo), min(b, hi)
        if a < b:
            name = label(a)
            scans.setdefault(name, Scan([], _quote(name))).ranges.append((a, b))
    return list(scans.values())


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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


# --- tallies ----------------------------------------------------------------------------------

class Tallier:
    """Fills tallies from the records index. Per scan: one pass over its contacts, whose
    small tuples are counted in C (``Counter``) — lengths by whole second and by remainder,
    so sums stay exact and memory stays bounded — one aggregate query per other kind, and
    one pass that reads only the contacts in the seconds holding the medians."""

    def __init__(self, db: sqlite3.Connection, chunk: int = 20_000):
        self.db = db
        self.chunk = chunk

    def _rows(self, kind: int, scan: Scan, cols: str, extra: str = "", args: tuple = (),
              group: str = "") -> Iterator[list]:
        where = " AND " + scan.where if scan.where else ""
        for lo, hi in scan.ranges:
            cur = self.db.execute(f"SELECT {cols} FROM records WHERE kind = ? AND t >= ? AND t < ?{where}{extra}"
                                  f"{group}", (kind, lo, hi, *scan.args, *args))
            while rows := cur.fetchmany(self.chunk):
                yield rows

    def tally(self, scan: Scan) -> tuple[dict[str, Tally], dict[str, Counter]]:
        """The tallies of a scan's labels (medians set) and their lengths by whole second."""
        out: dict[str, Tally] = {}

        def tally(label: str) -> Tally:
            t = out.get(label)
            if t is None:
                t = out[label] = Tally()
            return t
        lab = scan.label
        shapes: Counter = Counter()
        secs: Counter = Counter()
        seconds: dict[str, Counter] = {}
        if scan.constant:
            # one label: the sums come from one aggregate pass, the fetch carries three columns
            label = scan.label.strip("'").replace("''", "'")
            for rows in self._rows(CONTACT, scan, "value, shape, dur_ms / 1000"):
                shapes.update(map(itemgetter(0, 1), rows))
                secs.update(map(itemgetter(2), rows))
            for rows in self._rows(CONTACT, scan, "COUNT(*), TOTAL(dur_ms), TOTAL(superseded)"):
                (n, length, superseded), = rows
                if n:
                    t = tally(label)
                    t.length_ms += int(length)
                    t.superseded += int(superseded)
            shapes = Counter({(label, value, shape, 0): k for (value, shape), k in shapes.items()})
            if secs:
                seconds[label] = secs
        else:
            rems: Counter = Counter()
            for rows in self._rows(CONTACT, scan, f"{lab}, value, shape, superseded, dur_ms / 1000, dur_ms % 1000"):
                shapes.update(map(itemgetter(0, 1, 2, 3), rows))
                secs.update(map(itemgetter(0, 4), rows))
                rems.update(map(itemgetter(0, 5), rows))
            for (label, sec), k in secs.items():
                tally(label).length_ms += sec * 1000 * k
                seconds.setdefault(label, Counter())[sec] = k
            for (label, rem), k in rems.items():
                tally(label).length_ms += rem * k
        for (label, value, shape, superseded), k in shapes.items():
            t = tally(label)
            t.contacts += k
            t.superseded += (superseded or 0) * k
            for tag, bit in TAG_BIT.items():
                if shape & bit:
                    t.tags[tag] += k
            if value is not None:
                t.rated += k
                t._rating(value, CLASSES[shape >> CLASS_SHIFT], k)
        group = "" if scan.constant else " GROUP BY 1"
        for rows in self._rows(RATING, scan, f"{lab}, value, shape, COUNT(*)", " AND (shape & 65535) >= ?",
                               (STATUSES.index("orphan"),), " GROUP BY 2, 3" if scan.constant else " GROUP BY 1, 2, 3"):
            for label, value, shape, k in rows:
                if not k:
                    continue
                if STATUSES[shape & 0xFFFF] == "orphan":
                    tally(label).orphan(value, CLASSES[shape >> CLASS_SHIFT], k)
                else:
                    tally(label).misuse += k
        orphan = STATUSES.index("orphan")
        for kind, extra, args in ((CONTACT, "", ()), (RATING, " AND (shape & 65535) = ?", (orphan,))):
            for rows in self._rows(kind, scan, f"{lab}, COUNT(happy), TOTAL(happy)", extra, args, group):
                for label, n, happy in rows:
                    if n:
                        t = tally(label)
                        t.happy_n += n
                        t.happy += int(happy)
        for rows in self._rows(SALE, scan, f"{lab}, COUNT(*), TOTAL(cents), COUNT(cents), TOTAL(value), COUNT(value)",
                               group=group):
            for label, n, amount, priced, items, counted_items in rows:
                if n:
                    t = tally(label)
                    t.receipts += n
                    t.cents += int(amount)
                    t.priced += priced
                    t.items += int(items)
                    t.counted_items += counted_items
        for rows in self._rows(CALL, scan, f"{lab}, COUNT(*), COUNT(answered_ms), TOTAL(answered_ms), "
                                           "TOTAL(shape & 1), TOTAL((shape & 2) / 2)", group=group):
            for label, n, answered, answered_ms, escalated, complaints in rows:
                if n:
                    t = tally(label)
                    t.calls += n
                    t.answered += answered
                    t.answered_ms += int(answered_ms)
                    t.escalations += int(escalated)
                    t.complaints += int(complaints)
        for label, median in self.medians(scan, {k: (seconds[k], out[k].contacts) for k in seconds}).items():
            out[label].median = median
        return out, seconds

    def medians(self, scan: Scan, lengths: dict[str, tuple[Counter, int]]) -> dict[str, float]:
        """The exact median length of each label (as ``statistics.median`` of the lengths in
        seconds): the second holding each middle contact, from the counts by second, then one
        pass over the contacts of those seconds only for their rank inside them."""
        wanted: dict[tuple[str, int], set[int]] = {}      # (label, second) -> ranks inside it
        picks: dict[str, list[tuple[int, int]]] = {}      # label -> (second, rank inside) per middle
        for label, (secs, n) in lengths.items():
            if not n:
                continue
            for rank in sorted({(n - 1) // 2, n // 2}):
                below = 0
                for sec in sorted(secs):
                    if below + secs[sec] > rank:
                        wanted.setdefault((label, sec), set()).add(rank - below)
                        picks.setdefault(label, []).append((sec, rank - below))
                        break
                    below += secs[sec]
        if not wanted:
            return {}
        found: dict[tuple[str, int], list[int]] = {}
        candidates = sorted({sec for _, sec in wanted})
        marks = ",".join("?" * len(candidates))
        for rows in self._rows(CONTACT, scan, f"{scan.label}, dur_ms", f" AND dur_ms / 1000 IN ({marks})",
                               tuple(candidates)):
            for label, dur in rows:
                key = (label, dur // 1000)
                if key in wanted:
                    found.setdefault(key, []).append(dur)
        out = {}
        for label, middle in picks.items():
            ms = [sorted(found[(label, sec)])[k] for sec, k in middle]
            out[label] = ms[0] / 1000 if len(ms) == 1 else (ms[0] / 1000 + ms[1] / 1000) / 2
        return out


def tally_scans(db: sqlite3.Connection, scans: Iterable[Scan], total: Scan | None = None,
                partition: bool = True) -> tuple[dict[str, Tally], Tally | None]:
    """The tally of every label of the scans and of ``total``; when the scans partition
    ``total`` its counts are their sum (only its median is read again)."""
    tallier = Tallier(db)
    out: dict[str, Tally] = {}
    seconds: Counter = Counter()
    for scan in scans:
        tallies, secs = tallier.tally(scan)
        for label, t in tallies.items():
            if label in out:                # cannot happen: a label is one scan's
                raise ValueError(f"label {label!r} in two scans")
            out[label] = t
        for c in secs.values():
            seconds.update(c)
    if total is None:
        return out, None
    if partition:
        whole = Tally()
        for t in out.values():
            whole.merge(t)
    else:
        tallies, secs = tallier.tally(total)
        whole = tallies.get("total", Tally())
        seconds = secs.get("total", Counter())
    whole.median = tallier.medians(total, {"total": (seconds, whole.contacts)}).get("total")
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
            scans = [Scan([(a, b)], "point")]
            partition = not _has_pointless(db, a, b)
        elif by == "owner":
            scans = [Scan([(a, b)], "COALESCE(owner, '(nobody)')")]
        else:
            scans = period_scans(by, tz, a, b)
        out, total = tally_scans(db, scans, Scan([(a, b)]), partition)
        out.pop(None, None)                 # records without a point: in the total only
    if by == "point":
        for pid in points:
            out.setdefault(pid, Tally())
    res = dict(sorted(out.items()))
    res["total"] = total or Tally()
    return res


def _has_pointless(db: sqlite3.Connection, lo: int, hi: int) -> bool:
    return any(db.execute("SELECT 1 FROM records WHERE kind = ? AND t >= ? AND t < ? AND point IS NULL LIMIT 1",
                          (k, lo, hi)).fetchone() for k in KINDS.values())


def rating_log(db: sqlite3.Connection, lo: int | None, hi: int | None) -> Iterator[tuple]:
    """(point, t, owner, value, class, status, remote, button, remote key present, press ref)
    of the settled ratings counting in [lo, hi), in time order, streamed."""
    cur = db.execute("SELECT r.point, r.t, r.owner, r.value, r.shape, json_extract(e.data, '$.remote'), "
                     "json_extract(e.data, '$.button'), json_type(e.data, '$.remote'), json_extract(e.data, '$.rating')"
                     " FROM records r JOIN events e ON e.seq = r.seq WHERE r.kind = ? AND r.t >= ? AND r.t < ?"
                     " ORDER BY r.t, r.seq", (RATING, -(1 << 62) if lo is None else lo, (1 << 62) if hi is None else hi))
    while rows := cur.fetchmany(2000):
        for point, t, owner, value, shape, remote, button, has_remote, ref in rows:
            yield (point, t, owner, value, CLASSES[shape >> CLASS_SHIFT], STATUSES[shape & 0xFFFF], remote, button,
                   has_remote, ref)
