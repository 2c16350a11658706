"""Who owns a point at a time: the staff member logged in (a ``staff`` event or a POS
cashier log-in), else the point's shift schedule, else nobody (ARCHITECTURE §4)."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from .config.schema import WEEKDAYS, Shift


class ShiftSchedule:
    """A point's weekly shifts in the configured zone. Pure: time comes as an argument."""

    def __init__(self, shifts: list[Shift], tz: str = "UTC"):
        self.tz = ZoneInfo(tz)
        self.shifts = [(s.staff, set(s.days), _minutes(s.start), _minutes(s.end)) for s in shifts]

    def __bool__(self) -> bool:
        return bool(self.shifts)

    def at(self, ms: int) -> str | None:
        local = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        today = WEEKDAYS[local.weekday()]
        yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
        for staff, days, start, end in self.shifts:
            if start < end:
                if today in days and start <= minute < end:
                    return staff
            else:  # an overnight shift: from start today to end tomorrow
                if (today in days and minute >= start) or (yesterday in days and minute < end):
                    return staff
        return None


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


class OwnerLog:
    """Log-ins at one point, kept briefly so that an open time in the recent past (a GPIO
    contact opens ``min_presence_s`` after it began) still finds its owner."""

    def __init__(self, schedule: ShiftSchedule | None = None, keep_ms: int = 0):
        self.schedule = schedule
        self.keep_ms = keep_ms
        self.changes: list[tuple[int, int, str | None]] = []   # (time, input order, staff)

    def login(self, t: int, order: int, staff: str) -> None:
        self._add(t, order, staff)

    def logout(self, t: int, order: int, staff: str) -> None:
        current = self.changes[-1][2] if self.changes else None
        if current is not None and current == staff:
            self._add(t, order, None)

    def _add(self, t: int, order: int, staff: str | None) -> None:
        self.changes.append((t, order, staff))
        # keep the newest change older than the window: it says who was in at its start
        cut = t - self.keep_ms
        i = 0
        while i + 1 < len(self.changes) and self.changes[i + 1][0] <= cut:
            i += 1
        if i:
            del self.changes[:i]

    def at(self, t: int, order: int = 1 << 62) -> str | None:
        for ct, co, staff in reversed(self.changes):
            if (ct, co) <= (t, order):
                if staff is not None:
                    return staff
                break
        return self.schedule.at(t) if self.schedule else None
