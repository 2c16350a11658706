"""The gpiod source through the fake GPIO chip (same API as libgpiod v2's bindings, the
kernel's event layout on its file descriptor): kernel timestamps, batches, lost and
doubled edges, errors, and a press from the line to the journal."""
from __future__ import annotations

import threading
import time

import pytest

from appliance.clock import Clock
from appliance.config import parse_config
from appliance.journal import Journal
from rf_receiver.daemon import RfJournalWriter
from rf_receiver.press import PressDetector
from rf_receiver.receiver import Receiver
from rf_receiver.service import RfService
from rf_receiver.sources.base import Edges, SourceError
from rf_receiver.sources.gpiod import GpiodSource, parse_events, to_edges
from rf_receiver.sources.gpiod_fake import FakeChip
from rf_receiver.synthetic import press

CODE = 0xC0FFE5


def drive_train(chip: FakeChip, line: int, runs, t0_ns: int) -> int:
    """Drive runs onto a line, each edge stamped at its own time (as the kernel stamps it
    at the interrupt, however late the reader runs). Returns the time after the last run."""
    t = t0_ns
    for level, us in runs:
        chip.drive(line, level, t)
        t += us * 1000
    return t


def test_edges_carry_the_kernels_timestamps_whatever_the_reader_does():
    chip = FakeChip()
    src = GpiodSource("/dev/gpiochip0", 17, backend=chip, batch_s=0)
    runs = press(CODE, 24, unit=350, repeats=4, seed=1, lead_us=20_000)
    end = drive_train(chip, 17, runs, 10**12)          # all driven at once, long before the read
    items = src.read(0.5)
    assert len(items) == 1 and isinstance(items[0], Edges)
    e = items[0]
    widths = [(b - a) // 1000 for a, b in zip(e.ts, e.ts[1:], strict=False)]
    assert widths == [us for _, us in runs[1:-1]]      # every pulse exactly as stamped
    rx = Receiver(ticks_per_us=1000)
    frames = rx.feed_edges(e.level, e.ts) + rx.silence(end + 20_000_000)
    assert [f.code for f in frames] == [CODE] * 4
    src.close()


def test_a_press_from_the_line_to_the_journal(tmp_path):
    cfg = parse_config('[points.till1]\n[remotes.c0ffe]\npoint = "till1"\n'
                       'buttons = { 5 = { meaning = "rating", value = 2 } }\n[rf]\nsource = "none"\n')
    chip = FakeChip()
    src = GpiodSource("/dev/gpiochip0", 27, backend=chip, batch_s=0.01)
    journal = Journal(tmp_path / "journal.db")
    writer = RfJournalWriter(cfg, journal, src, Clock())
    service = RfService(src, PressDetector(2, 1_500_000), writer)

    def drive():
        t = time.monotonic_ns()
        for level, us in press(CODE, 24, unit=350, repeats=5, seed=2) + [(1, 100), (0, 500_000)]:
            while time.monotonic_ns() < t:
                time.sleep(0.0005)
            chip.drive(27, level, t)
            t += us * 1000
    th = threading.Thread(target=drive)
    th.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (th.is_alive() or writer.written < 2):
        service.step(0.02)
    th.join()
    rows = journal.read(0)
    journal.close()
    src.close()
    assert [(r.type, r.point, r.data.get("value")) for r in rows] == [("rating", "till1", 2),
                                                                      ("press_released", None, None)]
    assert rows[0].data["protocol"] == "EV1527" and rows[0].data["frames"] >= 2


def test_lost_edges_are_counted_and_the_receiver_starts_afresh():
    chip = FakeChip()
    src = GpiodSource("/dev/gpiochip0", 5, backend=chip, batch_s=0, max_events=16)
    level = 0
    for i in range(3000):                          # far more than the queue holds, nobody reading
        level ^= 1
        chip.drive(5, level, 10**9 + i * 300_000)
    items = src.read(0.5)
    while src.request.wait_edge_events(0):
        items += src.read(0)
    assert chip.lost > 0 and not any(e.restart for e in items)     # what was queued is whole
    level ^= 1
    chip.drive(5, level, 10**9 + 3001 * 300_000)
    [e] = src.read(0.5)
    assert e.restart and src.lost == chip.lost     # the gap in the line's sequence numbers
    rx = Receiver(ticks_per_us=1000)
    rx.feed_edges(items[0].level, items[0].ts)
    rx.restart()
    assert rx.ts == [] and rx.feed_edges(e.level, e.ts) == []
    src.close()


def test_an_edge_type_twice_in_a_row_keeps_the_earlier_edge():
    e = to_edges([100, 200, 300, 400, 500], bytes([1, 2, 2, 1, 2]))
    assert (e.level, e.ts) == (1, [100, 200, 400, 500])
    e = to_edges([100, 200], bytes([2, 1]))
    assert (e.level, e.ts) == (0, [100, 200])


def test_parse_events_reads_the_kernels_layout():
    chip = FakeChip()
    req = chip.request_lines("/dev/gpiochip0", config={3: chip.LineSettings()})
    for i, lv in enumerate([1, 0, 1, 0]):
        chip.drive(3, lv, 5_000 + i * 1_000)
    import os
    buf = os.read(req.fd, 4096)
    ts, types, first, last = parse_events(buf)
    assert ts == [5_000, 6_000, 7_000, 8_000] and types == bytes([1, 2, 1, 2]) and (first, last) == (1, 4)
    req.release()


def test_a_wrong_chip_or_a_busy_line_is_a_clear_error():
    chip = FakeChip()
    with pytest.raises(SourceError, match="cannot watch GPIO line 27 of /dev/gpiochip4.*gpioinfo"):
        GpiodSource("/dev/gpiochip4", 27, backend=chip)
    with pytest.raises(SourceError, match="line 99"):
        GpiodSource("/dev/gpiochip0", 99, backend=chip)
    first = GpiodSource("/dev/gpiochip0", 27, backend=chip)
    with pytest.raises(SourceError, match="busy"):
        GpiodSource("/dev/gpiochip0", 27, backend=chip)
    first.close()
    GpiodSource("/dev/gpiochip0", 27, backend=chip).close()         # free again once released


def test_noise_is_read_in_batches_and_a_waiting_press_at_once():
    chip = FakeChip()
    src = GpiodSource("/dev/gpiochip0", 27, backend=chip, batch_s=0.2)
    stop = threading.Event()

    def noise():
        level, t = 0, 0
        while not stop.is_set():
            level ^= 1
            chip.drive(27, level)
            t += 1
            time.sleep(0.001)
    th = threading.Thread(target=noise)
    th.start()
    try:
        batched = src.read(1.0)[0]
        src.hurry = True
        src.read(1.0)
        at_once = src.read(1.0)[0]
    finally:
        stop.set()
        th.join()
        src.close()
    # 0.2 s of gathering holds many edges; a hurried read takes what came in 5 ms
    assert len(batched.ts) > 3 * len(at_once.ts)
