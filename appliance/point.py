"""One contact point: contacts, rating and sale attachment, misuse, owners, tags
(ARCHITECTURE §4). Pure: every method takes its time from the caller.

Ratings and sales wait in ``pending`` until the presence machine's horizon has passed
them (the contacts around them are settled), then attach by the rule: the counted
contact with opened ≤ t < closed, else the latest counted contact with
closed ≤ t ≤ closed + grace, else orphan. A closed contact is finalised (tags given,
emitted) once the horizon has passed closed + max(grace).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable

from .config.schema import Point
from .ids import derived_id
from .owners import OwnerLog, ShiftSchedule
from .presence import NEVER, NoPresence, PosPresence, RfPresence, SensorPresence
from .timefmt import iso_ms

MAX_RECEIPT_OPEN_MS = 24 * 3600 * 1000
"""How far back a receipt's ``opened`` may lie (appliance.events refuses older ones)."""


TAGS = ("rated", "positive", "not_positive", "negative", "unrated", "productive", "unproductive", "long",
        "truncated")
"""Every tag a contact can get (ARCHITECTURE §4), in a fixed order: the records index keeps
a contact's tags as bits in this order (appliance.records)."""


def ms(seconds: float) -> int:
    return round(seconds * 1000)


HAPPY_UNIT = 1000
"""Happy scores are kept in thousandths of a point (0–100 000): sums are exact in any order."""


def happy_score(value: int, scale: dict[int, str]) -> int | None:
    """A rating's place on its point's scale as 0–100 (in thousandths): the lowest value 0,
    the highest 100, the Happy Index of the feedback-terminal market leader is their mean.
    None for a value off the scale or a scale of one value."""
    if not scale or value not in scale:
        return None
    lo, hi = min(scale), max(scale)
    if hi == lo:
        return None
    return round(100 * HAPPY_UNIT * (value - lo) / (hi - lo))


@dataclass(slots=True)
class Rating:
    point: str
    t: int
    order: int
    value: int
    cls: str
    owner: str | None          # the owner at its own time (used when orphan)
    ref: str = ""
    remote: str | None = None
    button: int | None = None
    status: str = "pending"     # counted | superseded | orphan | misuse
    contact: str | None = None
    happy: int | None = None    # its value on the point's scale mapped to 0–100, in thousandths


@dataclass(slots=True)
class Sale:
    point: str
    t: int
    order: int
    receipt: str
    amount: float | None
    owner: str | None
    ref: str = ""
    contact: str | None = None
    items: int | None = None


@dataclass(slots=True)
class Call:
    point: str
    t: int
    owner: str | None
    answered_s: float | None = None
    id: str = ""
    complaint: bool = False
    escalated: bool = False
    remote: str | None = None
    button: int | None = None
    escalated_at: int | None = None
    ref: str = ""                       # the opening press's journal id (its press track)


@dataclass(slots=True)
class Contact:
    id: str
    point: str
    opened: int
    owner: str | None
    closed: int | None = None
    long: bool = False
    truncated: bool = False
    rating: Rating | None = None
    superseded: list[Rating] = field(default_factory=list)
    sales: list[Sale] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @property
    def duration_ms(self) -> int:
        return (self.closed or self.opened) - self.opened


def contact_json(c: Contact) -> dict:
    """A contact as ``contacts.jsonl`` and the journal's ``contact`` record show it."""
    return {
        "id": c.id,
        "point": c.point,
        "opened": iso_ms(c.opened),
        "closed": iso_ms(c.closed),
        "duration_s": c.duration_ms / 1000,
        "owner": c.owner,
        "rating": c.rating.value if c.rating else None,
        "sales": [s.receipt for s in c.sales],
        "tags": c.tags,
    }


Emit = Callable[[str, object], None]
"""emit(kind, record): kinds 'contact_opened', 'contact_closed', 'contact', 'press', 'rating',
'sale', 'call_opened', 'call_escalated', 'call'. A 'press' is a rating press as taken (for
instant alerts); its 'rating' record is emitted once its status is final (orphan, misuse,
counted or superseded — the last two when its contact is finalised). A 'call' is emitted
when the call is answered."""


