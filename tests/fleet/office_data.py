"""A generated fleet as the ingest stores it: each box's settled records (contacts with
their ratings, receipts and tags, orphan and misuse presses, staff calls, clip records) sent
as journal batches through :meth:`IngestStore.write_group`, the ingest's own write path.
Used by the web office's tests and its benchmark."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import msgspec

from appliance import vocabulary as v
from appliance.cloud.wire import BatchIn, RecordIn
from appliance.ids import derived_id
from appliance.timefmt import iso_ms

DAY_MS = 86_400_000


@dataclass
class Box:
    device: str
    points: tuple[str, ...] = ("till1", "till2")
    staff: tuple[str, ...] = ("anna", "boris", "carla")
    seq: int = 0
    negatives: list[tuple[str, str, int]] = field(default_factory=list)     # (contact id, point, closed ms)


def record(box: Box, typ: str, ts: int, point: str | None, payload: msgspec.Struct | dict, *key) -> RecordIn:
    box.seq += 1
    data = msgspec.json.encode(payload)
    return RecordIn(seq=box.seq, id=derived_id(ts, box.device, typ, box.seq, *key), type=typ, ts=ts, point=point,
                    source="local", data=msgspec.Raw(data))


def day_of_records(box: Box, day_start_ms: int, rng: random.Random, contacts_per_point: int = 36,
                   clip_every: int = 1) -> list[RecordIn]:
    """One working day (08:00–20:00 UTC) of a box: ``contacts_per_point`` contacts at each point."""
    out: list[RecordIn] = []
    for point in box.points:
        t = day_start_ms + 8 * 3600_000 + rng.randrange(0, 600_000)
        owner = rng.choice(box.staff)
        for i in range(contacts_per_point):
            if i % 12 == 0:
                owner = rng.choice(box.staff)
            t += rng.randrange(60_000, 1_100_000)
            dur = rng.randrange(15_000, 400_000)
            opened, closed = t, t + dur
            contact = derived_id(opened, box.device, point, "contact")
            rating = cls = happy = None
            tags = []
            if rng.random() < 0.45:
                rating = rng.choice((1, 2, 3, 4, 5, 5, 5))
                cls = "top" if rating == 5 else "negative" if rating <= 2 else "neutral"
                happy = (rating - 1) * 25.0
                tags += ["rated", "positive" if cls == "top" else "not_positive"]
                if cls == "negative":
                    tags.append("negative")
                ref = derived_id(closed - 5000, box.device, point, "press", i)
                out.append(record(box, v.RATING_SETTLED, closed, point, v.RatingSettled(
                    rating=ref, value=rating, cls=cls, status="counted", owner=owner, contact=contact, happy=happy)))
            else:
                tags.append("unrated")
            sales = []
            revenue = 0.0
            if rng.random() < 0.6:
                amount = round(rng.uniform(1, 120), 2)
                items = rng.randrange(1, 9)
                sale = derived_id(closed - 20_000, box.device, point, "sale", i)
                sales.append(sale)
                revenue = amount
                out.append(record(box, v.SALE_SETTLED, closed, point, v.SaleSettled(
                    sale=sale, receipt=f"R{box.seq}", contact=contact, owner=owner, amount=amount, items=items)))
                tags.append("productive")
            else:
                tags.append("unproductive")
            if dur > 300_000:
                tags.append("long")
            out.append(record(box, v.CONTACT, closed, point, v.ContactSettled(
                contact=contact, point=point, opened=iso_ms(opened), closed=iso_ms(closed), duration_s=dur / 1000,
                owner=owner, rating=rating, sales=sales, tags=tags, rating_class=cls, revenue=revenue, happy=happy)))
            if cls == "negative":
                box.negatives.append((contact, point, closed))
            if clip_every and i % clip_every == 0:
                clip = derived_id(opened - 2000, "clip", "contact", contact)
                out.append(record(box, v.CLIP, closed + 3000, point, v.Clip(
                    clip=clip, kind="contact", file=f"{clip}.ogg", start=iso_ms(opened - 2000),
                    end=iso_ms(closed + 2000), duration_s=(dur + 4000) / 1000, format="opus", size=1000,
                    sha256="0" * 64, contact=contact, tags=tags)))
            t = closed
        for k in range(rng.randrange(0, 3)):          # presses without a contact, and a child's misuse
            ts = t + 60_000 * (k + 1)
            value = rng.choice((1, 5))
            out.append(record(box, v.RATING_SETTLED, ts, point, v.RatingSettled(
                rating=derived_id(ts, box.device, point, "orphan", k), value=value,
                cls="top" if value == 5 else "negative", status="orphan" if k % 2 == 0 else "misuse", owner=owner,
                contact=None, happy=(value - 1) * 25.0)))
        for k in range(rng.randrange(0, 4)):
            ts = day_start_ms + 9 * 3600_000 + k * 3600_000
            answered = rng.choice((None, 20.5, 45.0, 90.25))
            out.append(record(box, v.CALL_SETTLED, ts, point, v.CallSettled(
                owner=owner, answered_s=answered, call=f"call-{box.seq}", escalated=answered is None,
                complaint=rng.random() < 0.1)))
    return out


def store_days(store, box: Box, first_day_ms: int, days: int, rng: random.Random, **kw) -> int:
    """Send ``days`` days of ``box`` to the ingest store in batches of ≤ 200 records."""
    n = 0
    for d in range(days):
        recs = day_of_records(box, first_day_ms + d * DAY_MS, rng, **kw)
        for i in range(0, len(recs), 200):
            chunk = recs[i:i + 200]
            store.write_group([("batch", BatchIn(device=box.device, prev=chunk[0].seq - 1, last=chunk[-1].seq,
                                                 records=chunk))])
        n += len(recs)
    return n
