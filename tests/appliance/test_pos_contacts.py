"""Points without a presence sensor (``presence = "pos"``): each receipt whose sale carries
``opened`` is a contact from then to the sale's time (ARCHITECTURE §4); ratings and sales
attach by the usual rule; the receipt's own sale belongs to its contact; the average receipt,
items per receipt and the happy index; replay, the live core and the report agree."""
from __future__ import annotations

import json

import pytest

from appliance.config import parse_config
from appliance.errors import EventError
from appliance.events import from_dict
from appliance.pipeline import InputEvent, run
from appliance.records import report
from tests.appliance.test_reports import live
from tests.conftest import run_cli, write_events

T0 = 1_795_165_200_000  # 2026-11-20T09:00:00Z


def cfg_of(extra: str = "", more: str = ""):
    return parse_config('[points.p]\npresence = "pos"\npos = true\n'
                        'rating_scale = { 1 = "negative", 2 = "neutral", 3 = "top" }\n'
                        f"{extra}\n{more}")


def receipt(s_open, s_close, r, amount=None, items=None):
    d = {"receipt": r, "opened": T0 + round(s_open * 1000)}
    if amount is not None:
        d["amount"] = amount
    if items is not None:
        d["items"] = items
    return (s_close, "sale", d)


def rating(s, v):
    return (s, "rating", {"value": v})


def go(cfg, events, until_s=None):
    recs = run(cfg, (InputEvent(T0 + round(s * 1000), i, typ, "p", data, f"e{i}")
                     for i, (s, typ, data) in enumerate(events)),
               until=None if until_s is None else T0 + round(until_s * 1000))
    out: dict = {}
    for kind, r in recs:
        out.setdefault(kind, []).append(r)
    return out


def spans(out):
    return [((c.opened - T0) / 1000, (c.closed - T0) / 1000) for c in out.get("contact", [])]


def test_each_receipt_is_a_contact_that_owns_its_sale():
    out = go(cfg_of(), [receipt(0, 40, "R1", 12.5, 3), receipt(60, 95, "R2", 7.5, 1)])
    assert spans(out) == [(0, 40), (60, 95)]
    c1, c2 = out["contact"]
    assert [s.receipt for s in c1.sales] == ["R1"] and [s.receipt for s in c2.sales] == ["R2"]
    assert c1.tags == ["unrated", "not_positive", "productive"]
    assert {s.receipt: s.contact for s in out["sale"]} == {"R1": c1.id, "R2": c2.id}


def test_ratings_attach_inside_then_by_grace_then_orphan():
    # a rating while the receipt is open, one just after paying, one long after
    out = go(cfg_of(), [rating(10, 3), receipt(0, 40, "R1"), rating(50, 1), rating(200, 2),
                        receipt(300, 330, "R2")])
    c1, c2 = out["contact"]
    assert c1.rating.value == 1 and [r.value for r in c1.superseded] == [3]      # the last one wins
    assert c1.tags == ["rated", "not_positive", "negative", "productive"]
    assert c2.rating is None
    orphans = [r.value for r in out["rating"] if r.status == "orphan"]
    assert orphans == [2]


def test_a_rating_during_an_open_receipt_waits_for_it():
    """The rating is pressed at 20 s while R1 (opened at 5 s) is still open; R1 closes at
    30 s. The rating must not fall to R0's grace window or become an orphan meanwhile."""
    out = go(cfg_of(), [receipt(0, 3.5, "R0"), rating(20, 3), receipt(5, 30, "R1")])
    r0, r1 = out["contact"]
    assert spans(out) == [(0, 3.5), (5, 30)]
    assert r0.rating is None and r1.rating.value == 3


def test_a_rating_with_no_receipt_settles_after_max_contact():
    cfg = cfg_of("max_contact_s = 600")
    from appliance.pipeline import Pipeline
    p = Pipeline(cfg)
    p.feed(T0 + 10_000, "rating", "p", {"value": 3}, "r")
    p.advance(T0 + 609_000)
    assert [k for k, _ in p.drain()] == ["press"]                # a receipt open since 9 s could still hold it
    p.advance(T0 + 611_000)
    assert [(k, r.status) for k, r in p.drain()] == [("rating", "orphan")]


