"""The period picker: today, yesterday, this week, this month or custom dates, in the
office's time zone, as ``[since, until)`` in UTC milliseconds."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PERIODS = ("today", "yesterday", "week", "month", "custom")
MAX_DAYS = 3 * 366


class PeriodError(ValueError):
    pass


@dataclass(frozen=True)
class Period:
    name: str
    first: date                 # first day
    last: date                  # last day (inclusive)
    since_ms: int
    until_ms: int

    @property
    def label(self) -> str:
        return self.first.isoformat() if self.first == self.last else f"{self.first} – {self.last}"

    @property
    def days(self) -> list[str]:
        n = (self.last - self.first).days + 1
        return [(self.first + timedelta(days=i)).isoformat() for i in range(n)]


def _midnight_ms(d: date, zone: ZoneInfo) -> int:
    return int(datetime.combine(d, time(), zone).timestamp() * 1000)


def _date(text: str | None, what: str) -> date:
    try:
        return date.fromisoformat(text or "")
    except ValueError:
        raise PeriodError(f"{what}: a date as YYYY-MM-DD") from None


def period(name: str | None, start: str | None, end: str | None, tz: str, now_s: float) -> Period:
    zone = ZoneInfo(tz)
    today = datetime.fromtimestamp(now_s, zone).date()
    name = name or "today"
    if name == "today":
        first = last = today
    elif name == "yesterday":
        first = last = today - timedelta(days=1)
    elif name == "week":
        first, last = today - timedelta(days=today.weekday()), today
    elif name == "month":
        first, last = today.replace(day=1), today
    elif name == "custom":
        first, last = _date(start, "from"), _date(end, "to")
        if last < first:
            raise PeriodError("to: not before from")
        if (last - first).days >= MAX_DAYS:
            raise PeriodError(f"a custom period of at most {MAX_DAYS} days")
    else:
        raise PeriodError(f"period: one of {', '.join(PERIODS)}")
    return Period(name, first, last, _midnight_ms(first, zone), _midnight_ms(last + timedelta(days=1), zone))
