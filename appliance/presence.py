"""Presence -> contact boundaries (ARCHITECTURE §4). Pure state machines fed with times.

``RfPresence`` takes the RF sensor's *arrived* / *left* / *dwell* buttons;
``SensorPresence`` debounces a GPIO sensor's level changes by ``min_presence_s`` and
``leave_after_s``; ``PosPresence`` takes receipts (a sale's ``opened`` to its time). Both tell their owner (a ``PointTracker``) ``open(start)``,
``close(end, truncated)`` and ``dwell()``, expose their next timer (``next_due``) and the
*horizon*: the time before which the contacts of the point are settled (opened, closed
and known to be counted or not), so ratings and sales before it can be attached.

Timers are due one millisecond after the instant they test ("longer than" is strict), so
that a timer due at t fires before an event at t and an event exactly at the limit still
counts as within it.
"""
from __future__ import annotations

from typing import Protocol

NEVER = 1 << 62


class ContactSink(Protocol):
    def open(self, start: int, order: int) -> None: ...
    def close(self, end: int, truncated: bool) -> bool | None: ...
    def dwell(self) -> None: ...


class RfPresence:
    def __init__(self, sink: ContactSink, min_contact_ms: int, max_contact_ms: int):
        self.sink = sink
        self.min_ms = min_contact_ms
        self.max_ms = max_contact_ms
        self.opened: int | None = None

    def event(self, t: int, order: int, state: str) -> None:
        if state == "arrived":
            if self.opened is not None:
                self.sink.close(t, False)
            self.opened = t
            self.sink.open(t, order)
        elif self.opened is None:
            return  # left / dwell with no open contact: ignored
        elif state == "left":
            self.opened = None
            self.sink.close(t, False)
        elif state == "dwell":
            self.sink.dwell()

    def next_due(self) -> int:
        return NEVER if self.opened is None else self.opened + self.max_ms + 1

    def fire(self, t: int) -> None:
        if self.opened is not None and t >= self.opened + self.max_ms + 1:
            end = self.opened + self.max_ms
            self.opened = None
            self.sink.close(end, True)  # the presence that goes on opens nothing

    def horizon(self, now: int) -> int:
        if self.opened is not None and now - self.opened < self.min_ms:
            return self.opened
        return now

    def is_open(self) -> bool:
        return self.opened is not None


class PosPresence:
    """A point without a presence sensor (``presence = "pos"``): the till says where contacts
    were. Each receipt whose sale carries ``opened`` is a contact from ``opened`` to the sale's
    time, known only when the sale arrives. A till serves one receipt at a time, so a sale
    closing at ``ts`` means every receipt that was open before ``ts`` is known; a receipt still
    open can contain a time at most ``max_contact_s`` back. The horizon is therefore the later
    of the last sale's time and ``now - max_contact_s``."""

    def __init__(self, sink: ContactSink, min_contact_ms: int, max_contact_ms: int):
        self.sink = sink
        self.min_ms = min_contact_ms
        self.max_ms = max_contact_ms
        self.last_close = -NEVER

    def receipt(self, opened: int, t: int, order: int) -> bool:
        """A receipt from ``opened`` to ``t``: its contact, truncated at ``max_contact_s``.
        True when it became a contact (the sink counted it)."""
        self.last_close = max(self.last_close, t)
        self.sink.open(opened, order)
        if t - opened > self.max_ms:
            return self.sink.close(opened + self.max_ms, True)
        return self.sink.close(t, False)

    def next_due(self) -> int:
        return NEVER

    def fire(self, t: int) -> None:
        pass

    def horizon(self, now: int) -> int:
        return max(self.last_close, now - self.max_ms)

    def is_open(self) -> bool:
        return False


class NoPresence:
    """An "auto" point before its first presence or sensor event: no contacts yet."""

    def next_due(self) -> int:
        return NEVER

    def fire(self, t: int) -> None:
        pass

    def horizon(self, now: int) -> int:
        return now

    def is_open(self) -> bool:
        return False


IDLE, PENDING, OPEN, SUPPRESSED = "idle", "pending", "open", "suppressed"


class SensorPresence:
    """GPIO presence: a contact opens when presence has lasted ``min_presence_s``
    (open time = its start) and closes when absence has lasted ``leave_after_s``
    (close time = its start); shorter gaps do not split a contact."""

    def __init__(self, sink: ContactSink, min_presence_ms: int, leave_after_ms: int,
                 min_contact_ms: int, max_contact_ms: int):
        self.sink = sink
        self.min_presence = min_presence_ms
        self.leave_after = leave_after_ms
        self.min_ms = min_contact_ms
        self.max_ms = max_contact_ms
        self.mode = IDLE
        self.present = False
        self.since = 0            # time of the last level change
        self.since_order = 0
        self.opened = 0
        self.truncate_pending = False

    def event(self, t: int, order: int, present: bool) -> None:
        if present == self.present:
            return
        self.present, self.since, self.since_order = present, t, order
        if self.mode == IDLE and present:
            self.mode = PENDING
        elif self.mode == PENDING and not present:
            self.mode = IDLE
        elif self.mode == OPEN and present and self.truncate_pending:
            # the contact outlived max_contact_s across a short gap: cut it at that length
            self.truncate_pending = False
            self.mode = SUPPRESSED
            self.sink.close(self.opened + self.max_ms, True)

    def next_due(self) -> int:
        if self.mode == PENDING:
            return self.since + self.min_presence
        if self.mode == OPEN:
            trunc = NEVER if self.truncate_pending else self.opened + self.max_ms + 1
            leave = NEVER if self.present else self.since + self.leave_after
            return min(trunc, leave)
        if self.mode == SUPPRESSED and not self.present:
            return self.since + self.leave_after
        return NEVER

    def fire(self, t: int) -> None:
        if self.mode == PENDING and t >= self.since + self.min_presence:
            self.mode = OPEN
            self.opened = self.since
            self.truncate_pending = False
            self.sink.open(self.since, self.since_order)
        elif self.mode == OPEN:
            if not self.present and t >= self.since + self.leave_after:
                self.mode = IDLE
                self.sink.close(self.since, False)
            elif not self.truncate_pending and t >= self.opened + self.max_ms + 1:
                if self.present:
                    self.mode = SUPPRESSED
                    self.sink.close(self.opened + self.max_ms, True)
                else:
                    self.truncate_pending = True  # decided when the gap ends or resumes
        elif self.mode == SUPPRESSED and not self.present and t >= self.since + self.leave_after:
            self.mode = IDLE

    def horizon(self, now: int) -> int:
        if self.mode == PENDING:
            return self.since
        if self.mode == OPEN:
            end = now if self.present else self.since
            return end if end - self.opened >= self.min_ms else self.opened
        return now

    def is_open(self) -> bool:
        return self.mode == OPEN