def test_short_receipts_are_discarded_long_ones_truncated():
    cfg = cfg_of("min_contact_s = 5\nmax_contact_s = 120\ndwell_s = 60")
    out = go(cfg, [receipt(0, 2, "quick", 1.0), rating(1, 3), receipt(10, 400, "slow", 99.0), rating(300, 1)])
    assert spans(out) == [(10, 130)]
    [c] = out["contact"]
    assert c.truncated and c.long and [s.receipt for s in c.sales] == ["slow"]
    assert c.tags == ["unrated", "not_positive", "productive", "long", "truncated"]
    sales = {s.receipt: s.contact for s in out["sale"]}
    assert sales["quick"] is None                                  # a discarded contact takes nothing
    assert sorted(r.status for r in out["rating"]) == ["orphan", "orphan"]


def test_sales_without_opened_attach_by_the_rule():
    out = go(cfg_of(), [receipt(0, 40, "R1"), (45, "sale", {"receipt": "extra"}), (500, "sale", {"receipt": "lone"})])
    [c] = out["contact"]
    assert [s.receipt for s in c.sales] == ["R1", "extra"]
    assert {s.receipt: s.contact for s in out["sale"]}["lone"] is None


def test_presence_and_sensor_events_cannot_count_at_a_pos_point():
    cfg = cfg_of()
    for ev in ({"type": "presence", "state": "arrived"}, {"type": "sensor", "present": True}):
        with pytest.raises(EventError, match="takes its contacts from the till"):
            from_dict({"ts": T0, "point": "p", **ev}, cfg)
    rejected: list = []
    out = run(cfg, [InputEvent(T0, 1, "presence", "p", {"state": "arrived"}, "x")], rejected=rejected)
    assert out == [] and rejected and "from the till" in rejected[0][1]


def test_opened_is_checked():
    cfg = cfg_of()
    base = {"ts": "2026-11-20T09:00:00Z", "type": "sale", "point": "p", "receipt": "R"}
    ev = from_dict({**base, "opened": "2026-11-20T08:58:30Z"}, cfg)
    assert ev.data["opened"] == T0 - 90_000
    with pytest.raises(EventError, match="opened: the receipt was opened after"):
        from_dict({**base, "opened": "2026-11-20T09:00:01Z"}, cfg)
    with pytest.raises(EventError, match="more than 24 hours"):
        from_dict({**base, "opened": "2026-11-18T09:00:00Z"}, cfg)
    with pytest.raises(EventError, match="opened"):
        from_dict({**base, "opened": "yesterday"}, cfg)


def test_a_sensor_on_a_pos_point_is_a_config_error():
    from appliance.errors import ConfigError
    with pytest.raises(ConfigError, match="sensors.s1.point: point p takes its presence from the till"):
        cfg_of(more='[sensors.s1]\npoint = "p"\npin = 17\n')


def test_receipt_figures_and_happy_index():
    out = go(cfg_of(), [receipt(0, 40, "R1", 10.0, 4), rating(30, 3), receipt(60, 95, "R2", 25.0),
                        rating(80, 1), receipt(120, 150, "R3", None, 2), rating(400, 2)])
    from appliance.metrics import summary
    m = summary([(k, r) for k, rs in out.items() for r in rs])["overall"]
    assert m["receipts"] == 3 and m["revenue"] == 35.0
    assert m["avg_receipt"] == 17.5                      # over the two receipts with an amount
    assert m["items_per_receipt"] == 3.0                 # (4 + 2) / 2 receipts with a count
    assert m["happy_index"] == 50.0                      # 3 -> 100, 1 -> 0, orphan 2 -> 50
    assert m["conversion"] == 1.0 and m["contacts"] == 3


