"""Property-based tests of the contact builder (hypothesis): any interleaving of
presence, rating, sale and staff events at two points gives contacts that never overlap,
attaches every rating to at most one contact by exactly the §4 rule (checked against a
brute-force oracle), and metrics that equal a direct recount from contacts.jsonl."""
from __future__ import annotations

import json
import os
import statistics
from fractions import Fraction
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config import parse_config
from appliance.replay import replay_file, write_outputs
from appliance.timefmt import iso_ms, parse_ts

T0 = 1_795_165_200_000

CFG = parse_config("""
[points.a]
pos = true
max_contact_s = 60
dwell_s = 40
rating_scale = { 1 = "negative", 2 = "neutral", 3 = "top" }
[points.b]
presence = "sensor"
max_contact_s = 45
rating_scale = { 1 = "negative", 2 = "top" }
[sensors.s]
point = "b"
""")

events_a = st.one_of(
    st.sampled_from(["arrived", "left", "left", "dwell"]).map(lambda s: {"type": "presence", "state": s}),
    st.integers(1, 3).map(lambda v: {"type": "rating", "value": v}),
    st.just({"type": "sale"}),
    st.sampled_from(["anna", "boris"]).map(lambda s: {"type": "staff", "staff": s, "action": "login"}),
    st.sampled_from(["anna", "boris"]).map(lambda s: {"type": "staff", "staff": s, "action": "logout"}),
)
events_b = st.one_of(
    st.booleans().map(lambda p: {"type": "sensor", "present": p}),
    st.integers(1, 2).map(lambda v: {"type": "rating", "value": v}),
    st.just({"type": "sale"}),
    st.just({"type": "staff", "staff": "carla", "action": "login"}),
)
step = st.tuples(st.integers(0, 15_000), st.one_of(events_a.map(lambda e: ("a", e)), events_b.map(lambda e: ("b", e))))


def materialise(steps):
    t = T0
    out = []
    for n, (dt, (point, e)) in enumerate(steps):
        t += dt
        e = dict(e, ts=iso_ms(t), point=point)
        if e["type"] == "sale":
            e["receipt"] = f"R{n}"
        out.append(e)
    return out


def replay(tmp: Path, events):
    src = tmp / "events.jsonl"
    src.write_text("".join(json.dumps(e) + "\n" for e in events))
    records, errors, n = replay_file(CFG, str(src))
    assert not errors and n == len(events)
    metrics = write_outputs(CFG, records, tmp / "out")
    contacts = [json.loads(line) for line in (tmp / "out" / "contacts.jsonl").read_text().splitlines()]
    return records, metrics, contacts


def misuse_oracle(times: list[int], presses: int = 5, window_ms: int = 10_000) -> int:
    return sum(1 for i, t in enumerate(times) if sum(1 for u in times[: i + 1] if u >= t - window_ms) >= presses)


def rule_target(t: int, contacts: list[dict], grace_ms: int) -> str | None:
    """§4 attachment, brute force over the final contacts of one point."""
    spans = [(parse_ts(c["opened"]), parse_ts(c["closed"]), c["id"]) for c in contacts]
    inside = [cid for o, c, cid in spans if o <= t < c]
    if inside:
        return inside[0]
    before = [(c, cid) for o, c, cid in spans if c <= t]
    if before:
        c, cid = max(before)
        if t <= c + grace_ms:
            return cid
    return None


