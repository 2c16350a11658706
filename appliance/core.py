"""The core stage (``appliance-core``): journal input events -> contacts, settled ratings
and sales, back into the journal for the audio slicer, notifications and sync.

Restart-safe: the pipeline's snapshot (plain data: ``snapshot.py``), the events it holds
for reordering, its outputs and its cursor advance commit in one transaction. Outputs carry deterministic keys, so even a
rebuild from cursor 0 (after a software update changed the snapshot format) doubles
nothing.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from .config import config_hash
from .config.schema import Config
from . import snapshot
from . import vocabulary as v
from .ids import derived_id
from .journal import RECORD_TYPES, Journal, NewEvent
from .pipeline import InputEvent, Pipeline
from .point import HAPPY_UNIT, Call, Contact, Rating, Sale, contact_json

log = logging.getLogger(__name__)

STAGE = "core"


@dataclass
class CoreState:
    version: int
    config: str
    pipeline: Pipeline
    held: list[InputEvent] = field(default_factory=list)   # taken, not yet released (reorder window)


def happy_points(score: int | None) -> float | None:
    """A happy score (thousandths) as the journal shows it: 0–100 with three decimals."""
    return None if score is None else score / HAPPY_UNIT


def output_event(kind: str, rec: object, cfg: Config | None = None) -> NewEvent | None:
    """A pipeline record as a derived journal event with an idempotency key (``cfg`` gives
    a call its incident snapshot: the button's name, location, type code and extra fields)."""
    if isinstance(rec, Contact):
        if kind == "contact_opened":
            return v.ContactOpened(contact=rec.id, opened=rec.opened).as_event(
                rec.opened, rec.point, "core", f"core:opened:{rec.id}")
        if kind == "contact_closed":
            return v.ContactClosed(contact=rec.id, opened=rec.opened, closed=rec.closed).as_event(
                rec.closed, rec.point, "core", f"core:closed:{rec.id}")
        data = contact_json(rec)
        data["contact"] = data.pop("id")
        settled = v.ContactSettled(**data, superseded=[r.ref for r in rec.superseded],
                                   rating_class=rec.rating.cls if rec.rating else None,
                                   revenue=round(sum(s.amount or 0.0 for s in rec.sales), 2),
                                   happy=happy_points(rec.rating.happy) if rec.rating else None)
        return settled.as_event(rec.closed, rec.point, "core", f"core:contact:{rec.id}")
    if isinstance(rec, Rating) and kind == "press":
        return v.RatingPressed(rating=rec.ref, value=rec.value, cls=rec.cls, owner=rec.owner,
                               misuse=rec.status == "misuse", remote=rec.remote, button=rec.button).as_event(
            rec.t, rec.point, "core", f"core:press:{rec.ref}")
    if isinstance(rec, Rating):
        return v.RatingSettled(rating=rec.ref, value=rec.value, cls=rec.cls, status=rec.status, owner=rec.owner,
                               contact=rec.contact, remote=rec.remote, button=rec.button,
                               happy=happy_points(rec.happy)).as_event(
            rec.t, rec.point, "core", f"core:rating:{rec.ref}")
    if isinstance(rec, Sale):
        return v.SaleSettled(sale=rec.ref, receipt=rec.receipt, contact=rec.contact, owner=rec.owner,
                             amount=rec.amount, items=rec.items).as_event(rec.t, rec.point, "core", f"core:sale:{rec.ref}")
    if isinstance(rec, Call) and kind == "call_opened":
        snap = call_button(cfg, rec.remote, rec.button) if cfg is not None else {}
        return v.CallOpened(call=rec.id, owner=rec.owner, complaint=rec.complaint, press=rec.ref, remote=rec.remote,
                            button=rec.button, **snap).as_event(rec.t, rec.point, "core", f"core:call_opened:{rec.id}")
    if isinstance(rec, Call) and kind == "call_escalated":
        from .timefmt import iso_ms
        return v.CallEscalated(call=rec.id, owner=rec.owner, opened=iso_ms(rec.t)).as_event(
            rec.escalated_at or rec.t, rec.point, "core", f"core:call_escalated:{rec.id}")
    if isinstance(rec, Call):
        return v.CallSettled(owner=rec.owner, answered_s=rec.answered_s, call=rec.id or None,
                             escalated=rec.escalated, complaint=rec.complaint).as_event(
            rec.t, rec.point, "core", f"core:call:{rec.point}:{rec.t}")
    return None


def call_button(cfg: Config, remote: str | None, button: int | None) -> dict:
    """The configured incident snapshot of a call button (empty for a call from the till)."""
    from .config.schema import CallButton
    r = cfg.remotes.get(remote or "")
    m = r.buttons.get(button) if r is not None and button is not None else None
    if not isinstance(m, CallButton):
        return {}
    return {"name": m.name or (r.name if r else ""), "location": m.location, "type_code": m.type_code,
            "extra": dict(m.extra)}


def counting_time(rec: object) -> tuple[int, str | None] | None:
    """When a settled record counts and whose it is (§4: a contact at its open time, by its
    owner; ratings, sales and calls at their own time)."""
    if isinstance(rec, Contact):
        return rec.opened, rec.owner
    if isinstance(rec, (Rating, Sale, Call)):
        return rec.t, rec.owner
    return None


class CoreStage:
    def __init__(self, cfg: Config, journal: Journal, reorder_ms: int | None = None):
        self.cfg = cfg
        self.journal = journal
        self.reorder_ms = round(cfg.time.reorder_s * 1000) if reorder_ms is None else reorder_ms
        self.hash = config_hash(cfg)
        self.state = self._restore()
        self.last_commit = 0
        self.seen = 0                       # the journal seq the last step read up to
        self.commits = 0
        self.emitted = 0

    def _fresh(self) -> CoreState:
        return CoreState(snapshot.VERSION, self.hash, Pipeline(self.cfg))

    def _restore(self) -> CoreState:
        cursor, blob = self.journal.stage_state(STAGE)
        if blob:
            try:
                pipeline, held = snapshot.load(blob, self.cfg, self.hash)
                log.info("core: resumed at seq %d with %d held events", cursor, len(held))
                return CoreState(snapshot.VERSION, self.hash, pipeline, held)
            except snapshot.SnapshotError as exc:
                log.warning("core: %s; rebuilding from the journal", exc)
        if cursor:
            with self.journal.stage(STAGE) as txn:
                txn.cursor = 0       # outputs are keyed: the rebuild doubles nothing
                txn.state = b""
        return self._fresh()

    def step(self, now_ms: int, batch: int = 2000) -> int:
        """Take new events, release those older than the reorder window, move time on,
        commit outputs + snapshot + cursor together. Returns the number of outputs."""
        st = self.state
        watermark = now_ms - self.reorder_ms
        if self.last_commit and not st.held and self.journal.last_seq() <= self.seen and st.pipeline.quiet(watermark):
            # an idle box: nothing new in the journal, nothing due — no write transaction
            st.pipeline.advance(watermark)
            return 0
        with self.journal.stage(STAGE) as txn:
            events, upto = txn.read_batch(batch, v.CORE_INPUT_TYPES)
            self.seen = upto
            st.held.extend(map(InputEvent.from_journal, events))
            released = 0
            if st.held:
                st.held.sort(key=InputEvent.sort_key)
                while released < len(st.held) and st.held[released].ts <= watermark:
                    e = st.held[released]
                    st.pipeline.feed(e.ts, e.type, e.point, e.data, e.ref)
                    released += 1
                del st.held[:released]
            if len(events) < batch:
                # caught up: time moves on to the watermark (timers fire). While catching up
                # (a backlog, an import, a rebuild) the next batch may still hold earlier
                # times: moving on now would make them late.
                st.pipeline.advance(watermark)
            outputs = st.pipeline.drain()
            for kind, rec in outputs:
                ev = output_event(kind, rec, self.cfg)
                if ev is None:
                    continue
                ev.id = derived_id(ev.ts, ev.key)        # the same record has the same id, rebuilt or not
                seq = txn.append(ev)
                counts = counting_time(rec)
                if seq is not None and counts is not None and ev.type in RECORD_TYPES:
                    self.journal.index_record(seq, ev.type, ev.point, *counts, ev.data)
            changed = bool(events or released or outputs or upto != txn.cursor)
            if changed or not self.last_commit:     # and once at start: the pid says who runs the stage
                txn.advance(upto)
                txn.state = snapshot.dump(st.pipeline, st.held, self.hash)
                txn.info = {"held": len(st.held), "late": st.pipeline.late,
                            "emitted": self.emitted + len(outputs), "pid": os.getpid()}
                self.last_commit = now_ms
                self.commits += 1
            else:
                txn.skip = True
        self.emitted += len(outputs)
        return len(outputs)
