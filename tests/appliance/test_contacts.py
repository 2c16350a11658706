"""ARCHITECTURE §4, case by case: contacts, attachment, misuse, owners, tags."""
from __future__ import annotations

import pytest

from appliance.config import parse_config
from appliance.pipeline import InputEvent, Pipeline, run

T0 = 1_795_165_200_000  # 2026-11-20T09:00:00Z


def cfg_of(point_extra: str = "", presence: str = "rf", more: str = ""):
    sensor = '[sensors.s1]\npoint = "p"\n' if presence == "sensor" else ""
    return parse_config(f'[points.p]\npresence = "{presence}"\npos = true\n'
                        f'rating_scale = {{ 1 = "negative", 2 = "neutral", 3 = "top" }}\n'
                        f"{point_extra}\n{sensor}{more}")


def go(cfg, events):
    """events: (seconds after T0, type, data) at point p -> records by kind."""
    recs = run(cfg, (InputEvent(T0 + round(s * 1000), i, typ, "p", data, f"e{i}") for i, (s, typ, data) in enumerate(events)))
    out = {}
    for kind, r in recs:
        out.setdefault(kind, []).append(r)
    return out


def arrived(s):
    return (s, "presence", {"state": "arrived"})


def left(s):
    return (s, "presence", {"state": "left"})


def rating(s, v):
    return (s, "rating", {"value": v})


def sale(s, r):
    return (s, "sale", {"receipt": r})


def sensor(s, present):
    return (s, "sensor", {"present": present})


def contacts(out):
    return [((c.opened - T0) / 1000, (c.closed - T0) / 1000) for c in out.get("contact", [])]


def test_rf_contact_rating_sale_tags():
    out = go(cfg_of(), [arrived(0), sale(5, "R1"), rating(8, 3), left(10)])
    [c] = out["contact"]
    assert contacts(out) == [(0, 10)]
    assert c.rating.value == 3 and [s.receipt for s in c.sales] == ["R1"]
    assert c.tags == ["rated", "positive", "productive"]


def test_short_contact_discarded_and_takes_nothing():
    out = go(cfg_of(), [arrived(0), rating(1, 1), left(2.999)])
    assert "contact" not in out
    assert [r.status for r in out["rating"]] == ["orphan"]


def test_min_contact_is_inclusive_and_max_truncates_strictly():
    out = go(cfg_of("max_contact_s = 60"), [arrived(0), left(3), arrived(10), left(70), arrived(100), left(160.001)])
    assert contacts(out) == [(0, 3), (10, 70), (100, 160)]
    assert [c.truncated for c in out["contact"]] == [False, False, True]


def test_truncated_presence_opens_nothing_until_next_arrival():
    out = go(cfg_of("max_contact_s = 60"), [arrived(0), rating(70, 1), left(90), rating(200, 3)])
    [c] = out["contact"]
    assert (c.closed - T0) == 60_000 and "truncated" in c.tags
    # 70 s is within the 20 s grace after the truncated close at 60 s
    assert c.rating.value == 1
    assert [r.status for r in out["rating"] if r.status == "orphan"] == ["orphan"]


def test_rating_grace_inclusive_and_orphan_after():
    out = go(cfg_of(), [arrived(0), left(10), rating(30, 3), arrived(100), left(110), rating(130.001, 1)])
    first, second = out["contact"]
    assert first.rating.value == 3
    assert second.rating is None
    assert [r.value for r in out["rating"] if r.status == "orphan"] == [1]


def test_sale_grace_and_several_sales():
    out = go(cfg_of(), [arrived(0), sale(2, "A"), left(10), sale(40, "B"), sale(40.001, "C")])
    [c] = out["contact"]
    assert [s.receipt for s in c.sales] == ["A", "B"]
    assert [s.receipt for s in out["sale"] if s.contact is None] == ["C"]


def test_last_rating_wins_and_earlier_are_superseded():
    out = go(cfg_of(), [arrived(0), rating(2, 1), rating(4, 3), left(10)])
    [c] = out["contact"]
    assert c.rating.value == 3
    assert [(r.value, r.status) for r in out["rating"]] == [(1, "superseded"), (3, "counted")]


