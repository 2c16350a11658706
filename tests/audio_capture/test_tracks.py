"""One definition of the clips a day asks for: the live audio stage (journal -> core ->
clip requests) and replay ask for exactly the same tracks — windows and clip ids — for
contacts, rating presses and call presses (short and long)."""
from __future__ import annotations

from appliance.config import parse_config
from appliance.core import CoreStage
from appliance.journal import Journal, NewEvent
from appliance.pipeline import InputEvent, run
from appliance.replay import replay_journal
from audio_capture.replay import tracks
from audio_capture.stage import INPUT, AudioStage
from audio_capture.tracks import contact_track, press_track

T0 = 1_795_165_200_000
CFG = parse_config("""
[points.till1]
[audio]
pre_s = 2
post_s = 3
before_s = 30
after_s = 15
""")


def day(j: Journal) -> None:
    evs = [("presence", 0, {"state": "arrived"}), ("rating", 20, {"value": 2, "class": "top"}),
           ("call", 25, {"press": "short"}), ("call", 40, {"press": "long"}),
           ("presence", 60, {"state": "left"}), ("rating", 200, {"value": 1, "class": "negative"}),
           ("presence", 300, {"state": "arrived"}), ("presence", 330, {"state": "left"})]
    j.append_many([NewEvent(t, T0 + s * 1000, d, "till1", "test") for t, s, d in evs])


def test_live_and_replay_ask_for_the_same_tracks(tmp_path):
    with Journal(tmp_path / "j.db") as j:
        day(j)
        CoreStage(CFG, j, reorder_ms=0).step(T0 + 3_600_000)
        stage = AudioStage(CFG, j, tmp_path / "spool", tmp_path / "clips")
        live = {t for ev in j.iter_all(INPUT) if (t := stage._track_for(ev)) is not None}
        replayed = {t for t, _ in tracks(CFG, replay_journal(CFG, j, T0 + 3_600_000),
                                         [InputEvent.from_journal(e) for e in j.iter_all(["rating", "call"])])}
    assert live == replayed
    kinds = sorted((t.kind, t.press or "") for t in live)
    assert kinds == [("contact", ""), ("contact", ""), ("press", "call"), ("press", "call"),
                     ("press", "rating"), ("press", "rating")]


def test_windows():
    c = contact_track(CFG, "k1", "till1", T0, T0 + 60_000)
    assert (c.start_ms, c.end_ms) == (T0 - 2_000, T0 + 63_000)
    p = press_track(CFG, "rating", "e1", "till1", T0)
    assert (p.start_ms, p.end_ms, p.press) == (T0 - 30_000, T0 + 15_000, "rating")
    assert p.id == press_track(CFG, "rating", "e1", "till1", T0).id != press_track(CFG, "rating", "e2", "till1", T0).id


def test_replay_of_a_file_cuts_a_press_track_for_every_press():
    inputs = [InputEvent(T0, 1, "presence", "till1", {"state": "arrived"}, "line1"),
              InputEvent(T0 + 5_000, 2, "call", "till1", {"press": "short"}, "line2"),
              InputEvent(T0 + 9_000, 3, "call", "till1", {"press": "long"}, "line3"),
              InputEvent(T0 + 10_000, 4, "presence", "till1", {"state": "left"}, "line4")]
    out = tracks(CFG, run(CFG, inputs), inputs)
    assert [(t.kind, t.ref) for t, _ in out] == [("press", "line2"), ("press", "line3"), ("contact", out[2][0].ref)]
