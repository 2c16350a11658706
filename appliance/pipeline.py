"""The core pipeline: journal-shaped events in, contacts and settled ratings/sales out.

The same object runs live (``appliance-core``) and offline (``appliancectl replay``,
``report``): it never reads a clock. Events must come in time order (equal times in
input order); :meth:`advance` moves time on without an event so timers fire live.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from .config.schema import Config, presence_source
from .point import PointTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InputEvent:
    """One input event on its way into the pipeline (from the journal or a file). Events
    are taken in (ts, order) order: equal times in input order."""
    ts: int
    order: int                  # the journal seq, or the file's line number
    type: str
    point: str | None
    data: dict
    ref: str                    # the journal id, or "line<n>" for a file

    @classmethod
    def from_journal(cls, ev) -> "InputEvent":
        return cls(ev.ts, ev.seq, ev.type, ev.point, ev.data, ev.id)

    def sort_key(self) -> tuple[int, int]:
        return (self.ts, self.order)


class Pipeline:
    def __init__(self, cfg: Config):
        self.points = {pid: PointTracker(pid, p, self._emit, cfg.time.timezone, presence_source(cfg, pid))
                       for pid, p in cfg.points.items()}
        self.out: list[tuple[str, object]] = []
        self.now: int | None = None
        self.order = 0
        self.late = 0

    def _emit(self, kind: str, record: object) -> None:
        self.out.append((kind, record))

    def drain(self) -> list[tuple[str, object]]:
        out, self.out = self.out, []
        return out

    def quiet(self, t: int) -> bool:
        """Moving time on to ``t`` would change nothing: no timer due by then, nothing waiting
        to be attached or finalised."""
        return all(tr.next_due() > t and not tr.pending and not tr.closed for tr in self.points.values())

    def advance(self, t: int) -> None:
        """Time has reached t: fire timers due ≤ t, settle everything before t."""
        if self.now is not None and t < self.now:
            return
        self.now = t
        for tr in self.points.values():
            while (due := tr.next_due()) <= t:
                tr.fire(due)
            tr.settle(t)

    def feed(self, t: int, etype: str, point: str | None, data: dict, ref: str = "") -> None:
        tr = self.points.get(point) if point is not None else None
        if tr is None:
            return  # not a point event, or a point no longer configured
        if self.now is None or t > self.now:
            self.advance(t)
        elif t < self.now:
            # Out of order (the live core got it after its reorder window). A rating or a
            # sale keeps its own time: it still attaches exactly while its contact's grace
            # window is open. Presence and log-ins are taken at the current time.
            self.late += 1
            if etype not in ("rating", "sale"):
                t = self.now
        self.order += 1
        tr.event(t, self.order, etype, data, ref)
        while (due := tr.next_due()) <= t:  # timers the event itself made due now
            tr.fire(due)

    def rejected(self) -> list[tuple[str, str]]:
        """(ref, why) of events a point could not take (presence from its other source)."""
        return [r for tr in self.points.values() for r in tr.rejected]

    def finish(self) -> list[tuple[str, object]]:
        for tr in self.points.values():
            tr.finish()
        return self.drain()


def run(cfg: Config, events: Iterable[InputEvent], until: int | None = None,
        rejected: list | None = None) -> list[tuple[str, object]]:
    """Replay input events, already in time order, to the end of the input, or on to
    ``until`` (timers up to then fire) when given. Events a point could not take are
    added to ``rejected`` as (ref, why)."""
    p = Pipeline(cfg)
    out: list[tuple[str, object]] = []
    for ev in events:
        p.feed(ev.ts, ev.type, ev.point, ev.data, ev.ref)
        if p.out:
            out += p.drain()
    if until is not None:
        p.advance(until)
    out += p.finish()
    if rejected is not None:
        rejected.extend(p.rejected())
    return out
