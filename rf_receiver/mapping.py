"""Presses -> journal events, through the config's button map (ARCHITECTURE §1).

A press of a configured remote becomes the event its button stands for (rating,
presence, call, staff log-in), journalled at confirmation, so a rating lands within
milliseconds; a ``call`` button waits to tell a short press from a long one. When the
button is let go, a ``press_released`` event says how long it was held. A remote
or button the config does not know becomes an ``unknown_remote`` event: visible to a
technician (``appliancectl tail``), never counted.
"""
from __future__ import annotations

from appliance import vocabulary as v
from appliance.config.schema import CallButton, Config
from appliance.errors import EventError
from appliance.events import map_button
from appliance.journal import NewEvent

from .press import CONFIRMED, ENDED, LONG, Press


def unknown(p: Press, ts: int, error: str | None = None) -> NewEvent:
    """A press of a remote or button the config does not know."""
    return v.UnknownRemote(remote=p.remote, button=p.button, protocol=p.protocol, code=p.code, bits=p.bits,
                           frames=p.frames, unit_us=round(p.unit_us, 1), error=error).as_event(ts, None, "rf")


def released(p: Press, ts: int) -> NewEvent:
    """A configured button let go: its hold time."""
    return v.PressReleased(remote=p.remote, button=p.button, protocol=p.protocol, held_ms=p.held_us // 1000,
                           frames=p.frames, long=p.long).as_event(ts, None, "rf")


def events_for(cfg: Config, event: str, p: Press, ts: int) -> list[NewEvent]:
    """What a press event means for the journal (often nothing)."""
    remote = cfg.remotes.get(p.remote)
    meaning = remote.buttons.get(p.button) if remote is not None and p.button is not None else None
    if meaning is None:
        if event != CONFIRMED:
            return []
        return [unknown(p, ts)]
    if event == ENDED:
        out = events_for_button(cfg, meaning, event, p, ts)
        out.append(released(p, ts + p.held_us // 1000))     # stamped when it was let go
        return out
    return events_for_button(cfg, meaning, event, p, ts)


def events_for_button(cfg: Config, meaning, event: str, p: Press, ts: int) -> list[NewEvent]:
    if isinstance(meaning, CallButton):
        if event == LONG or (event == ENDED and not p.long):
            kind = "long" if event == LONG else "short"
        else:
            return []
    elif event == CONFIRMED:
        kind = "short"
    else:
        return []
    try:
        ev = map_button(p.remote, p.button, kind, ts, cfg)
    except EventError as exc:       # e.g. a presence button at a sensor point
        return [unknown(p, ts, exc.message)]
    ev.source = "rf"
    ev.data.update(frames=p.frames, protocol=p.protocol)
    return [ev]
