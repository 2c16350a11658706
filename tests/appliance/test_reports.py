"""Reports read the core's settled records by their index, for the period asked only; the
replay of the same events is the oracle they must equal — by point, owner, hour and day,
for any window, across a daylight-saving change, and after a rebuild with a changed config."""
from __future__ import annotations

import random

import pytest

from appliance.cli.report import grouped, grouped_journal
from appliance.config import parse_config
from appliance.core import CoreStage
from appliance.events import load_file
from appliance.journal import Journal
from appliance.rebuild import CoreRunning, rebuild
from appliance.replay import replay_file
from appliance.timefmt import iso_ms, parse_ts
from tests.conftest import write_events

DST_END = parse_ts("2026-10-25T01:00:00Z")          # Europe/Berlin: 03:00 CEST -> 02:00 CET
CONFIG = """
[time]
timezone = "Europe/Berlin"
[points.till1]
pos = true
rating_scale = {{ 1 = "negative", 2 = "negative", 3 = "neutral", 4 = "{four}", 5 = "top" }}
[points.till2]
[[points.till2.shifts]]
staff = "carl"
start = "00:00"
end = "23:59"
"""


def days(seed: int, start_ms: int, hours: int) -> list[dict]:
    rnd = random.Random(seed)
    out, receipt = [], 0
    for point in ("till1", "till2"):
        t = start_ms
        while t < start_ms + hours * 3_600_000:
            if rnd.random() < 0.05:
                out.append({"ts": iso_ms(t), "type": "staff", "point": point, "staff": rnd.choice(["anna", "boris"])})
            dur = rnd.randint(2_000, 400_000)
            out.append({"ts": iso_ms(t), "type": "presence", "point": point, "state": "arrived"})
            for _ in range(rnd.choice([0, 1, 1, 2, 6])):
                out.append({"ts": iso_ms(t + rnd.randint(0, dur + 25_000)), "type": "rating", "point": point,
                            "value": rnd.randint(1, 5) if point == "till1" else 1})
            if rnd.random() < 0.6:
                receipt += 1
                out.append({"ts": iso_ms(t + rnd.randint(0, dur + 35_000)), "type": "sale", "point": point,
                            "receipt": f"R{receipt}", "amount": rnd.choice([None, 9.5, 120.0])})
            out.append({"ts": iso_ms(t + dur), "type": "presence", "point": point, "state": "left"})
            if rnd.random() < 0.1:                      # a staff call, answered or not, held or not
                out.append({"ts": iso_ms(t + 1000), "type": "call", "point": point,
                            "press": rnd.choice(["short", "short", "long"])})
                if rnd.random() < 0.7:
                    out.append({"ts": iso_ms(t + rnd.randint(2_000, 300_000)), "type": "answer", "point": point})
            t += dur + rnd.randint(0, 900_000)
    out.sort(key=lambda e: e["ts"])
    return [{k: v for k, v in e.items() if v is not None} for e in out]


def live(cfg, path, events_path):
    """Events imported into a journal and derived by the core stage, as on the box."""
    j = Journal(path)
    evs, errs = load_file(str(events_path), cfg)
    assert not errs
    j.append_many(evs)
    stage = CoreStage(cfg, j, reorder_ms=0)
    while j.cursor("core") < j.last_seq() or stage.state.held:
        stage.step(parse_ts("2027-01-01T00:00:00Z"))
    return j


WINDOWS = [(None, None), ("2026-10-24", "2026-10-26"), ("2026-10-25T00:30:00Z", "2026-10-25T03:30:00Z"),
           ("2026-10-25", None), (None, "2026-10-25")]


@pytest.mark.parametrize("path", ["grouped", "keyed"])
@pytest.mark.parametrize("by", ["point", "owner", "hour", "day", "week", "month"])
def test_a_report_equals_the_replay_of_the_same_events(tmp_path, monkeypatch, by, path):
    """Both ways of reading a period's contacts: grouping its rows (few) and counting key by
    key through the indexes (many)."""
    from appliance import records as index
    monkeypatch.setattr(index, "KEYED_ABOVE", 0 if path == "keyed" else 1e18)
    cfg = parse_config(CONFIG.format(four="neutral"))
    src = write_events(tmp_path / "e.jsonl", days(7, DST_END - 30 * 3_600_000, 60))
    records, errors, _ = replay_file(cfg, str(src))
    assert not errors
    with live(cfg, tmp_path / "j.db", src) as j:
        for lo, hi in WINDOWS:
            lo_ms = parse_ts(lo + ("T00:00:00+01:00" if len(lo) == 10 else "")) if lo else None
            hi_ms = parse_ts(hi + ("T00:00:00+01:00" if len(hi) == 10 else "")) if hi else None
            assert grouped_journal(cfg, j, by, lo_ms, hi_ms) == grouped(cfg, records, by, lo_ms, hi_ms), (by, lo, hi)
    hours = grouped(cfg, records, "hour", DST_END - 3_600_000, DST_END + 3_600_000)
    if by == "hour":                                   # the repeated local hour is one row, counted in full
        assert "2026-10-25T02:00" in hours


