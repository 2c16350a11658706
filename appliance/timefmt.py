"""Wall-time values: whole milliseconds since the Unix epoch, shown as ISO 8601 UTC."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def iso_ms(ms: int) -> str:
    """2026-11-20T09:00:00.000Z; a time outside what a calendar shows (an old journal row
    with an absurd time) is shown as its number, never an error."""
    try:
        dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    except (OverflowError, ValueError, OSError):
        return f"{ms}ms"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


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
