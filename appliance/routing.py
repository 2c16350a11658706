"""Routing: which journal events a destination is sent, as what message (ARCHITECTURE §2, §4).

Pure: :meth:`Rules.select` looks at one journal event and returns the message for that
destination, or None. Contacts go when they close with one of the ``on`` tags; rating presses
go the moment the core takes them (``ratings``: classes or values; misuse presses never);
staff calls when they open (``calls``), escalations and complaints to ``escalations``;
alerts and scheduled reports to the destination whose rule made them. ``points`` and
``owners`` narrow all of it.
"""
from __future__ import annotations

import msgspec

from . import vocabulary as v
from .config.schema import Config, Notification
from .journal import Event
from .timefmt import iso_ms

CONTACT_FIELDS = ("id", "point", "opened", "closed", "duration_s", "owner", "rating", "sales", "tags")
"""A contact as a ``contacts.jsonl`` line has it: what a webhook's ``contact`` object carries."""
ROUTED_TYPES = (v.CONTACT, v.RATING_PRESSED, v.CALL_OPENED, v.CALL_ESCALATED, v.ALERT_OPENED, v.ALERT_CLOSED,
                v.REPORT_DUE)
"""The journal event types a destination's stage reads."""


class Message(msgspec.Struct, kw_only=True):
    """One message for one destination, as kept in its outbox until it is confirmed."""
    destination: str
    key: str                            # idempotency key: the same event never makes two messages
    kind: str                           # contact | rating | call | alert | report | test
    t: int                              # the event's time, UTC ms
    point: str | None = None
    owner: str | None = None
    title: str                          # one line: what happened
    lines: list[str] = []               # the details, one per line
    body: dict = {}                     # the webhook's JSON object
    clip: list[str] | None = None       # [kind, ref]: the contact id, or the press's journal id
    folder: str = ""                    # FTP layout: the tag that selected it, or the kind


