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
UNITS = sorted(u for u in (ROOT / "image_build" / "systemd").glob("appliance-*.service")
               if u.stem not in ("appliance-firstboot", "appliance-update"))
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
    # a call outside the filter (adjtimex under ProtectClock=, found booting the image) fails, never kills
    assert svc["SystemCallFilter"] == "@system-service" and svc["SystemCallErrorNumber"] == "EPERM"
    assert ANALYZE, "systemd-analyze is missing (tools/install.sh installs systemd)"
    installed = as_installed(unit, tmp_path)
    v = subprocess.run([ANALYZE, "verify", str(installed)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and not v.stderr.strip(), v.stderr
    s = subprocess.run([ANALYZE, "security", "--offline=true", "--threshold=30", str(installed)],
                       capture_output=True, text=True, timeout=60)
    assert s.returncode == 0, s.stdout[-600:]


def test_the_update_units_verify(tmp_path):
    """appliance-update.path starts appliance-update.service (root, oneshot) when a request is
    left; the service runs the release that was current when it started, resolved."""
    assert ANALYZE, "systemd-analyze is missing (tools/install.sh installs systemd)"
    service = (ROOT / "image_build" / "systemd" / "appliance-update.service").read_text()
    assert "readlink -f /opt/appliance/current" in service and "Type=oneshot" in service
    path = (ROOT / "image_build" / "systemd" / "appliance-update.path").read_text()
    assert "PathExists=/var/lib/appliance/updates/request.json" in path and "Unit=appliance-update.service" in path
    for name, text in (("appliance-update.service", service), ("appliance-update.path", path)):
        (tmp_path / name).write_text(text)
    v = subprocess.run([ANALYZE, "verify", str(tmp_path / "appliance-update.path"),
                        str(tmp_path / "appliance-update.service")], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and not v.stderr.strip(), v.stderr


def test_the_first_boot_runs_before_every_daemon(tmp_path):
    """Booting the image showed the daemons starting on the default settings while the first
    boot was still putting the technician's in place: it must be ordered before each of them."""
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    text = (ROOT / "image_build" / "systemd" / "appliance-firstboot.service").read_text()
    before = " ".join(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("Before="))
    for u in UNITS:
        assert u.name in before.split(), u.name
    (tmp_path / "appliance-firstboot.service").write_text(text.replace("/opt/appliance/current/bin/python",
                                                                       sys.executable))
    v = subprocess.run([ANALYZE, "verify", str(tmp_path / "appliance-firstboot.service")], capture_output=True,
                       text=True, timeout=60)
    assert v.returncode == 0 and "Before" not in v.stderr, v.stderr
