"""The core stage's snapshot as plain data (ARCHITECTURE §11: derived state is never a
pickle — any daemon user may write the journal, and a pickle in it would run as core).

A versioned msgspec document of the pipeline's state: per point its presence machine, the
open and closed-but-unsettled contacts, the ratings and sales waiting to attach, the
misuse window, the open staff call and the owner log; the events held for reordering.
A snapshot of another version or config, or one that does not decode, is dropped and the
core rebuilds its state by replaying the journal (outputs are keyed: nothing doubles)."""
from __future__ import annotations

from collections import deque
from typing import Any

import msgspec

from .config.schema import Config
from .errors import ApplianceError
from .pipeline import InputEvent, Pipeline
from .point import Call, Contact, PointTracker, Rating, Sale
from .presence import NoPresence, PosPresence, RfPresence, SensorPresence

VERSION = 4


class SnapshotError(ApplianceError, ValueError):
    """A snapshot that is not one this software can resume from."""


class PointState(msgspec.Struct):
    source: str | None
    presence: dict[str, Any]
    open_contact: Contact | None
    closed: list[Contact]
    pending_ratings: list[Rating]
    pending_sales: list[Sale]
    presses: list[int]
    call: Call | None
    owners: list[tuple[int, int, str | None]]
    rejected: list[tuple[str, str]]


class CoreSnapshot(msgspec.Struct):
    version: int
    config: str
    now: int | None
    order: int
    late: int
    points: dict[str, PointState]
    held: list[InputEvent]


_PRESENCE_FIELDS = {RfPresence: ("opened",), NoPresence: (), PosPresence: ("last_close",),
                    SensorPresence: ("mode", "present", "since", "since_order", "opened", "truncate_pending")}
_decoder = msgspec.json.Decoder(CoreSnapshot)


def _point_state(tr: PointTracker) -> PointState:
    fields = _PRESENCE_FIELDS[type(tr.presence)]
    return PointState(
        source=tr.source, presence={f: getattr(tr.presence, f) for f in fields}, open_contact=tr.open_contact,
        closed=list(tr.closed), pending_ratings=[p for p in tr.pending if isinstance(p, Rating)],
        pending_sales=[p for p in tr.pending if isinstance(p, Sale)], presses=list(tr.presses), call=tr.call,
        owners=list(tr.owners.changes), rejected=list(tr.rejected))


def dump(pipeline: Pipeline, held: list[InputEvent], config_hash: str) -> bytes:
    return msgspec.json.encode(CoreSnapshot(
        VERSION, config_hash, pipeline.now, pipeline.order, pipeline.late,
        {pid: _point_state(tr) for pid, tr in pipeline.points.items()}, held))


def load(blob: bytes, cfg: Config, config_hash: str) -> tuple[Pipeline, list[InputEvent]]:
    """The pipeline and held events a snapshot describes; SnapshotError if it cannot be
    resumed (other version or config, or not a snapshot at all)."""
    try:
        snap = _decoder.decode(blob)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise SnapshotError(f"unreadable snapshot: {str(exc)[:200]}") from None
    if snap.version != VERSION or snap.config != config_hash:
        raise SnapshotError("snapshot of another version or config")
    pipeline = Pipeline(cfg)
    if set(snap.points) != set(pipeline.points):
        raise SnapshotError("snapshot of other points")
    pipeline.now, pipeline.order, pipeline.late = snap.now, snap.order, snap.late
    for pid, st in snap.points.items():
        tr = pipeline.points[pid]
        tr._use(st.source)
        if type(tr.presence) is not next(c for c, f in _PRESENCE_FIELDS.items() if set(f) == set(st.presence)):
            raise SnapshotError(f"point {pid}: presence state of another kind")
        for name, value in st.presence.items():
            setattr(tr.presence, name, value)
        tr.open_contact = st.open_contact
        tr.closed = st.closed
        tr.pending = sorted([*st.pending_ratings, *st.pending_sales], key=lambda p: (p.t, p.order))
        tr.presses = deque(st.presses)
        tr.call = st.call
        tr.owners.changes = [tuple(c) for c in st.owners]
        tr.rejected = [tuple(r) for r in st.rejected]
    return pipeline, list(snap.held)
