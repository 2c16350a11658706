"""The web office's tables: each settled record a box synced (``contact``,
``rating_settled``, ``sale_settled``, ``call_settled``, ``clip``) as one plain row with the
columns its pages filter, sum and sort by — written by the ingest in the transaction that
stores the record, keyed by the record's id (a record sent twice is one row), and rebuilt
from ``records`` for a database the ingest wrote before these tables existed.

The figures are the box's own formula (:class:`appliance.metrics.Tally`) fed with sums of
these columns instead of record by record, so they equal ``fleetctl report`` exactly."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import msgspec

from appliance import vocabulary as v
from appliance.metrics import cents, class_from_tags, happy_units
from appliance.records import TAG_BIT

log = logging.getLogger(__name__)

VERSION = 2
"""Of these tables' shape; a database with an older (or no) mark is rebuilt from ``records``."""

HOUR_MS = 3_600_000
NO_RATING = -(2 ** 31)
"""The hourly sums' keys are never NULL (a NULL is never equal to itself in a unique key):
no rating is this value, no point or owner is ''."""

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS office_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS office_contacts(
        id TEXT PRIMARY KEY, device TEXT NOT NULL, contact TEXT NOT NULL, point TEXT, owner TEXT,
        ts BIGINT NOT NULL, opened BIGINT NOT NULL, closed BIGINT NOT NULL, dur_ms BIGINT NOT NULL,
        rating INTEGER, cls TEXT, happy INTEGER, superseded INTEGER NOT NULL, tagbits INTEGER NOT NULL,
        tags TEXT NOT NULL, revenue_cents BIGINT NOT NULL, sales INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS office_contacts_ts ON office_contacts(ts){device_cover}",
    "CREATE INDEX IF NOT EXISTS office_contacts_device_ts ON office_contacts(device, ts){cover}",
    "CREATE INDEX IF NOT EXISTS office_contacts_key ON office_contacts(device, contact)",
    """CREATE TABLE IF NOT EXISTS office_ratings(
        id TEXT PRIMARY KEY, device TEXT NOT NULL, ref TEXT NOT NULL, point TEXT, owner TEXT, ts BIGINT NOT NULL,
        value INTEGER NOT NULL, cls TEXT NOT NULL, status TEXT NOT NULL, contact TEXT, happy INTEGER)""",
    "CREATE INDEX IF NOT EXISTS office_ratings_device_ts ON office_ratings(device, ts)",
    "CREATE INDEX IF NOT EXISTS office_ratings_ts ON office_ratings(ts)",
    "CREATE INDEX IF NOT EXISTS office_ratings_contact ON office_ratings(device, contact)",
    "CREATE INDEX IF NOT EXISTS office_ratings_loose ON office_ratings(ts) WHERE status IN ('orphan', 'misuse')",
    """CREATE TABLE IF NOT EXISTS office_sales(
        id TEXT PRIMARY KEY, device TEXT NOT NULL, ref TEXT NOT NULL, receipt TEXT NOT NULL, point TEXT,
        owner TEXT, ts BIGINT NOT NULL, contact TEXT, cents BIGINT, items INTEGER)""",
    "CREATE INDEX IF NOT EXISTS office_sales_device_ts ON office_sales(device, ts){sales_cover}",
    "CREATE INDEX IF NOT EXISTS office_sales_ts ON office_sales(ts){device_sales_cover}",
    "CREATE INDEX IF NOT EXISTS office_sales_contact ON office_sales(device, contact)",
    """CREATE TABLE IF NOT EXISTS office_calls(
        id TEXT PRIMARY KEY, device TEXT NOT NULL, ref TEXT, point TEXT, owner TEXT, ts BIGINT NOT NULL,
        answered_ms BIGINT, escalated INTEGER NOT NULL, complaint INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS office_calls_device_ts ON office_calls(device, ts)",
    "CREATE INDEX IF NOT EXISTS office_calls_ts ON office_calls(ts)",
    """CREATE TABLE IF NOT EXISTS office_clips(
        id TEXT PRIMARY KEY, device TEXT NOT NULL, clip TEXT NOT NULL, kind TEXT NOT NULL, contact TEXT,
        event TEXT, press TEXT, point TEXT, ts BIGINT NOT NULL, start_ms BIGINT NOT NULL, duration_s REAL NOT NULL,
        format TEXT NOT NULL, file TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS office_clips_contact ON office_clips(device, contact)",
    "CREATE INDEX IF NOT EXISTS office_clips_event ON office_clips(device, event)",
    "CREATE INDEX IF NOT EXISTS office_clips_clip ON office_clips(device, clip)",
    f"""CREATE TABLE IF NOT EXISTS office_hours(
        device TEXT NOT NULL, point TEXT NOT NULL, owner TEXT NOT NULL, hour BIGINT NOT NULL, rating INTEGER NOT NULL,
        cls TEXT NOT NULL, contacts BIGINT NOT NULL, dur_ms BIGINT NOT NULL, superseded BIGINT NOT NULL,
        happy BIGINT NOT NULL, happy_n BIGINT NOT NULL, {", ".join(f"tag{i} BIGINT NOT NULL" for i in range(9))},
        PRIMARY KEY(device, point, owner, hour, rating, cls))""",
    "CREATE INDEX IF NOT EXISTS office_hours_hour ON office_hours(hour)",
    """CREATE TABLE IF NOT EXISTS office_sale_hours(
        device TEXT NOT NULL, point TEXT NOT NULL, owner TEXT NOT NULL, hour BIGINT NOT NULL,
        receipts BIGINT NOT NULL, cents BIGINT NOT NULL, priced BIGINT NOT NULL, items BIGINT NOT NULL,
        counted BIGINT NOT NULL, PRIMARY KEY(device, point, owner, hour))""",
    "CREATE INDEX IF NOT EXISTS office_sale_hours_hour ON office_sale_hours(hour)",
]
"""Plain SQL that SQLite and PostgreSQL both take; on PostgreSQL the period indexes carry the
columns the overview sums (``INCLUDE``), so a period is read from the index alone."""

_CONTACT_SUMS = "point, owner, rating, cls, dur_ms, superseded, happy, tagbits"
COVER = {"cover": f" INCLUDE ({_CONTACT_SUMS})", "device_cover": f" INCLUDE (device, {_CONTACT_SUMS})",
         "sales_cover": " INCLUDE (point, owner, cents, items)",
         "device_sales_cover": " INCLUDE (device, point, owner, cents, items)"}

INSERT = {
    "office_contacts": "INSERT INTO office_contacts(id, device, contact, point, owner, ts, opened, closed, dur_ms,"
                       " rating, cls, happy, superseded, tagbits, tags, revenue_cents, sales)"
                       " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
    "office_ratings": "INSERT INTO office_ratings(id, device, ref, point, owner, ts, value, cls, status, contact, happy)"
                      " VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
    "office_sales": "INSERT INTO office_sales(id, device, ref, receipt, point, owner, ts, contact, cents, items)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
    "office_calls": "INSERT INTO office_calls(id, device, ref, point, owner, ts, answered_ms, escalated, complaint)"
                    " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
    "office_clips": "INSERT INTO office_clips(id, device, clip, kind, contact, event, press, point, ts, start_ms,"
                    " duration_s, format, file) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
}

TYPES = {v.CONTACT: v.ContactSettled, v.RATING_SETTLED: v.RatingSettled, v.SALE_SETTLED: v.SaleSettled,
         v.CALL_SETTLED: v.CallSettled, v.CLIP: v.Clip}
"""The record types the office keeps a row of."""

_decoders = {t: msgspec.json.Decoder(cls) for t, cls in TYPES.items()}


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def tag_bits(tags: list[str]) -> int:
    bits = 0
    for t in tags:
        bits |= TAG_BIT.get(t, 0)
    return bits


@dataclass(frozen=True, slots=True)
class Row:
    table: str
    values: tuple


def row_of(device: str, rec_id: str, typ: str, point: str | None, ts: int, data: bytes | str) -> Row | None:
    """The office row of one synced record, or None (a type the office does not keep, or a
    payload that is not its type's shape: logged, left out)."""
    dec = _decoders.get(typ)
    if dec is None:
        return None
    try:
        rec = dec.decode(data)
        if isinstance(rec, v.ContactSettled):
            rated = rec.rating is not None
            return Row("office_contacts", (
                rec_id, device, rec.contact, point, rec.owner, ts, iso_ms(rec.opened), iso_ms(rec.closed),
                round(rec.duration_s * 1000), rec.rating,
                (rec.rating_class or class_from_tags(rec.tags)) if rated else None,
                happy_units(rec.happy) if rated else None, len(rec.superseded), tag_bits(rec.tags),
                ",".join(rec.tags), cents(rec.revenue), len(rec.sales)))
        if isinstance(rec, v.RatingSettled):
            return Row("office_ratings", (rec_id, device, rec.rating, point, rec.owner, ts, rec.value, rec.cls,
                                          rec.status, rec.contact, happy_units(rec.happy)))
        if isinstance(rec, v.SaleSettled):
            return Row("office_sales", (rec_id, device, rec.sale, rec.receipt, point, rec.owner, ts, rec.contact,
                                        None if rec.amount is None else cents(rec.amount), rec.items))
        if isinstance(rec, v.CallSettled):
            return Row("office_calls", (rec_id, device, rec.call, point, rec.owner, ts,
                                        None if rec.answered_s is None else round(rec.answered_s * 1000),
                                        int(rec.escalated), int(rec.complaint)))
        if isinstance(rec, v.Clip):
            return Row("office_clips", (rec_id, device, rec.clip, rec.kind, rec.contact, rec.event, rec.press, point,
                                        ts, iso_ms(rec.start), rec.duration_s, rec.format, rec.file))
    except (msgspec.MsgspecError, ValueError, OverflowError) as exc:
        log.warning("office: left out the %s record %s of %s: %s", typ, rec_id, device, exc)
    return None


def rows_by_table(rows) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for r in rows:
        if r is not None:
            out.setdefault(r.table, []).append(r.values)
    return out


TAG_COLUMNS = [f"tag{i}" for i in range(9)]
_HOUR_SUMS = ["contacts", "dur_ms", "superseded", "happy", "happy_n", *TAG_COLUMNS]
_SALE_SUMS = ["receipts", "cents", "priced", "items", "counted"]
ROLLUP_INSERT = {
    "office_hours": f"INSERT INTO office_hours VALUES ({','.join('?' * (6 + len(_HOUR_SUMS)))})"
                    " ON CONFLICT(device, point, owner, hour, rating, cls) DO UPDATE SET "
                    + ", ".join(f"{c} = office_hours.{c} + excluded.{c}" for c in _HOUR_SUMS),
    "office_sale_hours": f"INSERT INTO office_sale_hours VALUES ({','.join('?' * (4 + len(_SALE_SUMS)))})"
                         " ON CONFLICT(device, point, owner, hour) DO UPDATE SET "
                         + ", ".join(f"{c} = office_sale_hours.{c} + excluded.{c}" for c in _SALE_SUMS),
}
ROLLED = {"office_contacts": "office_hours", "office_sales": "office_sale_hours"}
"""The fact tables whose new rows are also added into hourly sums (the overview of a period
of whole hours reads those: a few rows an hour a point instead of one a contact)."""

ROLLUP_REBUILD = [
    "DELETE FROM office_hours",
    f"INSERT INTO office_hours SELECT device, COALESCE(point, ''), COALESCE(owner, ''), ts / {HOUR_MS},"
    f" COALESCE(rating, {NO_RATING}), COALESCE(cls, ''), COUNT(*), SUM(dur_ms), SUM(superseded),"
    " COALESCE(SUM(happy), 0), COUNT(happy), "
    + ", ".join(f"SUM(CASE WHEN (tagbits & {1 << i}) <> 0 THEN 1 ELSE 0 END)" for i in range(9))
    + f" FROM office_contacts GROUP BY device, COALESCE(point, ''), COALESCE(owner, ''), ts / {HOUR_MS},"
    f" COALESCE(rating, {NO_RATING}), COALESCE(cls, '')",
    "DELETE FROM office_sale_hours",
    f"INSERT INTO office_sale_hours SELECT device, COALESCE(point, ''), COALESCE(owner, ''), ts / {HOUR_MS},"
    " COUNT(*), COALESCE(SUM(cents), 0), COUNT(cents), COALESCE(SUM(items), 0), COUNT(items) FROM office_sales"
    f" GROUP BY device, COALESCE(point, ''), COALESCE(owner, ''), ts / {HOUR_MS}",
]
"""The hourly sums made again from the fact tables (after a rebuild, or a bulk load)."""


def rollup(table: str, new: list[tuple]) -> list[tuple]:
    """The hourly sums to add for fact rows just inserted into ``table`` (in key order, so two
    writers take the rows in one order)."""
    acc: dict[tuple, list[int]] = {}
    if table == "office_contacts":
        for (_id, device, _c, point, owner, ts, _o, _cl, dur_ms, rating, cls, happy, superseded, tagbits, *_) in new:
            key = (device, point or "", owner or "", ts // HOUR_MS, NO_RATING if rating is None else rating, cls or "")
            s = acc.get(key) or acc.setdefault(key, [0] * len(_HOUR_SUMS))
            s[0] += 1
            s[1] += dur_ms
            s[2] += superseded
            if happy is not None:
                s[3] += happy
                s[4] += 1
            for i in range(9):
                if tagbits & (1 << i):
                    s[5 + i] += 1
    else:
        for (_id, device, _r, _rc, point, owner, ts, _c, cents, items) in new:
            key = (device, point or "", owner or "", ts // HOUR_MS)
            s = acc.get(key) or acc.setdefault(key, [0] * len(_SALE_SUMS))
            s[0] += 1
            if cents is not None:
                s[1] += cents
                s[2] += 1
            if items is not None:
                s[3] += items
                s[4] += 1
    return [(*k, *v) for k, v in sorted(acc.items())]


def create(execute, pg: bool = False) -> None:
    for stmt in SCHEMA:
        execute(stmt.format(**(COVER if pg else dict.fromkeys(COVER, ""))) if "{" in stmt else stmt)


def rebuild_needed(execute) -> bool:
    row = execute("SELECT value FROM office_meta WHERE key = 'facts_version'").fetchone()
    return row is None or int(row[0]) < VERSION


def mark_built(execute, ph: str) -> None:
    execute(f"INSERT INTO office_meta(key, value) VALUES ('facts_version', {ph}) ON CONFLICT(key) DO UPDATE"
            " SET value = excluded.value", (str(VERSION),))