DAY = [
    {"ts": "2026-11-20T09:00:00Z", "type": "staff", "point": "till1", "staff": "anna"},
    {"ts": "2026-11-20T09:01:10Z", "type": "rating", "point": "till1", "value": 5},
    {"ts": "2026-11-20T09:01:30Z", "type": "sale", "point": "till1", "receipt": "A1", "amount": 20.0, "items": 2,
     "opened": "2026-11-20T09:00:40Z"},
    {"ts": "2026-11-20T09:01:40Z", "type": "rating", "point": "till1", "value": 1},
    {"ts": "2026-11-20T09:03:00Z", "type": "sale", "point": "till1", "receipt": "A2", "amount": 5.5, "items": 1,
     "opened": "2026-11-20T09:02:00Z"},
    {"ts": "2026-11-20T09:10:00Z", "type": "staff", "point": "till1", "staff": "anna", "action": "logout"},
    {"ts": "2026-11-20T09:10:30Z", "type": "rating", "point": "till1", "value": 4},
    {"ts": "2026-11-20T09:12:00Z", "type": "sale", "point": "till1", "receipt": "A3", "amount": 9.99,
     "opened": "2026-11-20T09:09:50Z"},
]
CONFIG = """
[device]
id = "box"
state_dir = "{state}"
[points.till1]
presence = "pos"
pos = true
rating_scale = {{ 1 = "negative", 2 = "negative", 3 = "neutral", 4 = "neutral", 5 = "top" }}
"""


def test_replay_live_core_and_report_agree(tmp_path):
    cfg_path = tmp_path / "box.toml"
    cfg_path.write_text(CONFIG.format(state=tmp_path / "state"))
    events = write_events(tmp_path / "e.jsonl", DAY)
    r = run_cli("replay", "--config", str(cfg_path), "--events", str(events), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    contacts = [json.loads(x) for x in (tmp_path / "out" / "contacts.jsonl").read_text().splitlines()]
    assert [(c["opened"][11:19], c["closed"][11:19], c["owner"], c["rating"], c["sales"]) for c in contacts] == [
        ("09:00:40", "09:01:30", "anna", 1, ["A1"]),         # 5 while open, then 1 in its grace: the last wins
        ("09:02:00", "09:03:00", "anna", None, ["A2"]),
        ("09:09:50", "09:12:00", "anna", 4, ["A3"])]          # opened before the log-out: anna's
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())["overall"]
    assert (m["contacts"], m["receipts"], m["conversion"], m["revenue"]) == (3, 3, 1.0, 35.49)
    assert m["avg_receipt"] == 11.83 and m["items_per_receipt"] == 1.5
    assert m["happy_index"] == 37.5                          # 1 -> 0, 4 -> 75
    from appliance.config import load_config
    cfg = load_config(cfg_path)
    with live(cfg, tmp_path / "j.db", events) as j:
        got = report(j.db, "day", "UTC", None, None)
    day = got["total"].result()
    for key in ("contacts", "receipts", "revenue", "avg_receipt", "items_per_receipt", "happy_index", "csi", "cdi"):
        assert day[key] == m[key], key


def test_the_core_snapshot_resumes_a_pos_point_mid_receipt():
    """A rating waits for its receipt across a core restart (the snapshot keeps the point's
    horizon and the waiting rating)."""
    from appliance import snapshot
    from appliance.pipeline import Pipeline
    cfg = cfg_of()
    events = [rating(10, 3), receipt(0, 40, "R1", 5.0), rating(60, 1), receipt(55, 90, "R2", 6.0)]
    whole = go(cfg, events, until_s=4000)
    p = Pipeline(cfg)
    first: list = []
    for i, (s, typ, data) in enumerate(events):
        if i == 1:                                             # restart between the rating and its receipt
            first += p.drain()
            p, _ = snapshot.load(snapshot.dump(p, [], "h"), cfg, "h")
        p.feed(T0 + round(s * 1000), typ, "p", data, f"e{i}")
    p.advance(T0 + 4_000_000)
    got = first + p.finish()
    assert [(k, getattr(r, "id", None)) for k, r in got if k == "contact"] == \
        [("contact", c.id) for c in whole["contact"]]
    assert [c.rating.value for _, c in ((k, r) for k, r in got if k == "contact")] == [3, 1]
