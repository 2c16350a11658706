"""Names from outside never carry a line end: a pattern's ``$`` lets one trailing newline
through in Python (``re.match("^a$", "a\\n")`` matches), so every name pattern ends in
``\\Z``. A device id, a command id, an event type, a point, a config key — each with a
newline after it is refused, and the same name without one is taken."""
from __future__ import annotations

import json

import pytest

from appliance.cloud import wire
from appliance.config import parse_config
from appliance.errors import ApplianceError


def batch(device: str = "box-1", **record) -> bytes:
    rec = {"seq": 1, "id": "01234567-89ab-cdef-0123-456789abcdef", "type": "rating", "ts": 1, "point": "till1",
           "source": "rf", "data": {}}
    rec.update(record)
    return json.dumps({"device": device, "prev": 0, "last": 1, "records": [rec]}).encode()


@pytest.mark.parametrize("name", ["box-1", "a", "till_1.x"])
def test_names_without_a_line_end_are_taken(name):
    assert wire.safe_name(name)
    wire.decode_batch(batch(name))


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\n\n"])
def test_a_trailing_line_end_is_refused_everywhere(suffix):
    assert not wire.safe_name("box-1" + suffix)
    with pytest.raises(wire.WireError):
        wire.parse_topic("ca", f"ca/box-1{suffix}/journal")
    for bad in (batch("box-1" + suffix), batch(type="rating" + suffix), batch(point="till1" + suffix),
                batch(id="01234567-89ab-cdef-0123-456789abcdef" + suffix), batch(source="rf" + suffix)):
        with pytest.raises(wire.WireError):
            wire.decode_batch(bad)
    with pytest.raises(wire.WireError):
        wire.decode_command(json.dumps({"id": "c1" + suffix, "action": "ping"}).encode())
    with pytest.raises(wire.WireError):
        wire.decode_command(json.dumps({"id": "c1", "action": "ping", "args": {"x" + suffix: 1}}).encode())
    key = json.dumps("till1" + suffix)
    with pytest.raises(ApplianceError):
        parse_config(f"[points.{key}]\n")
    with pytest.raises(ApplianceError):
        parse_config(f'[rf]\nchip = {json.dumps("/dev/gpiochip0" + suffix)}\n')
