"""Contacts as the office lists them: filters parsed strictly from a query string (a value
that is not one of a filter's allowed shapes is an error naming the filter, never SQL), a
page of contacts newest first (keyset paging: any page costs the same), one contact with
its rating presses, receipts and tracks, and the quality team's review mark."""
from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.point import TAGS
from appliance.records import TAG_BIT

from .figures import Scope

PAGE = 50
TEXT = re.compile(r"^[A-Za-z0-9_.:@/\- ]{1,100}\Z")
"""Point and employee names as a filter takes them."""


class FilterError(ValueError):
    """A filter value the list does not take: the message names the filter."""


@dataclass(frozen=True)
class Filters:
    tag: str | None = None
    point: str | None = None            # device/point
    owner: str | None = None
    rating: str | None = None           # a value, "any" (rated) or "none" (unrated)
    sale: str | None = None             # "yes" | "no"
    reviewed: str | None = None         # "yes" | "no"
    after: tuple[int, str] | None = None    # keyset: (ts, id) of the last row of the previous page

    @classmethod
    def parse(cls, q) -> "Filters":
        """From a query string mapping; empty values are no filter."""
        def get(name: str) -> str | None:
            x = q.get(name)
            return x if x not in (None, "") else None
        tag, point, owner, rating = get("tag"), get("point"), get("owner"), get("rating")
        sale, reviewed, after = get("sale"), get("reviewed"), get("after")
        if tag is not None and tag not in TAG_BIT:
            raise FilterError(f"tag: one of {', '.join(TAGS)}")
        for name, x in (("point", point), ("owner", owner)):
            if x is not None and not TEXT.match(x):
                raise FilterError(f"{name}: letters, digits and _ . : @ / - (at most 100)")
        if point is not None and "/" not in point:
            raise FilterError("point: device/point, as the lists show it")
        if rating is not None and rating not in ("any", "none") and not re.fullmatch(r"-?\d{1,3}", rating):
            raise FilterError("rating: a rating value, any or none")
        for name, x in (("sale", sale), ("reviewed", reviewed)):
            if x is not None and x not in ("yes", "no"):
                raise FilterError(f"{name}: yes or no")
        key = None
        if after is not None:
            m = re.fullmatch(r"(\d{1,16})~([A-Za-z0-9_.:-]{1,200})", after)
            if not m:
                raise FilterError("after: a page mark as the list's next link gives it")
            key = (int(m.group(1)), m.group(2))
        return cls(tag, point, owner, rating, sale, reviewed, key)

    def query(self, **extra) -> dict[str, str]:
        """As a query string mapping (for links), without the page mark."""
        out = {k: getattr(self, k) for k in ("tag", "point", "owner", "rating", "sale", "reviewed")}
        out.update(extra)
        return {k: str(v) for k, v in out.items() if v is not None}


@dataclass
class ContactRow:
    id: str
    device: str
    contact: str
    point: str | None
    owner: str | None
    ts: int
    opened: int
    closed: int
    dur_ms: int
    rating: int | None
    cls: str | None
    tags: list[str]
    revenue_cents: int
    sales: int
    reviewed_by: str | None = None
    comment: str | None = None

    @property
    def mark(self) -> str:
        return f"{self.ts}~{self.id}"


COLUMNS = ("c.id, c.device, c.contact, c.point, c.owner, c.ts, c.opened, c.closed, c.dur_ms, c.rating, c.cls, c.tags,"
           " c.revenue_cents, c.sales, r.name, r.comment")


def _row(r) -> ContactRow:
    return ContactRow(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), int(r[7]), int(r[8]),
                      None if r[9] is None else int(r[9]), r[10], [t for t in r[11].split(",") if t], int(r[12]),
                      int(r[13]), r[14], r[15])