class PointTracker:
    def __init__(self, pid: str, p: Point, emit: Emit, tz: str = "UTC", source: str | None = "rf"):
        self.pid = pid
        self.p = p
        self.emit = emit
        self.min_contact = ms(p.min_contact_s)
        self.dwell_ms = ms(p.dwell_s)
        self.rating_grace = ms(p.rating_grace_s)
        self.sale_grace = ms(p.sale_grace_s)
        self.grace = max(self.rating_grace, self.sale_grace)
        self.misuse_window = ms(p.misuse_window_s)
        self.scale = p.rating_scale
        self.rejected: list[tuple[str, str]] = []   # (ref, why): events this point cannot take
        self.source: str | None = None
        self._use(source)
        schedule = ShiftSchedule(p.shifts, tz) if p.shifts else None
        # a contact's owner is the one logged in at its open time, which lies in the past when
        # the contact becomes known: min_presence_s for a sensor, a whole receipt for the till
        look_back = MAX_RECEIPT_OPEN_MS if source == "pos" else ms(p.min_presence_s)
        self.owners = OwnerLog(schedule, keep_ms=look_back + 1)
        self.open_contact: Contact | None = None
        self.last_counted: Contact | None = None
        self.closed: list[Contact] = []      # counted, awaiting finalisation, in order
        self.pending: list[Rating | Sale] = []  # in (t, order) order
        self.presses: deque[int] = deque()   # rating press times within the misuse window
        self.call: Call | None = None
        self.escalate_ms = ms(p.escalate_after_s)

    def _use(self, source: str | None) -> None:
        """Take presence from 'rf' or 'sensor'; None: undecided until the first such event."""
        p = self.p
        self.source = source
        if source == "sensor":
            self.presence = SensorPresence(self, ms(p.min_presence_s), ms(p.leave_after_s),
                                           self.min_contact, ms(p.max_contact_s))
        elif source == "rf":
            self.presence = RfPresence(self, self.min_contact, ms(p.max_contact_s))
        elif source == "pos":
            self.presence = PosPresence(self, self.min_contact, ms(p.max_contact_s))
        else:
            self.presence = NoPresence()

    def next_due(self) -> int:
        """The point's next timer: its presence's, or the open call's escalation."""
        due = self.presence.next_due()
        c = self.call
        if c is not None and not c.escalated:
            due = min(due, c.t + self.escalate_ms)
        return due

    def fire(self, t: int) -> None:
        c = self.call
        if c is not None and not c.escalated and c.t + self.escalate_ms <= t:
            c.escalated, c.escalated_at = True, t
            self.emit("call_escalated", replace(c))
            return
        self.presence.fire(t)

    def _presence_from(self, kind: str, ref: str) -> bool:
        if self.source is None:
            self._use(kind)
            return True
        if kind == self.source:
            return True
        if self.source == "pos":
            self.rejected.append((ref, f"point {self.pid} takes its contacts from the till (sale events with "
                                       f"\"opened\"); a {'presence' if kind == 'rf' else 'sensor'} event cannot "
                                       "count here"))
            return False
        other = "presence" if self.source == "rf" else "sensor"
        self.rejected.append((ref, f"point {self.pid} takes its presence from {other} events; "
                                   f"a {'presence' if kind == 'rf' else 'sensor'} event cannot count here"))
        return False

    # --- ContactSink -------------------------------------------------------------------

    def open(self, start: int, order: int) -> None:
        cid = derived_id(start, self.pid, start, order)
        self.open_contact = Contact(cid, self.pid, start, self.owners.at(start, order))
        self.emit("contact_opened", self.open_contact)

    def close(self, end: int, truncated: bool) -> bool:
        """True when the contact counts (it is then in ``closed``)."""
        c = self.open_contact
        self.open_contact = None
        if c is None:
            return False
        c.closed = end
        c.truncated = truncated
        if c.duration_ms < self.min_contact:
            return False  # discarded: takes nothing, counted nowhere
        if c.duration_ms > self.dwell_ms:
            c.long = True
        closed = self.closed
        i = len(closed)
        while i and closed[i - 1].opened > c.opened:    # a receipt opened before the last one closed
            i -= 1
        closed.insert(i, c)
        self.last_counted = c
        self.emit("contact_closed", c)
        return True

    def dwell(self) -> None:
        if self.open_contact is not None:
            self.open_contact.long = True

    # --- inputs ------------------------------------------------------------------------

    def event(self, t: int, order: int, etype: str, data: dict, ref: str = "") -> None:
        if etype == "presence":
            if self._presence_from("rf", ref):
                self.presence.event(t, order, data["state"])
        elif etype == "sensor":
            if self._presence_from("sensor", ref):
                self.presence.event(t, order, bool(data["present"]))
        elif etype == "rating":
            self._rating(t, order, data, ref)
        elif etype == "sale":
            sale = Sale(self.pid, t, order, data["receipt"], data.get("amount"), self.owners.at(t, order), ref,
                        items=data.get("items"))
            opened = data.get("opened")
            if self.source == "pos" and opened is not None and self.presence.receipt(opened, t, order):
                c = self.last_counted
                sale.contact = c.id                 # the receipt's own contact
                c.sales.append(sale)
            else:
                self._insert(sale)
        elif etype == "staff":
            if data.get("action", "login") == "login":
                self.owners.login(t, order, data["staff"])
            else:
                self.owners.logout(t, order, data["staff"])
        elif etype == "call":
            self._call(t, order, data, ref)
        elif etype == "answer":
            self._answer(t)

    def _rating(self, t: int, order: int, data: dict, ref: str) -> None:
        value = data["value"]
        r = Rating(self.pid, t, order, value, self.scale.get(value, data.get("class", "neutral")),
                   self.owners.at(t, order), ref, data.get("remote"), data.get("button"),
                   happy=happy_score(value, self.scale))
        window_start = t - self.misuse_window
        presses = self.presses
        presses.append(t)
        while presses and presses[0] < window_start:
            presses.popleft()
        if len(presses) >= self.p.misuse_presses:
            r.status = "misuse"
            self.emit("press", replace(r))       # a copy: the record goes on changing
            self.emit("rating", r)
            return
        self.emit("press", replace(r))
        self._insert(r)

    def _insert(self, item: Rating | Sale) -> None:
        pend = self.pending
        if not pend or (pend[-1].t, pend[-1].order) <= (item.t, item.order):
            pend.append(item)
        else:  # a late item: keep (t, order) order
            i = len(pend)
            while i and (pend[i - 1].t, pend[i - 1].order) > (item.t, item.order):
                i -= 1
            pend.insert(i, item)

    def _call(self, t: int, order: int, data: dict, ref: str = "") -> None:
        """A short press opens a call (another press while it is open changes nothing); a
        held one is a complaint: it opens a call that goes straight to escalation, or makes
        the open call one."""
        complaint = data.get("press", "short") == "long"
        c = self.call
        if c is None:
            c = self.call = Call(self.pid, t, self.owners.at(t, order), id=derived_id(t, self.pid, "call", t, order),
                                 complaint=complaint, escalated=complaint, remote=data.get("remote"),
                                 button=data.get("button"), escalated_at=t if complaint else None, ref=ref)
            self.emit("call_opened", replace(c))     # as it opened: later presses change the call
        elif complaint and not c.complaint:
            c.complaint = True
            if not c.escalated:
                c.escalated, c.escalated_at = True, t
                self.emit("call_escalated", replace(c))

    def _answer(self, t: int) -> None:
        """A staff fob (or the CLI) closes the open call at this point; none open: nothing."""
        c = self.call
        if c is not None:
            c.answered_s = (t - c.t) / 1000
            self.emit("call", c)
            self.call = None

    # --- settling ----------------------------------------------------------------------

    def settle(self, now: int) -> None:
        """Attach what the horizon has passed; finalise contacts whose grace has passed."""
        if self.pending or self.closed:
            self._settle(self.presence.horizon(now))

    def _settle(self, horizon: int) -> None:
        pend = self.pending
        n = 0
        while n < len(pend) and pend[n].t < horizon:
            self._attach(pend[n])
            n += 1
        if n:
            del pend[:n]
        closed = self.closed
        # Items held by a still-open contact would fall back to the grace rule if the input
        # ended with it open (it then stays uncounted): keep the contacts they could fall to.
        oc = self.open_contact
        held = NEVER
        if closed and oc is not None and (oc.rating or oc.sales):
            held = min(i.t for i in (*oc.superseded, *oc.sales, *([oc.rating] if oc.rating else ())))
        while closed and closed[0].closed + self.grace < horizon and held > closed[0].closed + self.grace:
            self._finalise(closed.pop(0))

    def _attach(self, item: Rating | Sale) -> None:
        t = item.t
        target = None
        oc = self.open_contact
        if oc is not None and oc.opened <= t:
            target = oc
        else:
            for c in reversed(self.closed):
                if c.closed <= t:
                    grace = self.rating_grace if isinstance(item, Rating) else self.sale_grace
                    if t <= c.closed + grace:
                        target = c
                    break
                if c.opened <= t:
                    target = c
                    break
        if isinstance(item, Sale):
            if target is not None:
                item.contact = target.id
                target.sales.append(item)
            else:
                self.emit("sale", item)
            return
        if target is None:
            item.status = "orphan"
            self.emit("rating", item)
            return
        item.contact = target.id
        if target.rating is not None:
            target.superseded.append(target.rating)
        target.rating = item

    def _finalise(self, c: Contact) -> None:
        r = c.rating
        tags = []
        if r is not None:
            tags.append("rated")
            if r.cls == "top":
                tags.append("positive")
            else:
                tags.append("not_positive")
                if r.cls == "negative":
                    tags.append("negative")
        else:
            tags += ["unrated", "not_positive"]
        if c.sales:
            tags.append("productive")
        elif self.p.pos:
            tags.append("unproductive")
        if c.long:
            tags.append("long")
        if c.truncated:
            tags.append("truncated")
        c.tags = tags
        for item in (*c.superseded, *c.sales, *([r] if r else ())):
            item.owner = c.owner     # what belongs to a contact belongs to its owner
        for s in c.superseded:
            s.status = "superseded"
            self.emit("rating", s)
        if r is not None:
            r.status = "counted"
            self.emit("rating", r)
        for s in c.sales:
            self.emit("sale", s)
        self.emit("contact", c)

    def finish(self) -> None:
        """End of input: open contacts stay uncounted; the rest is settled and finalised."""
        oc, self.open_contact = self.open_contact, None
        if oc is not None:  # what it took goes back to the rule without it
            for item in (*oc.superseded, *oc.sales, *([oc.rating] if oc.rating else ())):
                item.contact = None
                self.pending.append(item)
            self.pending.sort(key=lambda i: (i.t, i.order))
        self._use(None)
        self._settle(NEVER)
        # an open call stays open (not settled): the live core, which never sees the end of
        # input, counts it the same way
