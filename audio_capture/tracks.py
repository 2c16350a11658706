"""The clips the journal asks for (ARCHITECTURE §6), one definition for the live audio
stage and for replay: a **contact track** from ``pre_s`` before the contact opened to
``post_s`` after it closed; a **press track** from ``before_s`` before a rating or call
press to ``after_s`` after it. A clip's id is derived from what it shows, so the same
contact or press always gives the same clip id, live or replayed."""
from __future__ import annotations

import msgspec

from appliance import vocabulary as v
from appliance.config.schema import Config
from appliance.ids import derived_id

PRESS_TYPES = (v.RATING, v.CALL)
"""Input events that ask for a press track."""


class Track(msgspec.Struct, frozen=True):
    """A clip to cut (plain data: the audio stage keeps the pending ones in its snapshot)."""
    id: str                 # the clip id
    kind: str               # contact | press
    ref: str                # the contact id, or the press's input event ref (journal id)
    point: str | None
    start_ms: int = msgspec.field(name="start")     # UTC ms
    end_ms: int = msgspec.field(name="end")
    press: str | None = None    # press tracks: rating | call


def clip_id(kind: str, ref: str, start_ms: int) -> str:
    return derived_id(start_ms, "clip", kind, ref)


def contact_track(cfg: Config, contact: str, point: str | None, opened_ms: int, closed_ms: int) -> Track:
    a = cfg.audio
    start, end = opened_ms - round(a.pre_s * 1000), closed_ms + round(a.post_s * 1000)
    return Track(clip_id("contact", contact, start), "contact", contact, point, start, end)


def press_track(cfg: Config, press: str, ref: str, point: str | None, t_ms: int) -> Track:
    a = cfg.audio
    start, end = t_ms - round(a.before_s * 1000), t_ms + round(a.after_s * 1000)
    return Track(clip_id("press", ref, start), "press", ref, point, start, end, press)
