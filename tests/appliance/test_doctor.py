"""``appliancectl doctor`` on a healthy box and on boxes with one thing wrong each: the broker
down, a dead microphone, a full disk, an unsynced clock, a secrets file others can read, a
broken journal; and ``appliancectl logs``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appliance.cli.main import main
from appliance.journal import Journal
from tests.mqtt_broker import free_port


def box(tmp_path, extra: str = "") -> Path:
    p = tmp_path / "box.toml"
    p.write_text(f'[device]\nid = "box-1"\nstate_dir = "{tmp_path / "state"}"\n[points.till1]\n'
                 f'[rf]\nsource = "none"\n{extra}')
    with Journal.in_dir(tmp_path / "state"):
        pass
    return p


def doctor(capsys, path) -> tuple[int, dict]:
    rc = main(["--config", str(path), "doctor", "--json"])
    return rc, {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}


@pytest.fixture(autouse=True)
def synced(monkeypatch):
    monkeypatch.setenv("APPLIANCE_ASSUME_SYNCED", "1")


def test_a_healthy_box_passes_and_says_so(tmp_path, capsys, broker):
    path = box(tmp_path, f'[sync]\nbroker = "{broker.url}"\n')
    rc, checks = doctor(capsys, path)
    assert rc == 0, checks
    assert {n: c["verdict"] for n, c in checks.items()} == {
        "config": "ok", "secrets": "skip", "clock": "ok", "disk": "ok", "journal": "ok", "gpio": "skip",
        "microphone": "skip", "broker": "ok"}
    assert main(["--config", str(path), "doctor"]) == 0
    assert "all checks passed" in capsys.readouterr().out


def test_a_broker_that_is_down(tmp_path, capsys):
    rc, checks = doctor(capsys, box(tmp_path, f'[sync]\nbroker = "mqtt://127.0.0.1:{free_port()}"\n'))
    assert rc == 1 and checks["broker"]["verdict"] == "fail" and "Connection refused" in checks["broker"]["detail"]
    assert checks["broker"]["fix"] and checks["clock"]["verdict"] == "ok"


def test_a_dead_microphone(tmp_path, capsys):
    rc, checks = doctor(capsys, box(tmp_path, '[audio]\nsource = "alsa"\ndevice = "hw:CARD=NoSuchCard,DEV=0"\n'))
    assert rc == 1 and checks["microphone"]["verdict"] == "fail" and "arecord -l" in checks["microphone"]["fix"]


def test_a_full_disk(tmp_path, capsys, monkeypatch):
    real = os.statvfs

    def full(path):
        st = real(path)
        return os.statvfs_result((st.f_bsize, 4096, 1_000_000, 1000, 1000, st.f_files, st.f_ffree, st.f_favail,
                                  st.f_flag, st.f_namemax))
    monkeypatch.setattr(os, "statvfs", full)
    rc, checks = doctor(capsys, box(tmp_path))
    assert rc == 1 and checks["disk"]["verdict"] == "fail" and "nearly full" in checks["disk"]["detail"]


def test_an_unsynced_clock(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("APPLIANCE_ASSUME_SYNCED")
    monkeypatch.setattr("appliance.clock.kernel_synced", lambda: False)
    rc, checks = doctor(capsys, box(tmp_path))
    assert rc == 1 and checks["clock"]["verdict"] == "fail" and "timedatectl set-ntp true" in checks["clock"]["fix"]
    main(["--config", str(box(tmp_path)), "doctor"])
    out = capsys.readouterr().out
    assert "FAIL clock" in out and "1 check(s) need attention" in out


def test_a_group_writable_secrets_file_and_a_broken_journal(tmp_path, capsys):
    (tmp_path / "secrets.toml").write_text('[pos]\ntoken = "0123456789abcdef0123"\n')
    os.chmod(tmp_path / "secrets.toml", 0o660)
    path = box(tmp_path, "")
    path.write_text(path.read_text().replace("[device]\n", '[device]\nsecrets_file = "secrets.toml"\n'))
    db = tmp_path / "state" / "journal.db"
    data = bytearray(db.read_bytes())
    data[200:4096] = b"\xff" * (4096 - 200)                     # the first page, scribbled over
    db.write_bytes(bytes(data))
    rc, checks = doctor(capsys, path)
    assert rc == 1 and checks["secrets"]["verdict"] == "warn" and "chmod g-w" in checks["secrets"]["fix"]
    assert checks["journal"]["verdict"] == "fail"


def test_logs_says_what_it_needs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert main(["logs", "core"]) == 3
    assert "journalctl is not available" in capsys.readouterr().out
