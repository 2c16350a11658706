"""The settled records' index: what reports, exports and windowed figures read (ARCHITECTURE
§2, §5).

The core writes each settled record (a contact, a settled rating, sale or call) to the journal
and, in the same transaction, one row of the ``records`` table: its kind, the time it counts
at (§4: a contact at its open time, the others at their own), point, owner and the few numbers
the metrics need (length, rating value, tags and class, amount, answer time). The table is
clustered by (kind, time), so a period's records of one kind are one contiguous range on
disk: a report reads that range only, streaming, and its time and memory do not grow with
the journal.

:class:`Tallier` fills :class:`appliance.metrics.Tally` objects from those rows; the metrics
themselves are computed by ``Tally.result`` — one formula for the replay, the box and the
cloud. A long period's contacts are counted key by key in two partial indexes (by length
bucket; by tags and rating), so the work is one seek per key plus a count over index entries,
never a sort of the period's rows. The median length is exact: the contacts are counted by
bucket of 10 s to find the bucket the middle contact falls in, then one ordered query over
that bucket's rows gives its rank inside.
"""
from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta, timezone
from typing import Any, Iterable, Iterator
from zoneinfo import ZoneInfo

import msgspec

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

BUCKET = "dur_ms / 10000"
"""A contact's length bucket of 10 s, written exactly as the ``records_len`` index's expression
(journal._m6: SQLite uses the index only for the same text): the median's bucket from the
counts, then its rank inside that bucket from the rows there only."""
KEYS = {"records_len": (CONTACT, (BUCKET, "point", "owner")),
        "records_shape": (CONTACT, ("shape", "value", "point", "owner")),
        "records_sale": (SALE, ("point", "owner"))}
"""The partial indexes read key by key (journal._m6): index -> (kind, its key columns);
each key's entries are ordered by time after those."""
MAX_MERGED = 400
"""At most this many index ranges merged in one median query (SQLite's compound limit is 500)."""
KEYED_ABOVE = 50
"""A scan reads its contacts key by key through the indexes (one seek per length bucket and
per tag/rating combination, however many rows) when it holds more than this many rows per
key; fewer rows are grouped directly."""


