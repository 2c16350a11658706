"""The pi-gen stage for the official tool chain: pi-gen itself cannot be fetched here, so the
stage is checked for what pi-gen requires of it — a prerun that copies the previous stage's
root, executable ``NN-run.sh`` scripts that parse, a package list, an EXPORT_IMAGE — and for
the settings the Debian image also has."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

STAGE = Path(__file__).resolve().parents[2] / "image_build" / "pi-gen" / "stage-appliance"


def test_the_stage_has_what_pi_gen_runs():
    assert "copy_previous" in (STAGE / "prerun.sh").read_text()
    assert "IMG_SUFFIX=" in (STAGE / "EXPORT_IMAGE").read_text()
    scripts = sorted(STAGE.rglob("*.sh"))
    assert [p.relative_to(STAGE).as_posix() for p in scripts] == [
        "00-install/00-run.sh", "01-settings/00-run.sh", "prerun.sh"]
    for p in scripts:
        assert os.access(p, os.X_OK), f"{p} must be executable (pi-gen runs only those)"
        r = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert "unattended-upgrades" in (STAGE / "00-install" / "00-packages").read_text().split()


def test_the_stage_sets_the_box_up_like_the_debian_image():
    settings = (STAGE / "01-settings" / "00-run.sh").read_text()
    for line in ("enable_uart=1", "dtparam=watchdog=on", "Storage=volatile", "RuntimeWatchdogSec=15",
                 "appliance-update.path"):
        assert line in settings
    image = (STAGE.parents[1] / "build-image.sh").read_text()
    for line in ("enable_uart=1", "dtparam=watchdog=on", "Storage=volatile", "RuntimeWatchdogSec=15"):
        assert line in image
