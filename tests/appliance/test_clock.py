"""The clock: stamps, the simulated clock, correction of pre-sync events (ARCHITECTURE §3)."""
from __future__ import annotations

from appliance.clock import Clock, SimClock, corrected_ts


def test_correction_and_stamps():
    assert corrected_ts(5_000_000_000, 1_795_165_200_000_000_000) == 1_795_165_205_000
    st = Clock().now()
    assert st.mono > 0 and len(st.boot) >= 8 and isinstance(st.synced, bool)
    sim = SimClock(1_000_000, 1000.0, epoch_ms=0)
    assert sim.now_ms() > 1_000_000 + 10**12


def test_clock_sync_corrects_this_boots_events(tmp_path, monkeypatch):
    import time
    from appliance.clock import boot_id
    from appliance.core_daemon import correct_clock
    from appliance.journal import Journal, NewEvent
    monkeypatch.setenv("APPLIANCE_ASSUME_SYNCED", "1")
    with Journal(tmp_path / "j.db") as j:
        mono = time.monotonic_ns() - 5_000_000_000          # taken 5 s ago, when the clock said 1970
        j.append(NewEvent("rating", 1_000, {"value": 1}, "p", mono=mono, boot=boot_id(), synced=False))
        assert correct_clock(j, Clock()) == 1
        [row] = j.read(0)
    assert row.synced and row.ts_raw == 1_000
    assert abs(row.ts - (time.time_ns() // 1_000_000 - 5_000)) < 2_000