def test_new_arrival_closes_open_contact():
    out = go(cfg_of(), [arrived(0), arrived(10), rating(12, 1), left(20)])
    assert contacts(out) == [(0, 10), (10, 20)]
    assert out["contact"][0].rating is None and out["contact"][1].rating.value == 1


def test_rating_in_discarded_contact_falls_back_to_grace_of_previous():
    out = go(cfg_of(), [arrived(0), left(10), arrived(12), rating(13, 1), left(14)])
    [c] = out["contact"]
    assert contacts(out) == [(0, 10)] and c.rating.value == 1


def test_misuse_window_inclusive_and_kept_out():
    presses = [rating(20 + i * 2.5, 1) for i in range(5)]  # 20, 22.5 ... 30: 5 presses within 10 s
    out = go(cfg_of(), [arrived(0)] + presses + [left(40)])
    statuses = [r.status for r in out["rating"]]
    assert statuses.count("misuse") == 1
    c = out["contact"][0]
    assert c.rating.value == 1 and len(c.superseded) == 3


def test_misuse_window_is_sliding_over_flagged_presses():
    presses = [rating(20 + i, 3) for i in range(8)]
    out = go(cfg_of(), [arrived(0)] + presses + [left(40)])
    assert [r.status for r in out["rating"]].count("misuse") == 4


def test_dwell_and_long_tags():
    out = go(cfg_of("dwell_s = 30"), [arrived(0), left(30), arrived(40), left(70.001),
                                      arrived(100), (105, "presence", {"state": "dwell"}), left(110)])
    assert [("long" in c.tags) for c in out["contact"]] == [False, True, True]


def test_left_and_dwell_without_contact_are_ignored():
    out = go(cfg_of(), [left(0), (1, "presence", {"state": "dwell"}), arrived(2), left(8)])
    assert contacts(out) == [(2, 8)] and "long" not in out["contact"][0].tags


def test_unproductive_only_at_pos_points():
    out = go(parse_config('[points.p]\npos = false'), [arrived(0), left(10)])
    assert out["contact"][0].tags == ["unrated", "not_positive"]
    out = go(cfg_of(), [arrived(0), left(10)])
    assert out["contact"][0].tags == ["unrated", "not_positive", "unproductive"]


def test_owner_at_open_time_and_orphan_owner_at_own_time():
    cfg = cfg_of()
    out = go(cfg, [(0, "staff", {"staff": "anna", "action": "login"}), arrived(1),
                   (5, "staff", {"staff": "boris", "action": "login"}), left(10), sale(12, "R"),
                   rating(100, 3), (101, "staff", {"staff": "boris", "action": "logout"}), rating(200, 1)])
    [c] = out["contact"]
    assert c.owner == "anna" and c.sales[0].owner == "anna"
    orphans = [r for r in out["rating"] if r.status == "orphan"]
    assert [(r.value, r.owner) for r in orphans] == [(3, "boris"), (1, None)]


def test_owner_from_shift_schedule():
    cfg = cfg_of('[[points.p.shifts]]\nstaff = "night"\nstart = "22:00"\nend = "06:00"\n'
                 '[[points.p.shifts]]\nstaff = "day"\nstart = "08:00"\nend = "16:00"\ndays = ["fri"]')
    out = go(cfg, [arrived(0), left(10), arrived(14 * 3600), left(14 * 3600 + 10)])  # Fri 09:00, 23:00
    assert [c.owner for c in out["contact"]] == ["day", "night"]


def test_open_contact_at_end_stays_uncounted_and_grace_ends_with_input():
    out = go(cfg_of(), [arrived(0), left(10), arrived(12), rating(13, 3)])
    [c] = out["contact"]
    assert contacts(out) == [(0, 10)] and c.rating.value == 3