class Rules:
    """One destination's rules (``[notifications.<name>]``)."""

    def __init__(self, name: str, n: Notification, cfg: Config, device: str):
        self.name = name
        self.n = n
        self.cfg = cfg
        self.device = device
        self.on = set(n.on)
        self.classes = {r for r in n.ratings if isinstance(r, str)}
        self.values = {r for r in n.ratings if isinstance(r, int)}
        self.points = set(n.points)
        self.owners = set(n.owners)
        self.attach = n.attach if cfg.audio.source != "none" else "none"   # no microphone: no track to wait for

    def _wanted(self, point: str | None, owner: str | None) -> bool:
        return (not self.points or point in self.points) and (not self.owners or owner in self.owners)

    def _message(self, ev: Event, kind: str, title: str, lines: list[str], body: dict,
                 clip: list[str] | None, folder: str, owner: str | None) -> Message:
        where = self.cfg.points[ev.point].name or ev.point if ev.point in self.cfg.points else ev.point
        head = [f"time: {iso_ms(ev.ts)}"] + ([f"point: {where}"] if ev.point else []) + (
            [f"owner: {owner}"] if owner else [])
        return Message(destination=self.name, key=f"{self.name}:{ev.id}", kind=kind, t=ev.ts, point=ev.point,
                       owner=owner, title=title, lines=head + lines,
                       body={"event": kind, "device": self.device, **body}, clip=clip, folder=folder)

    def recipients(self, point: str | None, owner: str | None, what: str) -> list[str]:
        """The destinations a call (``calls``) or its escalation (``escalations``) goes to."""
        return sorted(name for name, n in self.cfg.notifications.items() if getattr(n, what)
                      and (not n.points or point in n.points) and (not n.owners or owner in n.owners))

    def select(self, ev: Event) -> Message | None:
        """The message this destination gets for a journal event, or None."""
        n = self.n
        if ev.type == v.CONTACT:
            c = v.read(ev, v.ContactSettled)
            hit = [t for t in c.tags if t in self.on]
            if not hit or not self._wanted(ev.point, c.owner):
                return None
            contact = {"id": c.contact, "point": c.point, "opened": c.opened, "closed": c.closed,
                       "duration_s": c.duration_s, "owner": c.owner, "rating": c.rating, "sales": c.sales,
                       "tags": c.tags}
            clip = ["contact", c.contact] if self.attach == "contact" else None
            rating = f", rating {c.rating}" if c.rating is not None else ""
            return self._message(ev, "contact", f"{hit[0].replace('_', ' ').capitalize()} contact at "
                                 f"{ev.point}{rating}", [f"length: {c.duration_s:.0f} s", f"tags: {', '.join(c.tags)}"]
                                 + ([f"rating: {c.rating} ({c.rating_class})"] if c.rating is not None else []),
                                 {"contact": contact}, clip, hit[0], c.owner)
        if ev.type == v.RATING_PRESSED:
            r = v.read(ev, v.RatingPressed)
            if r.misuse or not (r.cls in self.classes or r.value in self.values) or not self._wanted(ev.point, r.owner):
                return None
            rating = {"ref": r.rating, "point": ev.point, "ts": iso_ms(ev.ts), "value": r.value, "class": r.cls,
                      "owner": r.owner, "remote": r.remote, "button": r.button}
            clip = ["press", r.rating] if self.attach == "press" else None
            return self._message(ev, "rating", f"{r.cls.capitalize()} rating {r.value} at {ev.point}",
                                 [f"rating: {r.value} ({r.cls})"] + ([f"remote: {r.remote} button {r.button}"]
                                                                     if r.remote else []),
                                 {"rating": rating}, clip, r.cls, r.owner)
        if ev.type == v.CALL_OPENED:
            c = v.read(ev, v.CallOpened)
            if not (n.escalations if c.complaint else n.calls) or not self._wanted(ev.point, c.owner):
                return None
            call = {"id": c.call, "point": ev.point, "opened": iso_ms(ev.ts), "owner": c.owner,
                    "complaint": c.complaint, "escalated": c.complaint, "name": c.name, "location": c.location,
                    "type_code": c.type_code, "remote": c.remote, "button": c.button,
                    "recipients": self.recipients(ev.point, c.owner, "escalations" if c.complaint else "calls"),
                    "escalation": self.recipients(ev.point, c.owner, "escalations"), **c.extra}
            what = "Complaint" if c.complaint else "Staff call"
            clip = ["press", c.press] if self.attach == "press" and c.press else None
            return self._message(ev, "call", f"{what} at {c.location or c.name or ev.point}",
                                 [f"{k}: {x}" for k, x in (("button", c.name), ("location", c.location),
                                                           ("type", c.type_code or None)) if x]
                                 + [f"{k}: {x}" for k, x in c.extra.items()],
                                 {"call": call}, clip, "complaint" if c.complaint else "call", c.owner)
        if ev.type == v.CALL_ESCALATED:
            c = v.read(ev, v.CallEscalated)
            if not n.escalations or not self._wanted(ev.point, c.owner):
                return None
            return self._message(ev, "call", f"Staff call at {ev.point} not answered: escalated",
                                 [f"opened: {c.opened}"],
                                 {"call": {"id": c.call, "point": ev.point, "opened": c.opened, "owner": c.owner,
                                           "escalated": True, "complaint": False}}, None, "escalation", c.owner)
        if ev.type in (v.ALERT_OPENED, v.ALERT_CLOSED):
            a = v.read(ev, v.AlertOpened if ev.type == v.ALERT_OPENED else v.AlertClosed)
            if a.destination != self.name:
                return None
            state = "open" if ev.type == v.ALERT_OPENED else "closed"
            title = f"Alert: {a.what}" if state == "open" else f"Recovered: {a.what}"
            return self._message(ev, "alert", title, [f"rule: {a.rule}", f"alert: {a.alert}"],
                                 {"alert": {"id": a.alert, "state": state, "rule": a.rule, "what": a.what,
                                            "point": ev.point}}, None, "alert", None)
        if ev.type == v.REPORT_DUE:
            r = v.read(ev, v.ReportDue)
            if r.destination != self.name:
                return None
            return self._message(ev, "report", f"Report {r.start[:10]} – {r.end[:10]} ({r.every})", [],
                                 {"report": {"every": r.every, "start": r.start, "end": r.end, "chart": r.chart}},
                                 None, "report", None)
        return None


def test_message(destination: str, device: str, now: int) -> Message:
    """``appliancectl notify test`` and the fleet's ``test_notification`` command."""
    return Message(destination=destination, key=f"{destination}:test:{now}", kind="test", t=now,
                   title=f"Contact Analyzer {device}: test message",
                   lines=[f"time: {iso_ms(now)}", f"destination: {destination}"],
                   body={"event": "test", "device": device, "ts": iso_ms(now)}, folder="test")
