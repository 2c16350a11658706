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

import msgspec

from appliance import vocabulary as v
from appliance.metrics import cents, class_from_tags, happy_units
from appliance.records import TAG_BIT
from appliance.timefmt import parse_ts

log = logging.getLogger(__name__)

VERSION = 1
"""Of these tables' shape; a database with an older (or no) mark is rebuilt from ``records``."""

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
    except (msgspec.MsgspecError, ValueError, OverflowError) as exc:
        log.warning("office: left out the %s record %s of %s: %s", typ, rec_id, device, exc)
        return None
    return row_from(device, rec_id, typ, point, ts, rec)


def row_from(device: str, rec_id: str, typ: str, point: str | None, ts: int, rec) -> Row | None:
    """The office row of a record whose data is already decoded (the ingest's vocabulary
    check did it)."""
    try:
        if isinstance(rec, v.ContactSettled):
            rated = rec.rating is not None
            return Row("office_contacts", (
                rec_id, device, rec.contact, point, rec.owner, ts, parse_ts(rec.opened), parse_ts(rec.closed),
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
                                        ts, parse_ts(rec.start), rec.duration_s, rec.format, rec.file))
    except (ValueError, OverflowError) as exc:
        log.warning("office: left out the %s record %s of %s: %s", typ, rec_id, device, exc)
    return None


def rows_by_table(rows) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for r in rows:
        if r is not None:
            out.setdefault(r.table, []).append(r.values)
    return out


def create(execute, pg: bool = False) -> None:
    for stmt in SCHEMA:
        execute(stmt.format(**(COVER if pg else dict.fromkeys(COVER, ""))) if "{" in stmt else stmt)


def rebuild_needed(execute) -> bool:
    row = execute("SELECT value FROM office_meta WHERE key = 'facts_version'").fetchone()
    return row is None or int(row[0]) < VERSION


def mark_built(execute, ph: str) -> None:
    execute(f"INSERT INTO office_meta(key, value) VALUES ('facts_version', {ph}) ON CONFLICT(key) DO UPDATE"
            " SET value = excluded.value", (str(VERSION),))
