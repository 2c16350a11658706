"""Service metrics per period, point and owner (ARCHITECTURE §5).

Computed from the pipeline's settled records, so live reports, replay and the cloud all
count the same way. Ratios over zero contacts are ``None`` (JSON null).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable

from zoneinfo import ZoneInfo

from . import vocabulary as v
from .point import HAPPY_UNIT, Call, Contact, Rating, Sale

METRIC_KEYS = ("contacts", "mean_duration_s", "median_duration_s", "ratings", "top", "negative",
               "orphan_ratings", "misuse", "response_rate", "csi", "cdi", "cci", "eli",
               "receipts", "conversion", "calls", "calls_answered", "call_answer_mean_s", "call_escalations",
               "call_complaints", "avg_receipt", "items_per_receipt", "happy_index")


@dataclass(slots=True)
class Tally:
    """The counts a period's metrics are computed from, added up record by record (a replay,
    the cloud) or filled from the journal's records index by :mod:`appliance.records`.
    Lengths, amounts and answer times are summed as whole milliseconds and cents: exact in any
    order, so both ways give the same figures to the last bit."""
    contacts: int = 0
    length_ms: int = 0                                      # sum of contact lengths
    durations: Counter = field(default_factory=Counter)     # contact length in ms -> contacts
    median: float | None = None     # the median length when the lengths were not kept (index)
    rated: int = 0
    ratings: int = 0
    top: int = 0
    negative: int = 0
    orphans: int = 0
    misuse: int = 0
    superseded: int = 0
    receipts: int = 0
    cents: int = 0
    priced: int = 0                 # receipts that carry an amount
    items: int = 0
    counted_items: int = 0          # receipts that carry an item count
    happy: int = 0                  # sum of the counted ratings' happy scores (thousandths)
    happy_n: int = 0                # counted ratings that have one
    distribution: Counter = field(default_factory=Counter)
    orphan_distribution: Counter = field(default_factory=Counter)
    calls: int = 0
    answered: int = 0
    answered_ms: int = 0
    escalations: int = 0
    complaints: int = 0
    tags: Counter = field(default_factory=Counter)

    def add_contact(self, c: Contact) -> None:
        r = c.rating
        self.contact(c.duration_ms / 1000, c.tags, r.value if r else None, r.cls if r else None, len(c.superseded),
                     r.happy if r else None)

    def contact(self, duration_s: float, tags: list[str], value: int | None, cls: str | None,
                superseded: int = 0, happy: int | None = None) -> None:
        """A counted contact: its length, tags and the rating that counts (if any)."""
        length = round(duration_s * 1000)
        self.contacts += 1
        self.length_ms += length
        self.durations[length] += 1
        self.tags.update(tags)
        if value is not None:
            self.rated += 1
            self._rating(value, cls)
            self.happy_score(happy)
        self.superseded += superseded

    def happy_score(self, score: int | None, k: int = 1) -> None:
        if score is not None:
            self.happy += score * k
            self.happy_n += k

    def _rating(self, value: int, cls: str | None, k: int = 1) -> None:
        self.ratings += k
        self.distribution[value] += k
        if cls == "top":
            self.top += k
        elif cls == "negative":
            self.negative += k

    def add_orphan(self, r: Rating) -> None:
        self.orphan(r.value, r.cls)
        self.happy_score(r.happy)

    def orphan(self, value: int, cls: str, k: int = 1) -> None:
        self.orphans += k
        self.orphan_distribution[value] += k
        self._rating(value, cls, k)

    def add_sale(self, s: Sale) -> None:
        self.sale(s.amount, s.items)

    def sale(self, amount: float | None, items: int | None = None) -> None:
        self.receipts += 1
        if amount is not None:
            self.cents += cents(amount)
            self.priced += 1
        if items is not None:
            self.items += items
            self.counted_items += 1

    def add_call(self, c: Call) -> None:
        self.call(c.answered_s, c.escalated, c.complaint)

    def call(self, answered_s: float | None, escalated: bool = False, complaint: bool = False) -> None:
        self.calls += 1
        self.escalations += escalated
        self.complaints += complaint
        if answered_s is not None:
            self.answered += 1
            self.answered_ms += round(answered_s * 1000)

    def add_settled(self, rec: object) -> None:
        """A record as the core journalled it (``contact``, ``*_settled``): the cloud and
        the box then count with the same formula."""
        if isinstance(rec, v.ContactSettled):
            self.contact(rec.duration_s, rec.tags, rec.rating, rec.rating_class or class_from_tags(rec.tags),
                         len(rec.superseded), happy_units(rec.happy))
        elif isinstance(rec, v.RatingSettled):
            if rec.status == "orphan":
                self.orphan(rec.value, rec.cls)
                self.happy_score(happy_units(rec.happy))
            elif rec.status == "misuse":
                self.misuse += 1
        elif isinstance(rec, v.SaleSettled):
            self.sale(rec.amount, rec.items)
        elif isinstance(rec, v.CallSettled):
            self.call(rec.answered_s, rec.escalated, rec.complaint)

    def empty(self) -> bool:
        """Nothing counted: no contact, orphan or misuse press, receipt or call."""
        return not (self.contacts or self.orphans or self.misuse or self.receipts or self.calls)

    def merge(self, other: "Tally") -> None:
        """Add another tally's counts (the lengths' histograms too; not a set median)."""
        for f in ("contacts", "length_ms", "rated", "ratings", "top", "negative", "orphans", "misuse", "superseded",
                  "receipts", "cents", "priced", "items", "counted_items", "happy", "happy_n", "calls", "answered", "answered_ms", "escalations", "complaints"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        for f in ("durations", "distribution", "orphan_distribution", "tags"):
            getattr(self, f).update(getattr(other, f))

    def result(self) -> dict:
        n = self.contacts
        median = self.median if self.median is not None or not n else median_s(self.durations, n)

        def ratio(x: int) -> float | None:
            return x / n if n else None
        return {
            "contacts": n,
            "mean_duration_s": self.length_ms / (1000 * n) if n else None,
            "median_duration_s": median,
            "ratings": self.ratings,
            "top": self.top,
            "negative": self.negative,
            "orphan_ratings": self.orphans,
            "misuse": self.misuse,
            "response_rate": ratio(self.rated),
            "silent_share": (1 - self.rated / n) if n else None,
            "csi": ratio(self.top),
            "cdi": ratio(self.negative),
            "cci": ratio(self.ratings - self.top),
            "eli": ratio(self.top - self.negative),
            "receipts": self.receipts,
            "conversion": ratio(self.receipts),
            "revenue": self.cents / 100,
            "avg_receipt": round(self.cents / self.priced) / 100 if self.priced else None,
            "items_per_receipt": self.items / self.counted_items if self.counted_items else None,
            "happy_index": round(self.happy / self.happy_n) / HAPPY_UNIT if self.happy_n else None,
            "superseded": self.superseded,
            "distribution": {str(k): v for k, v in sorted(self.distribution.items())},
            "orphan_distribution": {str(k): v for k, v in sorted(self.orphan_distribution.items())},
            "tags": dict(sorted(self.tags.items())),
            "calls": self.calls,
            "calls_answered": self.answered,
            "call_answer_mean_s": self.answered_ms / (1000 * self.answered) if self.answered else None,
            "call_escalations": self.escalations,
            "call_complaints": self.complaints,
        }


def class_from_tags(tags: list[str]) -> str:
    """A rated contact's class from its tags (journals written before ``rating_class``)."""
    return "top" if "positive" in tags else "negative" if "negative" in tags else "neutral"


