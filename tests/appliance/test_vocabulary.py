"""The journal vocabulary: every derived event the core writes reads back as its typed
payload; a row of the wrong type or shape is a clear VocabularyError."""
from __future__ import annotations

import pytest

from appliance import vocabulary as v
from appliance.config import parse_config
from appliance.core import CoreStage
from appliance.errors import ApplianceError
from appliance.journal import Journal, NewEvent

T0 = 1_795_165_200_000
PAYLOADS = {v.CONTACT_OPENED: v.ContactOpened, v.CONTACT_CLOSED: v.ContactClosed, v.CONTACT: v.ContactSettled,
            v.RATING_SETTLED: v.RatingSettled, v.SALE_SETTLED: v.SaleSettled, v.CALL_SETTLED: v.CallSettled,
            v.RATING_PRESSED: v.RatingPressed, v.CALL_OPENED: v.CallOpened, v.CALL_ESCALATED: v.CallEscalated}


def test_every_core_output_reads_back_typed(tmp_path):
    cfg = parse_config("[points.p]\npos = true\n")
    with Journal(tmp_path / "j.db") as j:
        j.append_many([NewEvent(t, T0 + s * 1000, d, "p", "test") for t, s, d in [
            ("presence", 0, {"state": "arrived"}), ("rating", 10, {"value": 2, "class": "top"}),
            ("sale", 12, {"receipt": "R1", "amount": 12.5}), ("call", 13, {"press": "short"}),
            ("presence", 30, {"state": "left"}), ("rating", 500, {"value": 1, "class": "negative"}),
            ("answer", 510, {"staff": "dana"}), ("call", 600, {"press": "long"})]])
        CoreStage(cfg, j, reorder_ms=0).step(T0 + 3_600_000)
        derived = [e for e in j.iter_all() if e.source == "core"]
    assert {e.type for e in derived} == set(PAYLOADS)
    typed = [v.read(e, PAYLOADS[e.type]) for e in derived]
    [contact] = [p for p in typed if isinstance(p, v.ContactSettled)]
    assert (contact.rating, contact.rating_class, contact.sales, contact.revenue) == (2, "top", ["R1"], 12.5)
    assert "positive" in contact.tags and contact.duration_s == 30.0
    orphan = next(p for p in typed if isinstance(p, v.RatingSettled) and p.status == "orphan")
    assert (orphan.value, orphan.cls) == (1, "negative")
    [call] = [p for p in typed if isinstance(p, v.CallSettled)]
    assert call.answered_s == 497.0 and call.escalated and not call.complaint    # 120 s passed unanswered
    opened = [p for p in typed if isinstance(p, v.CallOpened)]
    assert [c.complaint for c in opened] == [False, True]                    # the held button: a complaint
    assert len([p for p in typed if isinstance(p, v.CallEscalated)]) == 1    # a complaint opens escalated
    assert {p.value for p in typed if isinstance(p, v.RatingPressed)} == {1, 2}


def test_payload_to_event_and_back():
    ev = v.RatingSettled(rating="e1", value=5, cls="top", status="counted", owner=None, contact="c1").as_event(
        T0, "p", "core", "core:rating:e1")
    assert ev.type == "rating_settled" and ev.data["class"] == "top" and ev.key == "core:rating:e1"
    from appliance.journal import Event
    row = Event(7, "id", ev.type, ev.point, ev.ts, ev.data, ev.source)
    assert v.read(row, v.RatingSettled).cls == "top"


def test_wrong_type_or_shape_is_a_vocabulary_error():
    from appliance.journal import Event
    with pytest.raises(v.VocabularyError, match="is a 'clip', not a 'mic_state'"):
        v.read(Event(1, "i", "clip", None, T0, {}), v.MicState)
    with pytest.raises(v.VocabularyError, match="event 2 \\(mic_state\\)"):
        v.read(Event(2, "i", "mic_state", None, T0, {"state": 3}), v.MicState)
    assert issubclass(v.VocabularyError, ApplianceError) and issubclass(v.VocabularyError, ValueError)
