"""First boot over a fake boot partition and root: the technician's files checked, moved
into place with their owners and modes and removed from the FAT partition, the host name from
the Pi's serial, the appliance started (enrolment); bad files reported on the boot partition
with nothing applied; a power cut part-way redone at the next boot."""
from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from image_build import firstboot
from image_build.firstboot import ERROR_FILE, FirstBootError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[device]
state_dir = "/var/lib/appliance"
secrets_file = "/etc/appliance/secrets.toml"

[points.till1]

[sync]
broker = "mqtts://broker.example.com:8883"
"""
WIFI = """[connection]
id=shop-wifi
type=wifi

[wifi]
ssid=Shop

[wifi-security]
key-mgmt=wpa-psk
psk=secret-passphrase
"""
GROUP = grp.getgrgid(os.getgid()).gr_name


@pytest.fixture
def card(tmp_path):
    boot, root = tmp_path / "boot", tmp_path / "root"
    (root / "sys/firmware/devicetree/base").mkdir(parents=True)
    (root / "sys/firmware/devicetree/base/serial-number").write_bytes(b"10000000a1b2c3d4\0")
    (root / "etc").mkdir()
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n")
    boot.mkdir()
    (boot / "config.txt").write_text("dtoverlay=gpio-ir\n")          # the Pi's own file: left alone
    calls = tmp_path / "systemctl.calls"
    stub = tmp_path / "systemctl"
    stub.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    stub.chmod(0o755)
    return boot, root, str(stub), calls


def fill(boot: Path) -> None:
    (boot / "appliance.toml").write_text(CONFIG)
    (boot / "secrets.toml").write_text('# the shop\'s secrets\n[sync]\npassword = "s3cret"\n')
    (boot / "claim-token.txt").write_text("tok_0123456789abcdef\n")
    (boot / "shop-wifi.nmconnection").write_text(WIFI)


def test_the_files_go_into_place_and_leave_the_fat_partition(card):
    boot, root, systemctl, calls = card
    fill(boot)
    done = firstboot.run(boot, root, systemctl, group_override=GROUP, live=False)
    etc = root / "etc"
    conf, secrets = etc / "appliance/appliance.toml", etc / "appliance/secrets.toml"
    wifi = etc / "NetworkManager/system-connections/shop-wifi.nmconnection"
    assert sorted(done) == sorted([conf, secrets, wifi])
    assert conf.read_text() == CONFIG and conf.stat().st_mode & 0o777 == 0o640
    assert secrets.stat().st_mode & 0o777 == 0o600 and wifi.stat().st_mode & 0o777 == 0o600
    for p in done:
        assert p.stat().st_uid == 0 or os.geteuid() != 0
        assert p.stat().st_gid == os.getgid()
    doc = tomllib.loads(secrets.read_text())
    assert doc == {"sync": {"password": "s3cret"}, "provisioning": {"claim_token": "tok_0123456789abcdef"}}
    assert sorted(p.name for p in boot.iterdir()) == ["config.txt"]            # removed from FAT
    assert (etc / "hostname").read_text() == "ca-10000000a1b2c3d4\n"
    assert "127.0.1.1\tca-10000000a1b2c3d4" in (etc / "hosts").read_text()
    assert "raspberrypi" not in (etc / "hosts").read_text()
    assert calls.read_text().split() == ["--no-block", "start", "appliance.target"]
    # the next boot finds nothing to do and changes nothing
    assert firstboot.run(boot, root, systemctl, group_override=GROUP, live=False) == []
    assert conf.read_text() == CONFIG


def test_a_bad_file_changes_nothing_and_says_why_on_the_card(card):
    boot, root, systemctl, calls = card
    fill(boot)
    (boot / "appliance.toml").write_text(CONFIG + "\n[points.till1.nonsense]\nx = 1\n[sync2]\n")
    (boot / "claim-token.txt").write_text("no spaces allowed in a token\n")
    (boot / "broken.nmconnection").write_text("[wifi]\nssid=x\n")
    (boot / "huge.nmconnection").write_bytes(b"x" * (2 << 20))
    os.symlink("/etc/shadow", boot / "linked.nmconnection")
    before = sorted(p.name for p in boot.iterdir())
    with pytest.raises(FirstBootError) as err:
        firstboot.run(boot, root, systemctl, group_override=GROUP, live=False)
    text = str(err.value)
    for expected in ("appliance.toml:", "sync2", "claim-token.txt: not a claim token", "broken.nmconnection",
                     "huge.nmconnection", "linked.nmconnection: not a regular file"):
        assert expected in text, (expected, text)
    assert not (root / "etc/appliance").exists() and not (root / "etc/NetworkManager").exists()
    assert not (root / "etc/hostname").exists() and not calls.exists()
    assert sorted(p.name for p in boot.iterdir()) == sorted(before + [ERROR_FILE])
    note = (boot / ERROR_FILE).read_text()
    assert "nothing was changed" in note and "sync2" in note
    # fixed on a PC, the next boot takes them and removes the note
    (boot / "appliance.toml").write_text(CONFIG)
    (boot / "claim-token.txt").write_text("tok_0123456789abcdef")
    for name in ("broken", "huge", "linked"):
        (boot / f"{name}.nmconnection").unlink()
    firstboot.run(boot, root, systemctl, group_override=GROUP, live=False)
    assert sorted(p.name for p in boot.iterdir()) == ["config.txt"]


def test_a_secret_the_config_needs_is_looked_for_in_the_secrets_given(card):
    boot, root, systemctl, _ = card
    (boot / "appliance.toml").write_text(CONFIG + '\n[notifications.boss]\nkind = "telegram"\nchat_id = "1"\n')
    with pytest.raises(FirstBootError, match="token"):
        firstboot.run(boot, root, systemctl, group_override=GROUP, live=False)
    (boot / "secrets.toml").write_text('[notifications.boss]\ntoken = "123:abc"\n')
    firstboot.run(boot, root, systemctl, group_override=GROUP, live=False)
    assert (root / "etc/appliance/secrets.toml").read_text() == '[notifications.boss]\ntoken = "123:abc"\n'


def test_a_power_cut_part_way_is_redone_at_the_next_boot(card, monkeypatch):
    boot, root, systemctl, _ = card
    fill(boot)
    real = firstboot._write
    written = []

    def cut(p, gid):
        if written:
            raise OSError("power cut")
        written.append(p.target)
        real(p, gid)
    monkeypatch.setattr(firstboot, "_write", cut)
    with pytest.raises(OSError):
        firstboot.run(boot, root, systemctl, group_override=GROUP, live=False)
    assert len(written) == 1 and len([p for p in boot.iterdir() if p.name != "config.txt"]) == 4
    monkeypatch.setattr(firstboot, "_write", real)
    done = firstboot.run(boot, root, systemctl, group_override=GROUP, live=False)
    assert len(done) == 3 and sorted(p.name for p in boot.iterdir()) == ["config.txt"]
    assert not list((root / "etc/appliance").glob(".*.firstboot"))


def test_the_command_line_and_its_unit(card, tmp_path):
    boot, root, systemctl, _ = card
    (boot / "claim-token.txt").write_text("x")
    r = subprocess.run([sys.executable, "-m", "image_build.firstboot", "--boot", str(boot), "--root", str(root),
                        "--systemctl", systemctl], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1 and "nothing changed" in r.stderr and "claim-token.txt" in r.stderr
    analyze = shutil.which("systemd-analyze")
    unit = (ROOT / "image_build/systemd/appliance-firstboot.service").read_text()
    out = tmp_path / "appliance-firstboot.service"
    out.write_text(unit.replace("/opt/appliance/current/bin/python", sys.executable))
    v = subprocess.run([analyze, "verify", str(out)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stderr