SETTLED = {v.CONTACT: v.ContactSettled, v.RATING_SETTLED: v.RatingSettled, v.SALE_SETTLED: v.SaleSettled,
           v.CALL_SETTLED: v.CallSettled}
"""The derived record types that metrics are computed from, and their payloads."""


def happy_units(points: float | None) -> int | None:
    """A journalled happy score (0–100) back in thousandths."""
    return None if points is None else round(points * HAPPY_UNIT)


def cents(amount: float | None) -> int:
    """A receipt's amount in whole cents (how amounts are summed)."""
    return round((amount or 0.0) * 100)


def median_s(hist: Counter, n: int) -> float:
    """The median length in seconds of a histogram of whole milliseconds, exactly as
    statistics.median of the lengths in seconds: memory grows with the distinct lengths, not
    with the number of contacts."""
    lo_i, hi_i = (n - 1) // 2, n // 2
    seen, lo = 0, None
    for ms in sorted(hist):
        seen += hist[ms]
        if lo is None and seen > lo_i:
            lo = ms
        if seen > hi_i:
            return ms / 1000 if n % 2 else (lo / 1000 + ms / 1000) / 2
    raise ValueError("empty histogram")


class Period:
    """Maps a time to the label of its period (hour, day, week, month) in a zone."""

    def __init__(self, unit: str, tz: str = "UTC"):
        self.unit = unit
        self.tz = ZoneInfo(tz)

    def __call__(self, t: int) -> str:
        d = datetime.fromtimestamp(t / 1000, tz=timezone.utc).astimezone(self.tz)
        if self.unit == "hour":
            return d.strftime("%Y-%m-%dT%H:00")
        if self.unit == "day":
            return d.strftime("%Y-%m-%d")
        if self.unit == "week":
            y, w, _ = d.isocalendar()
            return f"{y}-W{w:02d}"
        if self.unit == "month":
            return d.strftime("%Y-%m")
        raise ValueError(f"unknown period {self.unit!r}")