class Tallier:
    """Fills tallies from the records index. Per scan, the contacts come from two partial
    indexes (``records_len``: length bucket, time; ``records_shape``: tags and rating, time),
    read key by key, so a long period costs one seek per key plus a count over index entries
    in C — or, for a short period, from one grouped query over its rows; the other kinds from
    one aggregate query each; the medians from one query each, over the contacts of the
    length bucket that holds the middle only."""

    def __init__(self, db: sqlite3.Connection, chunk: int = 20_000, keyed_above: float | None = None):
        self.db = db
        self.chunk = chunk
        self.keyed_above = KEYED_ABOVE if keyed_above is None else keyed_above
        self._keys: dict[str, list[tuple]] = {}
        self._counted: dict[tuple, int] = {}            # ranges -> contacts in them

    def _rows(self, kind: int, scan: Scan, cols: str, extra: str = "", args: tuple = (),
              group: str = "", index: str = "") -> Iterator[list]:
        where = " AND " + scan.where if scan.where else ""
        kind_test = f"kind = {kind}" if index else "kind = ?"
        kargs = () if index else (kind,)
        for lo, hi in scan.ranges:
            cur = self.db.execute(f"SELECT {cols} FROM records{index} WHERE {kind_test}{extra} AND t >= ? AND t < ?"
                                  f"{where}{group}", (*kargs, *args, lo, hi, *scan.args))
            while rows := cur.fetchmany(self.chunk):
                yield rows

    def keys(self, index: str) -> list[tuple]:
        """Every distinct key of one of :data:`KEYS`' indexes in the whole journal, found by a
        skip scan (one seek a key), cached for the report."""
        if index not in self._keys:
            kind, cols = KEYS[index]
            self._keys[index] = list(self._distinct(index, kind, cols, ()))
        return self._keys[index]

    def _distinct(self, index: str, kind: int, cols: tuple[str, ...], prefix: tuple) -> Iterator[tuple]:
        col, rest = cols[len(prefix)], len(cols) - len(prefix) - 1
        q = (f"SELECT {col} FROM records INDEXED BY {index} WHERE kind = {kind}"
             + "".join(f" AND {c} IS ?" for c in cols[:len(prefix)]))
        row = self.db.execute(f"{q} ORDER BY {col} LIMIT 1", prefix).fetchone()
        if row is not None and row[0] is None:                  # NULL sorts first
            yield from self._distinct(index, kind, cols, (*prefix, None)) if rest else [(*prefix, None)]
            row = self.db.execute(f"{q} AND {col} IS NOT NULL ORDER BY {col} LIMIT 1", prefix).fetchone()
        while row is not None:
            yield from self._distinct(index, kind, cols, (*prefix, row[0])) if rest else [(*prefix, row[0])]
            row = self.db.execute(f"{q} AND {col} > ? ORDER BY {col} LIMIT 1", (*prefix, row[0])).fetchone()

    def _keyed(self, index: str, scan: Scan, cols: str) -> Iterator[tuple[tuple, list]]:
        """(key, rows) per key of ``index``: the scan's label and ``cols`` summed over the
        key's index entries in the scan's ranges. A key's records share their point and owner,
        so its label is one value and no rows are grouped (sorted)."""
        kind, names = KEYS[index]
        test = "".join(f" AND {c} IS ?" for c in names)
        for key in self.keys(index):
            for rows in self._rows(kind, scan, f"{scan.label}, {cols}", test, key, index=f" INDEXED BY {index}"):
                yield key, rows

    def _few(self, scan: Scan) -> bool | None:
        """Whether the scan holds few enough contacts to group them directly and find their
        median in the table (None: none at all); else they are read key by key."""
        spans = tuple(scan.ranges)
        if spans not in self._counted:
            self._counted[spans] = sum(self.db.execute("SELECT COUNT(*) FROM records WHERE kind = 0 AND t >= ? AND "
                                                       "t < ?", (lo, hi)).fetchone()[0] for lo, hi in spans)
        rows = self._counted[spans]
        if not rows:
            return None
        return rows <= self.keyed_above * (len(self.keys("records_len")) + len(self.keys("records_shape")))

    def _contacts(self, scan: Scan, tally, lengths: dict[str, Counter]) -> None:
        lab = scan.label
        few = self._few(scan)
        if few is None:
            return
        if few:
            # few rows: one grouped pass
            for chunk in self._rows(CONTACT, scan, f"{lab}, {BUCKET}, shape, value, COUNT(*), TOTAL(dur_ms), "
                                    "TOTAL(superseded), COUNT(happy), TOTAL(happy)",
                                    group=" GROUP BY 1, 2, 3, 4"):
                for label, bucket, shape, value, k, length, superseded, happy_n, happy in chunk:
                    self._bucket(tally(label), lengths, label, bucket, k, length)
                    self._combo(tally(label), shape, value, k, superseded, happy_n, happy)
            return
        for (bucket, *_), chunk in self._keyed("records_len", scan, "COUNT(*), TOTAL(dur_ms)"):
            for label, k, length in chunk:
                if k:
                    self._bucket(tally(label), lengths, label, bucket, k, length)
        for (shape, value, *_), chunk in self._keyed("records_shape", scan,
                                                     "COUNT(*), TOTAL(superseded), COUNT(happy), TOTAL(happy)"):
            for label, k, superseded, happy_n, happy in chunk:
                if k:
                    self._combo(tally(label), shape, value, k, superseded, happy_n, happy)

    @staticmethod
    def _bucket(t: Tally, lengths: dict[str, Counter], label: str, bucket: int, k: int, length: float) -> None:
        t.contacts += k
        t.length_ms += int(length)
        lengths.setdefault(label, Counter())[bucket] += k

    @staticmethod
    def _combo(t: Tally, shape: int, value: int | None, k: int, superseded: float, happy_n: int,
               happy: float) -> None:
        t.superseded += int(superseded)
        for tag, bit in TAG_BIT.items():
            if shape & bit:
                t.tags[tag] += k
        if value is not None:
            t.rated += k
            t._rating(value, CLASSES[shape >> CLASS_SHIFT], k)
        t.happy_n += happy_n
        t.happy += int(happy)

    def tally(self, scan: Scan) -> tuple[dict[str, Tally], dict[str, Counter]]:
        """The tallies of a scan's labels (medians set) and their contacts by length bucket."""
        out: dict[str, Tally] = {}

        def tally(label: str) -> Tally:
            t = out.get(label)
            if t is None:
                t = out[label] = Tally()
            return t
        lab = scan.label
        lengths: dict[str, Counter] = {}
        self._contacts(scan, tally, lengths)
        group = "" if scan.constant else " GROUP BY 1"
        assert STATUSES.index("orphan") == 2 and STATUSES.index("misuse") == 3   # records_odd: status >= 2
        for rows in self._rows(RATING, scan, f"{lab}, value, shape, COUNT(*), COUNT(happy), TOTAL(happy)",
                               " AND (shape & 65535) >= 2", (),
                               " GROUP BY 2, 3" if scan.constant else " GROUP BY 1, 2, 3", " INDEXED BY records_odd"):
            for label, value, shape, k, happy_n, happy in rows:
                if not k:
                    continue
                if STATUSES[shape & 0xFFFF] == "orphan":
                    t = tally(label)
                    t.orphan(value, CLASSES[shape >> CLASS_SHIFT], k)
                    t.happy_n += happy_n
                    t.happy += int(happy)
                else:
                    tally(label).misuse += k
        for _, rows in self._keyed("records_sale", scan, "COUNT(*), TOTAL(cents), COUNT(cents), TOTAL(value), "
                                   "COUNT(value)"):
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
        for label, median in self.medians(scan, {k: (lengths[k], out[k].contacts) for k in lengths}).items():
            out[label].median = median
        return out, lengths

    def medians(self, scan: Scan, lengths: dict[str, tuple[Counter, int]]) -> dict[str, float]:
        """The exact median length of each label (as ``statistics.median`` of the lengths in
        seconds): the bucket holding each middle contact, from the counts by bucket, then its
        rank inside that bucket from one ordered query over the period's contacts of that
        bucket: read in the table for a short period, in the bucket's index entries for a long
        one."""
        out = {}
        ranges = " OR ".join("(t >= ? AND t < ?)" for _ in scan.ranges)
        bounds = tuple(x for r in scan.ranges for x in r)
        where = " AND " + scan.where if scan.where else ""
        # a short period: its rows in the table; a long one: the bucket's entries in the index
        via = "" if self._few(scan) else " INDEXED BY records_len"
        for label, (buckets, n) in lengths.items():
            if not n:
                continue
            wanted: dict[int, list[int]] = {}          # bucket -> the middle ranks inside it
            below = 0
            for bucket in sorted(buckets):
                for rank in sorted({(n - 1) // 2, n // 2}):
                    if below <= rank < below + buckets[bucket]:
                        wanted.setdefault(bucket, []).append(rank - below)
                below += buckets[bucket]
            mine, args = ("", ()) if scan.constant else (f" AND {scan.label} IS ?", (label,))
            ms = []
            for bucket, ranks in sorted(wanted.items()):
                # a long period: one index range per (point, owner) of the bucket, merged in order
                keys = [k[1:] for k in self.keys("records_len") if k[0] == bucket] if via else [()]
                if len(keys) > MAX_MERGED:
                    keys = [()]
                within = "".join(f" AND {c} IS ?" for c in KEYS["records_len"][1][1:]) if keys[0] else ""
                one = (f"SELECT dur_ms FROM records{via} WHERE kind = 0 AND {BUCKET} = ?{within}"
                       f" AND ({ranges}){where}{mine}")
                rows = self.db.execute(
                    f"SELECT dur_ms FROM ({' UNION ALL '.join([one] * len(keys))}) ORDER BY dur_ms LIMIT ? OFFSET ?",
                    (*(x for k in keys for x in (bucket, *k, *bounds, *scan.args, *args)),
                     ranks[-1] - ranks[0] + 1, ranks[0])).fetchall()
                ms += [rows[0][0], rows[-1][0]][:len(ranks)]
            out[label] = ms[0] / 1000 if len(ms) == 1 else (ms[0] / 1000 + ms[1] / 1000) / 2
        return out


def tally_scans(db: sqlite3.Connection, scans: Iterable[Scan], total: Scan | None = None,
                partition: bool = True) -> tuple[dict[str, Tally], Tally | None]:
    """The tally of every label of the scans and of ``total``; when the scans partition
    ``total`` its counts are their sum (only its median is read again)."""
    tallier = Tallier(db)
    out: dict[str, Tally] = {}
    lengths: Counter = Counter()            # contacts by length bucket, all labels
    for scan in scans:
        tallies, buckets = tallier.tally(scan)
        for label, t in tallies.items():
            if label in out:                # cannot happen: a label is one scan's
                raise ValueError(f"label {label!r} in two scans")
            out[label] = t
        for c in buckets.values():
            lengths.update(c)
    if total is None:
        return out, None
    if partition:
        whole = Tally()
        for t in out.values():
            whole.merge(t)
    else:
        tallies, buckets = tallier.tally(total)
        whole = tallies.get("total", Tally())
        lengths = buckets.get("total", Counter())
    whole.median = tallier.medians(total, {"total": (lengths, whole.contacts)}).get("total")
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
    return any(db.execute("SELECT 1 FROM records INDEXED BY records_pointless WHERE kind = ? AND t >= ? AND t < ? "
                          "AND point IS NULL LIMIT 1", (k, lo, hi)).fetchone() for k in KINDS.values())


class _PressRef(msgspec.Struct):
    """What the rating log needs of a settled rating's journalled fields."""
    remote: Any = msgspec.UNSET
    button: Any = None
    rating: Any = None


_PRESS_REF = msgspec.json.Decoder(_PressRef)


def rating_log(db: sqlite3.Connection, lo: int | None, hi: int | None) -> Iterator[tuple]:
    """(point, t, owner, value, class, status, remote, button, remote key present, press ref)
    of the settled ratings counting in [lo, hi), in time order, streamed."""
    cur = db.execute("SELECT r.point, r.t, r.owner, r.value, r.shape, e.data FROM records r JOIN events e "
                     "ON e.seq = r.seq WHERE r.kind = ? AND r.t >= ? AND r.t < ? ORDER BY r.t, r.seq",
                     (RATING, -(1 << 62) if lo is None else lo, (1 << 62) if hi is None else hi))
    while rows := cur.fetchmany(2000):
        for point, t, owner, value, shape, data in rows:
            ref = _PRESS_REF.decode(data)
            present = ref.remote is not msgspec.UNSET
            yield (point, t, owner, value, CLASSES[shape >> CLASS_SHIFT], STATUSES[shape & 0xFFFF],
                   ref.remote if present else None, ref.button, present or None, ref.rating)
