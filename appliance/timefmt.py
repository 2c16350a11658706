"""Wall-time values: whole milliseconds since the Unix epoch, shown as ISO 8601 UTC."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def iso_ms(ms: int) -> str:
    """2026-11-20T09:00:00.000Z; a time outside what a calendar shows (an old journal row
    with an absurd time) is shown as its number, never an error. (Exports write one a row:
    the date is formatted once a day, the rest by arithmetic.)"""
    s, milli = divmod(ms, 1000)
    day, s = divmod(s, 86_400)
    date = _day(day)
    if date is None:
        return f"{ms}ms"
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{date}T{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"


@lru_cache(maxsize=64)
def _day(day: int) -> str | None:
    try:
        return (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")
    except OverflowError:
        return None


def parse_ts(value: object) -> int:
    """ISO 8601 (with zone; 'Z' allowed) or integer epoch ms -> epoch ms. ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected an ISO 8601 time or epoch milliseconds")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 time or epoch milliseconds")
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"time {value!r} has no zone; add 'Z' or an offset")
    return (dt - _EPOCH) // _MS
