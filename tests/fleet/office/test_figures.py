"""The office's figures equal ``fleetctl report`` (record by record through the box's own
formula) for every scope and period, on SQLite and on PostgreSQL; its tables are rebuilt
for a database written before them; a record sent twice counts once."""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path


from fleet.ingest import IngestStore
from fleet.office import figures
from fleet.office.figures import Scope
from fleet.office.periods import period
from fleet.report import fleet_metrics
from tests.fleet.office.conftest import FIRST_DAY_MS, NOW_S, PLACES
from tests.fleet.office_data import DAY_MS, Box, day_of_records, store_days

ZONES = ("America/St_Johns", "Europe/Riga")
"""Half an hour off UTC (the office reads each contact), and whole hours (its hourly sums)."""


def _fill(store: IngestStore, days: int = 30) -> dict[str, Box]:
    rng = random.Random(3)
    boxes = {}
    for device in PLACES:
        boxes[device] = Box(device)
        store_days(store, boxes[device], FIRST_DAY_MS, days, rng, contacts_per_point=10)
    store.place([(d, s, g) for d, (s, g) in PLACES.items()])
    return boxes


def _check(store: IngestStore) -> int:
    return sum(_check_zone(store, tz) for tz in ZONES)


def _check_zone(store: IngestStore, TZ: str) -> int:
    """Every scope × period: the office's sums = the report's record-by-record tallies."""
    db, ph = store.db, store.ph
    n = 0
    periods = [(None, None)] + [(p.since_ms, p.until_ms) for p in (
        period("today", None, None, TZ, NOW_S), period("week", None, None, TZ, NOW_S),
        period("month", None, None, TZ, NOW_S), period("custom", "2026-08-03", "2026-08-19", TZ, NOW_S))]
    for since, until in periods:
        for devices in (None, ["box-n1", "box-n2"], ["box-s1"], []):
            want = fleet_metrics(db, "none", since, until, TZ, ph, devices)["overall"]
            got = figures.tally(db, ph, Scope(None if devices is None else tuple(devices)), since, until).result()
            assert got == want, (since, until, devices)
            n += 1
        by_point = fleet_metrics(db, "point", since, until, TZ, ph)
        by_owner = fleet_metrics(db, "owner", since, until, TZ, ph)
        for key, want in list(by_point.items())[1:4]:
            device, point = key.split("/")
            assert figures.tally(db, ph, Scope((device,), point), since, until).result() == want
        for key, want in list(by_owner.items())[1:]:
            assert figures.tally(db, ph, Scope(owner=key), since, until).result() == want
        # rankings and trends add up to the same contacts
        ov = figures.overview(db, ph, Scope(), since, until, lambda d: PLACES[d][0])
        total = ov.tally
        for by in ("store", "point", "owner"):
            ranks = ov.ranks[by]
            assert sum(r.contacts for r in ranks) == total.contacts
            assert sum(r.rated for r in ranks) == total.rated
            if by != "owner":           # an employee's receipts count where they had contacts
                assert sum(r.receipts for r in ranks) == total.receipts
        if since is not None:
            tr = figures.trends(db, ph, Scope(), since, until, TZ)
            assert sum(v[0] for v in tr.by_hour.values()) == total.contacts == sum(v[0] for v in tr.by_day.values())
            assert sum(v[4] for v in tr.by_day.values()) == total.receipts
    return n


def test_figures_equal_the_report_on_sqlite(tmp_path):
    store = IngestStore(tmp_path / "ingest.db")
    _fill(store)
    assert _check(store) == 40


def test_figures_equal_the_report_on_postgresql(tmp_path):
    from tests.postgres_server import Postgres
    pg = Postgres(tmp_path).start()
    try:
        store = IngestStore(pg.url)
        _fill(store, days=12)
        assert _check(store) == 40
        store.close()
    finally:
        pg.stop()


def test_a_record_sent_twice_counts_once_and_an_older_database_is_rebuilt(tmp_path):
    import sqlite3
    db = tmp_path / "ingest.db"
    store = IngestStore(db)
    box = Box("box-n1")
    rng = random.Random(5)
    recs = day_of_records(box, FIRST_DAY_MS, rng)
    from appliance.cloud.wire import BatchIn
    batch = BatchIn(device="box-n1", prev=0, last=recs[-1].seq, records=recs)
    store.write_group([("batch", batch)])
    before = figures.tally(store.db, "?", Scope(), None, None).result()
    store.write_group([("batch", batch)])                # the box resent it (no ack heard)
    assert figures.tally(store.db, "?", Scope(), None, None).result() == before
    store.close()
    # a database from before the office: its tables gone, rebuilt from the records at open
    raw = sqlite3.connect(db)
    for t in ("office_contacts", "office_ratings", "office_sales", "office_calls", "office_clips", "office_meta"):
        raw.execute(f"DROP TABLE {t}")
    raw.commit()
    raw.close()
    store = IngestStore(db)
    assert figures.tally(store.db, "?", Scope(), None, None).result() == before
    assert before["contacts"] == 72 and before["receipts"] > 0


def test_a_record_that_is_not_its_types_shape_is_left_out_alone(tmp_path):
    from fleet.office import facts
    assert facts.row_of("box", "id-1", "contact", "till1", 1, b'{"contact": 5}') is None
    assert facts.row_of("box", "id-1", "contact", "till1", 1, b'[[[[') is None
    assert facts.row_of("box", "id-1", "rating_pressed", "till1", 1, b'{}') is None
    assert facts.row_of("box", "id-1", "sale_settled", "till1", 1,
                        b'{"sale": "s", "receipt": "r", "contact": null, "owner": null, "amount": 1e400}') is None


def test_fleetctl_report_by_store_and_group(tmp_path):
    store = IngestStore(tmp_path / "ingest.db")
    _fill(store, days=3)
    store.close()

    def report(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "fleet.cli", "report", "--db", str(tmp_path / "ingest.db"),
                              "--by", "device", "--json", *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        import json
        return json.loads(out.stdout)
    assert set(report("--store", "Riga Centre")) == {"overall", "box-n1", "box-n2"}
    assert set(report("--group", "north")) == {"overall", "box-n1", "box-n2", "box-n3"}
    assert set(report("--group", "north/tartu")) == {"overall", "box-n3"}
    assert report("--group", "nowhere")["overall"]["contacts"] == 0
    assert Path(tmp_path / "ingest.db").exists() and DAY_MS
