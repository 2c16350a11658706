"""The box's id: the Pi's serial for a new box, written down beside its key and journal so it
never changes under them; a box that synced under the older machine-id rule keeps its name;
``[device] id`` wins."""
from __future__ import annotations

from appliance import ids
from appliance.config import parse_config


def cfg(tmp_path, dev_id: str = ""):
    (tmp_path / "state").mkdir(exist_ok=True)
    return parse_config(f'[device]\nid = "{dev_id}"\nstate_dir = "{tmp_path / "state"}"\n[points.p]\n')


def hardware(tmp_path, monkeypatch, serial: bytes | None, machine_id: str = "0123456789abcdef0123\n"):
    sfile = tmp_path / "serial-number"
    if serial is not None:
        sfile.write_bytes(serial)
    (tmp_path / "machine-id").write_text(machine_id)
    monkeypatch.setattr(ids, "SERIAL_FILES", (str(sfile),))
    monkeypatch.setattr(ids, "MACHINE_ID", str(tmp_path / "machine-id"))


def test_a_new_pi_is_named_by_its_serial_and_keeps_the_name(tmp_path, monkeypatch):
    hardware(tmp_path, monkeypatch, b"10000000A1B2C3D4\x00")
    c = cfg(tmp_path)
    assert ids.settle_device_id(c, synced_before=False) == "ca-10000000a1b2c3d4"
    assert (tmp_path / "state" / ids.DEVICE_ID_FILE).read_text().strip() == "ca-10000000a1b2c3d4"
    hardware(tmp_path, monkeypatch, b"10000000FFFFFFFF\x00")         # the SD card in another Pi
    assert ids.device_id(c) == ids.settle_device_id(c, synced_before=True) == "ca-10000000a1b2c3d4"


def test_elsewhere_the_machine_id(tmp_path, monkeypatch):
    hardware(tmp_path, monkeypatch, None)
    assert ids.settle_device_id(cfg(tmp_path), synced_before=False) == "ca-0123456789ab"


def test_a_box_that_synced_under_the_older_rule_keeps_its_name(tmp_path, monkeypatch):
    hardware(tmp_path, monkeypatch, b"10000000A1B2C3D4\x00")
    assert ids.settle_device_id(cfg(tmp_path), synced_before=True) == "ca-0123456789ab"


def test_the_config_wins_and_nothing_is_written(tmp_path, monkeypatch):
    hardware(tmp_path, monkeypatch, b"10000000A1B2C3D4\x00")
    c = cfg(tmp_path, "shop-42-till-1")
    assert ids.settle_device_id(c, synced_before=False) == ids.device_id(c) == "shop-42-till-1"
    assert not (tmp_path / "state" / ids.DEVICE_ID_FILE).exists()
