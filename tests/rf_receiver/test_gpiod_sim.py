"""The gpiod source on a real kernel GPIO chip: the kernel's gpio-sim (configfs), where the
machine offers it. A simulated line is pulled up and down at a remote's timing; the kernel
stamps each edge and the real libgpiod bindings read them. Skips, saying why, where there
is no gpio-sim (no module, no configfs, not root)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rf_receiver.receiver import Receiver
from rf_receiver.sources.gpiod import GpiodSource
from rf_receiver.synthetic import press

CONFIGFS = Path("/sys/kernel/config/gpio-sim")
CODE = 0xC0FFE5


@pytest.fixture
def sim_line():
    if not CONFIGFS.is_dir():
        pytest.skip("no gpio-sim here: the kernel has no gpio-sim module or configfs is not mounted "
                    "(modprobe gpio-sim; mount -t configfs none /sys/kernel/config)")
    chip = CONFIGFS / f"appliance-test-{os.getpid()}"
    try:
        chip.mkdir()
        (chip / "bank0").mkdir()
        (chip / "bank0" / "num_lines").write_text("8")
        (chip / "live").write_text("1")
    except OSError as exc:
        pytest.skip(f"cannot create a gpio-sim chip: {exc}")
    try:
        dev = (chip / "dev_name").read_text().strip()
        name = (chip / "bank0" / "chip_name").read_text().strip()
        pull = Path("/sys/devices/platform") / dev / name / "sim_gpio3" / "pull"
        yield f"/dev/{name}", 3, pull
    finally:
        (chip / "live").write_text("0")
        (chip / "bank0").rmdir()
        chip.rmdir()


def test_a_press_on_a_kernel_gpio_line(sim_line):
    path, line, pull = sim_line
    src = GpiodSource(path, line, batch_s=0)
    runs = press(CODE, 24, unit=500, repeats=4, seed=1)
    t = time.perf_counter()
    with open(pull, "w") as f:
        for level, us in runs:
            while time.perf_counter() < t:
                pass
            f.write("pull-up" if level else "pull-down")
            f.flush()
            t += us / 1e6
    rx = Receiver(ticks_per_us=1000)
    frames = []
    while src.request.wait_edge_events(0.2):
        for e in src.read(0):
            frames += rx.feed_edges(e.level, e.ts)
    frames += rx.silence(time.monotonic_ns())
    src.close()
    assert [f.code for f in frames if not f.partial].count(CODE) >= 3
