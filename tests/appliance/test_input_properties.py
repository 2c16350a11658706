"""Property tests for the box's parsers of outside input (ARCHITECTURE §11): a drop-folder
line or a POS request body gives a journal event or a clear EventError / 4xx answer, never
another exception, whatever the bytes: nesting, huge numbers, odd bytes, wrong types."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.clock import Clock, Stamp
from appliance.config import parse_config
from appliance.errors import EventError
from appliance.events import decode_line
from appliance.journal import NewEvent
from appliance.limits import nesting_depth
from appliance.pos_api import PosApi

CFG = parse_config('[points.till1]\npos = true\n[pos]\nlisten = "127.0.0.1:0"\ntoken = "0123456789abcdef0123"\n'
                   '[remotes.a1b2c3]\npoint = "till1"\nbuttons = { 1 = { meaning = "rating", value = 1 } }\n')

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats()
           | st.text(max_size=12) | st.sampled_from(["2026-11-20T09:00:00Z", "9999-12-31T23:59:59Z", "till1", "sale",
                                                     "staff", "rating", "button", "presence", "a1b2c3", "login"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                           max_size=3), max_leaves=12)
events = st.fixed_dictionaries({}, optional={k: values for k in ("ts", "type", "point", "receipt", "amount", "items",
                                                                  "staff", "action", "value", "remote", "button",
                                                                  "state", "present", "press", "currency")})
lines = (events.map(lambda d: json.dumps(d).encode()) | st.binary(max_size=200)
         | st.builds(lambda d: b'{"type": "sale", "x": ' + b"[" * d + b"]" * d + b"}", st.integers(0, 3000)))


@settings(max_examples=500, deadline=None)
@given(lines)
def test_a_drop_folder_line_is_an_event_or_an_event_error(line):
    try:
        ev = decode_line(line, CFG)
    except EventError as exc:
        assert exc.message
        return
    assert isinstance(ev, NewEvent) and 1_577_836_800_000 <= ev.ts < 4_102_444_800_000


class FixedClock(Clock):
    def now(self) -> Stamp:
        return Stamp(1_795_165_200_000, 1, "boot", True)


API = PosApi(CFG, "journal.db", FixedClock())          # never started: parse() only


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["sale", "staff"]), lines)
def test_a_pos_body_is_an_event_or_a_400(kind, body):
    out = API.parse(kind, body)
    if isinstance(out, tuple):
        status, answer = out
        assert status == 400 and answer["error"]
    else:
        assert out.type == kind and out.ts < 1_795_165_200_000 + 86_400_000


@settings(max_examples=300, deadline=None)
@given(values)
def test_nesting_depth_equals_the_depth_of_the_decoded_value(value):
    def depth(v) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0
    text = json.dumps(value)
    assert nesting_depth(text.encode()) == depth(value)
    assert nesting_depth(json.dumps(value, ensure_ascii=False).encode()) == depth(value)