def page(db, ph: str, scope: Scope, since_ms: int, until_ms: int, f: Filters, limit: int = PAGE) -> list[ContactRow]:
    """One page of contacts (``limit`` + 1 rows read: the extra one says there is a next)."""
    if f.point is not None:
        device, point = f.point.split("/", 1)
        if scope.devices is not None and device not in scope.devices:
            return []
        scope = Scope((device,), point, scope.owner)
    if f.owner is not None:
        scope = Scope(scope.devices, scope.point, f.owner)
    w, a = scope.where(since_ms, until_ms, ph, "c")
    sql = [w]
    if f.tag is not None:
        sql.append(f"(c.tagbits & {TAG_BIT[f.tag]}) <> 0")
    if f.rating == "any":
        sql.append("c.rating IS NOT NULL")
    elif f.rating == "none":
        sql.append("c.rating IS NULL")
    elif f.rating is not None:
        sql.append(f"c.rating = {ph}")
        a.append(int(f.rating))
    if f.sale is not None:
        sql.append("c.sales > 0" if f.sale == "yes" else "c.sales = 0")
    if f.reviewed is not None:
        sql.append("r.name IS NOT NULL" if f.reviewed == "yes" else "r.name IS NULL")
    if f.after is not None:
        sql.append(f"(c.ts < {ph} OR (c.ts = {ph} AND c.id < {ph}))")
        a.extend([f.after[0], f.after[0], f.after[1]])
    rows = db.execute(f"SELECT {COLUMNS} FROM office_contacts c LEFT JOIN office_reviews r"
                      f" ON r.device = c.device AND r.contact = c.contact WHERE {' AND '.join(sql)}"
                      f" ORDER BY c.ts DESC, c.id DESC LIMIT {ph}", [*a, limit + 1]).fetchall()
    return [_row(r) for r in rows]


@dataclass
class Track:
    device: str
    clip: str
    kind: str
    press: str | None
    start_ms: int
    duration_s: float
    format: str
    stored: bool                # the cloud holds the file (uploaded and not yet past retention)


@dataclass
class ContactDetail:
    row: ContactRow
    ratings: list[tuple]        # (ts, value, cls, status)
    receipts: list[tuple]       # (ts, receipt, cents, items)
    tracks: list[Track]


def detail(db, ph: str, device: str, contact: str) -> ContactDetail | None:
    r = db.execute(f"SELECT {COLUMNS} FROM office_contacts c LEFT JOIN office_reviews r"
                   f" ON r.device = c.device AND r.contact = c.contact WHERE c.device = {ph} AND c.contact = {ph}",
                   (device, contact)).fetchone()
    if r is None:
        return None
    row = _row(r)
    ratings = db.execute(f"SELECT ts, value, cls, status, ref FROM office_ratings WHERE device = {ph} AND contact = {ph}"
                         " ORDER BY ts", (device, contact)).fetchall()
    receipts = db.execute(f"SELECT ts, receipt, cents, items FROM office_sales WHERE device = {ph} AND contact = {ph}"
                          " ORDER BY ts", (device, contact)).fetchall()
    refs = [x[4] for x in ratings]
    clips = db.execute(
        f"SELECT o.clip, o.kind, o.press, o.start_ms, o.duration_s, o.format, k.id FROM office_clips o"
        f" LEFT JOIN clips k ON k.device = o.device AND k.id = o.clip WHERE o.device = {ph} AND (o.contact = {ph}"
        + (f" OR o.event IN ({','.join([ph] * len(refs))})" if refs else "") + ") ORDER BY o.kind, o.start_ms",
        (device, contact, *refs)).fetchall()
    tracks = [Track(device, c[0], c[1], c[2], int(c[3]), float(c[4]), c[5], c[6] is not None) for c in clips]
    return ContactDetail(row, [tuple(x[:4]) for x in ratings], [tuple(x) for x in receipts], tracks)


def review(db, device: str, contact: str, name: str, at_ms: int, comment: str) -> None:
    db.execute("INSERT INTO office_reviews VALUES (?,?,?,?,?) ON CONFLICT(device, contact) DO UPDATE"
               " SET name = excluded.name, at = excluded.at, comment = excluded.comment",
               (device, contact, name, at_ms, comment))
