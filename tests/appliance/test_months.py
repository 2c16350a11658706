"""Nothing grows with uptime: five months of a shop through what `appliance-core` runs — the
core stage, routing and delivery to a webhook, windowed alerts every hour, journal retention
every day — and, once retention has reached its steady state, neither the daemon's Python
memory, nor the journal's pages in use, nor its WAL, nor the core's snapshot, nor an outbox
grows month after month."""
from __future__ import annotations

import gc
import json
import random
import time
import tracemalloc
from datetime import datetime, timedelta, timezone

from appliance import alerts
from appliance.config import parse_config
from appliance.core import CoreStage
from appliance.events import load_file
from appliance.journal import Journal
from appliance.notify import Notifications
from appliance.pruning import prune
from appliance.timefmt import iso_ms
from tests.notify_servers import HttpRecorder

DAYS, MONTH = 150, 30
HOUR = 3_600_000
CONFIG = """
[device]
state_dir = "{state}"
[journal]
keep_raw_days = 20
keep_days = 40
[points.till1]
pos = true
[points.till2]
pos = true
[notifications.hook]
kind = "webhook"
url = "{url}/hook"
on = ["negative"]
ratings = ["negative"]
attach = "none"
[[notifications.hook.windows]]
metric = "negative_share"
above = 0.5
over_s = 3600.0
min_count = 4
"""


def day_of_events(rnd: random.Random, start: datetime, receipt: list[int]) -> list[dict]:
    out = []
    for point in ("till1", "till2"):
        t = start + timedelta(hours=8)
        out.append({"ts": iso_ms(int(t.timestamp() * 1000)), "type": "staff", "point": point,
                    "staff": rnd.choice(["anna", "boris", "carl"])})
        for _ in range(60):
            dur = timedelta(seconds=rnd.randint(20, 200))
            ms = int(t.timestamp() * 1000)
            out.append({"ts": iso_ms(ms), "type": "presence", "point": point, "state": "arrived"})
            if rnd.random() < 0.5:
                out.append({"ts": iso_ms(ms + rnd.randint(1000, 15_000)), "type": "rating", "point": point,
                            "value": rnd.choice([1, 2, 2])})
            if rnd.random() < 0.9:
                receipt[0] += 1
                out.append({"ts": iso_ms(ms + 18_000), "type": "sale", "point": point, "receipt": f"R{receipt[0]}",
                            "amount": 9.5})
            out.append({"ts": iso_ms(ms + int(dur.total_seconds() * 1000)), "type": "presence", "point": point,
                        "state": "left"})
            t += dur + timedelta(seconds=rnd.randint(60, 600))
    return sorted(out, key=lambda e: e["ts"])


def test_five_months_leave_memory_journal_and_snapshot_flat(tmp_path):
    hook = HttpRecorder()
    hook.requests = _Discard()                          # the test's recorder keeps nothing either
    cfg = parse_config(CONFIG.format(state=tmp_path / "state", url=hook.url))
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=DAYS + 1)
    rnd, receipt = random.Random(5), [0]
    figures = []
    tracemalloc.start()
    try:
        with Journal.in_dir(tmp_path / "state") as j:
            stage = CoreStage(cfg, j, reorder_ms=0)
            sim = [0]                                   # the couriers' clock is the shop's too
            notify = Notifications(cfg, j, "box-1", clock=lambda: sim[0] / 1000).start()
            try:
                for d in range(DAYS):
                    start = first + timedelta(days=d)
                    src = tmp_path / "day.jsonl"
                    src.write_text("".join(json.dumps(e) + "\n" for e in day_of_events(rnd, start, receipt)))
                    evs, errs = load_file(str(src), cfg)
                    assert not errs
                    j.append_many(evs)
                    base = int(start.timestamp() * 1000)
                    for h in range(8, 22):                    # the day's hours: derive, route, alerts
                        sim[0] = base + h * HOUR
                        stage.step(base + h * HOUR)
                        notify.step()
                        alerts.evaluate(cfg, j, base + h * HOUR)
                    sim[0] = base + 24 * HOUR
                    stage.step(base + 24 * HOUR)
                    notify.step()
                    prune(cfg, j, base + 24 * HOUR, pause_s=0)
                    if (d + 1) % MONTH == 0:
                        figures.append({**_measure(j, tmp_path), "derived": stage.emitted, "sent": len(hook.statuses)})
            finally:
                notify.stop()
    finally:
        tracemalloc.stop()
        hook.close()
    by_month = "\n".join(f"month {i + 1}: {f}" for i, f in enumerate(figures))
    print(by_month)
    # retention reaches its steady state after keep_days (40): compare months 3 and 5
    m3, m5 = figures[2], figures[4]
    assert m5["python_kb"] - m3["python_kb"] < 256, by_month
    assert m5["pages_in_use"] <= m3["pages_in_use"] * 1.05, by_month
    assert m5["wal_mb"] <= 8.5, by_month
    assert m5["snapshot_bytes"] <= m3["snapshot_bytes"] * 1.2 + 256, by_month
    assert m5["events"] <= m3["events"] * 1.05 and m5["records"] <= m3["records"] * 1.05, by_month
    assert m5["outbox"] == 0 and m5["dead"] == 0, by_month
    assert m5["derived"] > m3["derived"] * 1.5 and m5["sent"] > m3["sent"] * 1.5, by_month    # busy all along
    assert m3["contacts"] > 1000, by_month


def _measure(j: Journal, tmp_path) -> dict:
    deadline = time.monotonic() + 60                    # the couriers empty their outboxes
    while time.monotonic() < deadline and j.db.execute("SELECT COUNT(*) FROM outbox WHERE dead = 0").fetchone()[0]:
        time.sleep(0.05)
    gc.collect()
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/appliance/*")])
    db = j.db
    wal = (tmp_path / "state" / "journal.db-wal")
    return {
        "python_kb": round(sum(s.size for s in snap.statistics("filename")) / 1024),
        "pages_in_use": db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0],
        "wal_mb": round(wal.stat().st_size / 1e6, 1) if wal.exists() else 0.0,
        "snapshot_bytes": len(db.execute("SELECT state FROM stages WHERE name = 'core'").fetchone()[0] or b""),
        "events": db.execute("SELECT COUNT(*) FROM events").fetchone()[0],
        "records": db.execute("SELECT COUNT(*) FROM records").fetchone()[0],
        "contacts": db.execute("SELECT COUNT(*) FROM events WHERE type = 'contact'").fetchone()[0],
        "outbox": db.execute("SELECT COUNT(*) FROM outbox WHERE dead = 0").fetchone()[0],
        "dead": db.execute("SELECT COUNT(*) FROM outbox WHERE dead = 1").fetchone()[0],
    }


class _Discard(list):
    def append(self, item) -> None:
        pass
