"""Times as shown: whole UTC milliseconds as ISO 8601, any integer without an error."""
from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, strategies as st

from appliance.timefmt import iso_ms, parse_ts


def calendar(ms: int) -> str:
    """The plain datetime way, the oracle."""
    try:
        dt = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    except (OverflowError, ValueError, OSError):
        return f"{ms}ms"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@given(st.one_of(st.integers(min_value=-(1 << 70), max_value=1 << 70),
                 st.integers(min_value=1_577_836_800_000, max_value=4_102_444_800_000)))
def test_iso_ms_is_the_calendar_time(ms):
    got = iso_ms(ms)
    assert got == calendar(ms)
    if 1_577_836_800_000 <= ms <= 4_102_444_800_000:        # 2020-2100: it reads back
        assert parse_ts(got) == ms


def test_known_times():
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(-1) == "1969-12-31T23:59:59.999Z"
    assert iso_ms(parse_ts("2026-11-05T08:00:00.123Z")) == "2026-11-05T08:00:00.123Z"
    assert iso_ms(10 ** 20) == "100000000000000000000ms"
