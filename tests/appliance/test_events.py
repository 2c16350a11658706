"""Input events from outside (files, POS): fuzzed; every input is an event or a clear error."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import EventError
from appliance.events import INPUT_TYPES, decode_line
from appliance.journal import NewEvent
from tests.conftest import config_text, BASE_CONFIG

CFG = config_text(BASE_CONFIG)

values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=12),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
fields = st.dictionaries(st.sampled_from(["ts", "type", "point", "state", "value", "remote", "button", "receipt",
                                          "amount", "items", "staff", "action", "present", "press", "x"]),
                         values, max_size=8)
typed = st.fixed_dictionaries({"type": st.sampled_from(INPUT_TYPES + ("bogus",)),
                               "ts": st.one_of(st.just("2026-11-20T09:00:00Z"), st.integers(0, 2**50), values),
                               "point": st.sampled_from(["till1", "till2", "x"])}).flatmap(
    lambda base: fields.map(lambda extra: {**extra, **base}))


def check(line: bytes) -> None:
    try:
        ev = decode_line(line, CFG)
    except EventError as exc:
        assert exc.message and "\n" not in exc.message
    else:
        assert isinstance(ev, NewEvent) and isinstance(ev.ts, int) and ev.type in INPUT_TYPES


@settings(max_examples=1500, deadline=None)
@given(st.one_of(typed, fields))
def test_fuzz_structured_lines(obj):
    check(json.dumps(obj).encode())


@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_raw_bytes(data):
    check(data)


def test_button_mapping_keeps_remote_and_button():
    ev = decode_line(b'{"ts": "2026-11-20T09:00:00Z", "type": "button", "remote": "A1B2C3", "button": 3, "press": "long"}', CFG)
    assert (ev.type, ev.point, ev.data) == ("call", "till2", {"press": "long", "remote": "a1b2c3", "button": 3})
    ev = decode_line(b'{"ts": 1795165200005, "type": "button", "remote": "a1b2c3", "button": 4}', CFG)
    assert (ev.type, ev.data["staff"]) == ("staff", "zoe")
