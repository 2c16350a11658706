"""The unknown-remote limiter, pure: time is an argument."""
from __future__ import annotations

from appliance import vocabulary as v
from rf_receiver.unknown import UnknownRemoteLimiter


def unknown(code: int, ts: int):
    return v.UnknownRemote(remote=f"{code:x}", button=1, protocol="EV1527", code=code, bits=24, frames=3,
                           unit_us=350.0).as_event(ts, None, "rf")


def test_first_codes_once_then_counted_and_summarised_at_the_window_end():
    lim = UnknownRemoteLimiter(window_ms=60_000, max_codes=2)
    out = []
    for i, code in enumerate([1, 1, 2, 3, 3, 4, 1]):
        out += lim.admit(unknown(code, 1000 + i), 1000 + i)
    assert [e.data["code"] for e in out] == [1, 2]             # each of the first two codes once
    assert lim.tick(30_000) == []                              # the window is not over
    [summary] = lim.tick(61_000)
    s = v.read(_as_event(summary), v.UnknownRemotes)
    assert (s.presses, s.codes) == (5, 3)                      # 1 again, 3, 3, 4, 1 again: codes 1, 3, 4
    assert lim.admit(unknown(9, 62_000), 62_000)[0].data["code"] == 9   # a new window
    assert lim.tick(62_001, force=True) == []                  # nothing counted in it yet


def _as_event(ev):
    from appliance.journal import Event
    return Event(1, "id", ev.type, ev.point, ev.ts, ev.data, ev.source)