def test_a_rebuild_after_a_config_change_equals_the_replay_with_the_new_config(tmp_path):
    old, new = parse_config(CONFIG.format(four="neutral")), parse_config(CONFIG.format(four="top"))
    src = write_events(tmp_path / "e.jsonl", days(11, DST_END - 30 * 3_600_000, 60))
    since = parse_ts("2026-10-25T00:00:00+02:00")
    with live(old, tmp_path / "j.db", src) as j:
        ids_before = {e.id for e in j.iter_all(["contact"])}
        out = rebuild(new, j, since, parse_ts("2027-01-01T00:00:00Z"))
        assert out["deleted"] > 0 and out["derived"] >= out["deleted"]
        rebuilt_new, _, _ = replay_file(new, str(src))
        rebuilt_old, _, _ = replay_file(old, str(src))
        assert grouped_journal(new, j, "day", since, None) == grouped(new, rebuilt_new, "day", since, None)
        assert grouped_journal(new, j, "day", None, since) == grouped(old, rebuilt_old, "day", None, since)
        assert {e.id for e in j.iter_all(["contact"])} == ids_before          # same records, same ids
        assert j.count("rebuild") == 1
        again = rebuild(new, j, since, parse_ts("2027-01-01T00:00:00Z"))  # idempotent
        assert grouped_journal(new, j, "day", since, None) == grouped(new, rebuilt_new, "day", since, None)
        assert again["deleted"] == out["deleted"]


def test_rebuild_refuses_while_the_core_runs(tmp_path):
    import json
    import subprocess
    import sys
    cfg = parse_config(CONFIG.format(four="neutral"))
    src = write_events(tmp_path / "e.jsonl", days(3, DST_END, 2))
    # stands for a running appliance-core: what rebuild checks is the pid and its "run core"
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "run", "core"])
    other = subprocess.Popen(["sleep", "30"])                         # a pid recycled by something else
    try:
        with live(cfg, tmp_path / "j.db", src) as j:
            j.db.execute("UPDATE stages SET info = ? WHERE name = 'core'", (json.dumps({"pid": daemon.pid}),))
            with pytest.raises(CoreRunning, match="stop it first"):
                rebuild(cfg, j, None, parse_ts("2027-01-01T00:00:00Z"))
            j.db.execute("UPDATE stages SET info = ? WHERE name = 'core'", (json.dumps({"pid": other.pid}),))
            assert rebuild(cfg, j, None, parse_ts("2027-01-01T00:00:00Z"))["derived"] > 0
    finally:
        for p in (daemon, other):
            p.kill()
            p.wait()


def test_the_index_is_migrated_for_an_older_journal(tmp_path):
    """A journal written before the index existed gets it from its settled records."""
    cfg = parse_config(CONFIG.format(four="neutral"))
    src = write_events(tmp_path / "e.jsonl", days(5, DST_END, 10))
    with live(cfg, tmp_path / "j.db", src) as j:
        want = grouped_journal(cfg, j, "hour", None, None)
        j.db.execute("DROP TABLE records")
        j.db.execute("PRAGMA user_version = 1")
    with Journal(tmp_path / "j.db") as j:
        assert grouped_journal(cfg, j, "hour", None, None) == want


def test_lengths_give_exactly_the_mean_and_median_statistics_gives():
    """Mean: the exactly rounded mean of the lengths (whole ms); median: statistics.median —
    from the histogram (a replay) and from the records index (the box)."""
    import statistics
    from fractions import Fraction

    from appliance.metrics import Tally
    rnd = random.Random(3)
    for n in (1, 2, 3, 10, 101, 1000):
        ms = [rnd.choice([rnd.randint(1000, 300_000), 3335, 5224, 5999, 6000]) for _ in range(n)]
        t = Tally()
        for m in ms:
            t.contact(m / 1000, [], None, None)
        res = t.result()
        assert res["mean_duration_s"] == float(Fraction(sum(ms), 1000 * n))
        assert res["median_duration_s"] == statistics.median([m / 1000 for m in ms])


def test_the_rating_log_finds_the_remote_of_records_settled_before_they_carried_it(tmp_path):
    from appliance import records
    from appliance.cli.report import rating_log_rows
    from appliance.journal import NewEvent
    t = parse_ts("2026-11-20T09:00:00Z")
    with Journal(tmp_path / "j.db") as j:
        press = j.append(NewEvent("rating", t, {"value": 1, "class": "negative", "remote": "a1b2c3", "button": 1},
                                  "till1", "rf"))
        press_id = j.db.execute("SELECT id FROM events WHERE seq = ?", (press,)).fetchone()[0]
        old = {"rating": press_id, "value": 1, "class": "negative", "status": "orphan", "owner": None, "contact": None}
        seq = j.append(NewEvent("rating_settled", t, old, "till1", "core", key="core:rating:old"))
        j.db.execute(records.INSERT, records.columns(seq, "rating_settled", "till1", t, None, old))
        new = {**old, "rating": "x", "remote": None, "button": None}      # a press from the till: no remote
        seq = j.append(NewEvent("rating_settled", t + 1, new, "till1", "core", key="core:rating:new"))
        j.db.execute(records.INSERT, records.columns(seq, "rating_settled", "till1", t + 1, None, new))
        assert list(rating_log_rows(j)) == [
            ["2026-11-20T09:00:00.000Z", "a1b2c3", 1, "till1", "", 1, "negative", "orphan"],
            ["2026-11-20T09:00:00.001Z", "", "", "till1", "", 1, "negative", "orphan"]]
