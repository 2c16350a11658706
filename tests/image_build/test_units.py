"""The four daemons' systemd units: they verify, they are Type=notify with a watchdog, one
user each, and systemd's own security analysis rates them at most 'OK' (exposure ≤ 3.0, i.e. --threshold=30)."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted(u for u in (ROOT / "image_build" / "systemd").glob("appliance-*.service") if u.stem != "appliance-firstboot")
ANALYZE = shutil.which("systemd-analyze")


def test_four_units():
    assert [u.stem for u in UNITS] == ["appliance-audio", "appliance-core", "appliance-rf", "appliance-sync"]


def as_installed(unit: Path, tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's appliancectl (as the package would)."""
    ctl = Path(sys.executable).with_name("appliancectl")
    out = tmp_path / unit.name
    out.write_text(unit.read_text().replace("/opt/appliance/current/bin/appliancectl", str(ctl)))
    return out


@pytest.mark.parametrize("unit", UNITS, ids=[u.stem for u in UNITS])
def test_unit_is_sound_and_least_privileged(unit, tmp_path):
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read_string(unit.read_text())
    svc = cp["Service"]
    assert svc["Type"] == "notify" and "WatchdogSec" in svc and svc["NoNewPrivileges"] == "yes"
    assert svc["User"] == unit.stem and svc["CapabilityBoundingSet"] == ""
    assert svc["ExecStart"].endswith("run " + unit.stem.split("-", 1)[1])
    assert ANALYZE, "systemd-analyze is missing (tools/install.sh installs systemd)"
    installed = as_installed(unit, tmp_path)
    v = subprocess.run([ANALYZE, "verify", str(installed)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and not v.stderr.strip(), v.stderr
    s = subprocess.run([ANALYZE, "security", "--offline=true", "--threshold=30", str(installed)],
                       capture_output=True, text=True, timeout=60)
    assert s.returncode == 0, s.stdout[-600:]