Key = Callable[[str, int, str | None], str | None]
"""key(point, time, owner) -> group label, or None to leave the record out."""


class Grouper:
    """The tallies a record belongs to under several keys (created on first use)."""

    def __init__(self, keys: dict[str, Key]):
        self.out: dict[str, dict[str, Tally]] = {name: {} for name in keys}
        self.items = list(keys.items())

    def __call__(self, point: str | None, t: int, owner: str | None) -> list[Tally]:
        found = []
        for name, key in self.items:
            k = key(point, t, owner)
            if k is not None:
                g = self.out[name].get(k)
                if g is None:
                    g = self.out[name][k] = Tally()
                found.append(g)
        return found


def tally(records: Iterable[tuple[str, object]], key: Key,
          window: tuple[int | None, int | None] = (None, None)) -> dict[str, Tally]:
    """Group settled records by one key. See :func:`tally_by`."""
    return tally_by(records, {"": key}, window)[""]


def tally_by(records: Iterable[tuple[str, object]], keys: dict[str, Key],
             window: tuple[int | None, int | None] = (None, None)) -> dict[str, dict[str, Tally]]:
    """Group settled records under several keys in one pass. A contact counts at its open
    time; orphans, misuse presses, sales and calls at their own time; ``window`` is
    [from, to) on those times."""
    lo, hi = window
    grouper = Grouper(keys)
    out = grouper.out

    def groups(point: str, t: int, owner: str | None) -> list[Tally]:
        if (lo is not None and t < lo) or (hi is not None and t >= hi):
            return []
        return grouper(point, t, owner)

    for kind, rec in records:
        if kind == "contact":
            for g in groups(rec.point, rec.opened, rec.owner):
                g.add_contact(rec)
        elif kind == "rating":
            if rec.status == "orphan":
                for g in groups(rec.point, rec.t, rec.owner):
                    g.add_orphan(rec)
            elif rec.status == "misuse":
                for g in groups(rec.point, rec.t, rec.owner):
                    g.misuse += 1
        elif kind == "sale":
            for g in groups(rec.point, rec.t, rec.owner):
                g.add_sale(rec)
        elif kind == "call":
            for g in groups(rec.point, rec.t, rec.owner):
                g.add_call(rec)
    return out


def summary(records: list[tuple[str, object]], point_ids: Iterable[str] = ()) -> dict:
    """The replay's metrics.json: overall, per point (every configured one), per named owner."""
    by = tally_by(records, {"overall": lambda p, t, o: "all", "points": lambda p, t, o: p,
                            "owners": lambda p, t, o: o})
    overall, points, owners = by["overall"].get("all", Tally()), by["points"], by["owners"]
    for pid in point_ids:
        points.setdefault(pid, Tally())
    return {
        "overall": overall.result(),
        "points": {k: v.result() for k, v in sorted(points.items())},
        "owners": {k: v.result() for k, v in sorted(owners.items())},
    }