def test_sensor_debounce_open_and_close_times():
    cfg = cfg_of(presence="sensor")
    out = go(cfg, [sensor(0, True), sensor(1.999, False), sensor(10, True), sensor(20, False),
                   sensor(24, True), sensor(30, False), rating(33, 3), sensor(60, True)])
    # 0..1.999 never lasts 2 s; 10.. opens at 10; the 4 s gap at 20 does not close it; closes at 30
    assert contacts(out) == [(10, 30)]
    assert out["contact"][0].rating.value == 3


def test_sensor_min_presence_inclusive():
    out = go(cfg_of(presence="sensor"), [sensor(0, True), sensor(2, False), sensor(100, True), sensor(110, False),
                                         sensor(200, True)])
    assert contacts(out) == [(100, 110)]
    # 0..2 opened (presence lasted exactly 2 s) but is shorter than min_contact_s (3): discarded
    out = go(cfg_of(presence="sensor", point_extra="min_contact_s = 2"),
             [sensor(0, True), sensor(2, False), sensor(100, True)])
    assert contacts(out) == [(0, 2)]


def test_sensor_leave_after_inclusive():
    out = go(cfg_of(presence="sensor"), [sensor(0, True), sensor(10, False), sensor(15, True),
                                         sensor(20, False), sensor(50, True)])
    # absence 10..15 lasted exactly leave_after_s: the contact closed at 10; 15.. is new
    assert contacts(out) == [(0, 10), (15, 20)]


def test_sensor_truncation_and_suppression():
    out = go(cfg_of(presence="sensor", point_extra="max_contact_s = 60"),
             [sensor(0, True), sensor(100, False), sensor(200, True), sensor(210, False), sensor(300, True)])
    assert contacts(out) == [(0, 60), (200, 210)]
    assert out["contact"][0].truncated and not out["contact"][1].truncated


def test_sensor_truncation_across_a_short_gap():
    out = go(cfg_of(presence="sensor", point_extra="max_contact_s = 60"),
             [sensor(0, True), sensor(59, False), sensor(62, True), sensor(80, False), sensor(200, True)])
    assert contacts(out) == [(0, 60)] and out["contact"][0].truncated


def test_sensor_rating_waits_for_settled_contact():
    # the rating at 101 is inside the contact opened at 100, which is only known at 102
    out = go(cfg_of(presence="sensor"), [sensor(100, True), rating(101, 1), sensor(150, False),
                                         sensor(300, True), rating(300.5, 3), sensor(301, False)])
    [c] = out["contact"]
    assert contacts(out) == [(100, 150)] and c.rating.value == 1
    # 300..301 never became a contact: that rating is an orphan
    assert [r.value for r in out["rating"] if r.status == "orphan"] == [3]


@pytest.mark.parametrize("gap", [0, 1])
def test_timer_due_at_t_fires_before_event_at_t(gap):
    # truncation due at 60.001: a left at exactly 60.001 finds the contact already cut
    out = go(cfg_of("max_contact_s = 60"), [arrived(0), left(60 + gap / 1000)])
    assert out["contact"][0].truncated == bool(gap)


def test_late_events_counted_not_lost():
    p = Pipeline(cfg_of())
    p.feed(T0, "presence", "p", {"state": "arrived"})
    p.feed(T0 + 10_000, "presence", "p", {"state": "left"})
    p.feed(T0 + 5_000, "rating", "p", {"value": 3})
    out = p.finish()
    assert p.late == 1
    assert [r.status for k, r in out if k == "rating"] == ["counted"]


def test_auto_point_takes_presence_from_its_first_source_and_reports_the_other():
    cfg = parse_config("[points.p]\n")
    rejected = []
    out = run(cfg, [InputEvent(T0, 1, "sensor", "p", {"present": True}, "l1"),
                    InputEvent(T0 + 1000, 2, "presence", "p", {"state": "arrived"}, "l2"),
                    InputEvent(T0 + 30_000, 3, "sensor", "p", {"present": False}, "l3"),
                    InputEvent(T0 + 60_000, 4, "sensor", "p", {"present": True}, "l4")], rejected=rejected)
    assert [((c.opened - T0), (c.closed - T0)) for k, c in out if k == "contact"] == [(0, 30_000)]
    assert rejected == [("l2", "point p takes its presence from sensor events; a presence event cannot count here")]