@settings(max_examples=4000 if os.environ.get("APPLIANCE_SOAK") else 300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(step, max_size=120))
def test_contacts_ratings_metrics_properties(tmp_path_factory, steps):
    tmp = tmp_path_factory.mktemp("prop")
    events = materialise(steps)
    records, metrics, contacts = replay(tmp, events)

    # 1. contacts never overlap at a point, and each lies within its limits
    for point, max_s in (("a", 60), ("b", 45)):
        mine = sorted((c for c in contacts if c["point"] == point), key=lambda c: c["opened"])
        for prev, nxt in zip(mine, mine[1:], strict=False):
            assert parse_ts(prev["closed"]) <= parse_ts(nxt["opened"])
        for c in mine:
            assert 3 <= c["duration_s"] <= max_s
            assert ("truncated" in c["tags"]) == (c["duration_s"] == max_s and "truncated" in c["tags"])

    # 2. every rating press ends in exactly one state; each attached to at most one contact
    ratings = [r for k, r in records if k == "rating"]
    n_input = sum(1 for e in events if e["type"] == "rating")
    assert len(ratings) == n_input
    assert len({r.ref for r in ratings}) == n_input
    by_id = {c["id"]: c for c in contacts}
    held = [r for r in ratings if r.status in ("counted", "superseded")]
    assert all(r.contact in by_id for r in held)
    for c in contacts:
        counted = [r for r in ratings if r.contact == c["id"] and r.status == "counted"]
        assert len(counted) == (1 if c["rating"] is not None else 0)
        if counted:
            assert counted[0].value == c["rating"]
            later = [r for r in held if r.contact == c["id"] and (r.t, r.order) > (counted[0].t, counted[0].order)]
            assert not later  # the last one wins

    # 3. attachment follows the §4 rule exactly (brute-force oracle over final contacts)
    for r in ratings:
        if r.status == "misuse":
            continue
        mine = [c for c in contacts if c["point"] == r.point]
        assert rule_target(r.t, mine, 20_000) == (r.contact if r.status != "orphan" else None)
    for s in (s for k, s in records if k == "sale"):
        mine = [c for c in contacts if c["point"] == s.point]
        assert rule_target(s.t, mine, 30_000) == s.contact
        if s.contact:
            assert s.receipt in by_id[s.contact]["sales"]

    # 4. misuse presses match a direct sliding-window count
    for point in ("a", "b"):
        times = [parse_ts(e["ts"]) for e in events if e["type"] == "rating" and e["point"] == point]
        assert metrics["points"][point]["misuse"] == misuse_oracle(times)

    # 5. metrics equal a direct recount from contacts.jsonl (+ the input for orphans/receipts)
    for point in ("a", "b"):
        mine = [c for c in contacts if c["point"] == point]
        m = metrics["points"][point]
        n = len(mine)
        scale = CFG.points[point].rating_scale
        orphans = [r for r in ratings if r.point == point and r.status == "orphan"]
        rated = [c for c in mine if c["rating"] is not None]
        top = sum(1 for c in rated if scale[c["rating"]] == "top") + sum(1 for r in orphans if r.cls == "top")
        neg = sum(1 for c in rated if scale[c["rating"]] == "negative") + sum(1 for r in orphans if r.cls == "negative")
        n_ratings = len(rated) + len(orphans)
        receipts = sum(1 for e in events if e["type"] == "sale" and e["point"] == point)
        assert m["contacts"] == n
        assert m["ratings"] == n_ratings and m["top"] == top and m["negative"] == neg
        assert m["orphan_ratings"] == len(orphans)
        assert m["receipts"] == receipts
        if n == 0:
            assert all(m[k] is None for k in ("response_rate", "csi", "cdi", "cci", "eli", "conversion",
                                              "mean_duration_s", "median_duration_s"))
            continue
        durations = [c["duration_s"] for c in mine]
        assert m["mean_duration_s"] == float(Fraction(sum(round(d * 1000) for d in durations), 1000 * n))
        assert m["median_duration_s"] == statistics.median(durations)
        assert m["response_rate"] == len(rated) / n
        assert m["csi"] == top / n and m["cdi"] == neg / n
        assert m["cci"] == (n_ratings - top) / n and m["eli"] == (top - neg) / n
        assert m["conversion"] == receipts / n
        assert sum(1 for c in mine if "unproductive" in c["tags"]) == (
            sum(1 for c in mine if not c["sales"]) if CFG.points[point].pos else 0)

    # 6. overall = sum of points for counts
    for k in ("contacts", "ratings", "top", "negative", "orphan_ratings", "misuse", "receipts"):
        assert metrics["overall"][k] == sum(metrics["points"][p][k] for p in ("a", "b"))
