"""The one atomic write: whole or untouched, the umask decides the mode, no temp left."""
from __future__ import annotations

import os

import pytest

from appliance.files import atomic_path, atomic_write, write_atomic


def test_replaces_whole_and_leaves_nothing_behind(tmp_path):
    p = tmp_path / "status.json"
    write_atomic(p, "one")
    write_atomic(p, b"two")
    assert p.read_text() == "two" and os.listdir(tmp_path) == ["status.json"]


def test_an_error_leaves_the_old_file_untouched(tmp_path):
    p = tmp_path / "metrics.json"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(p) as f:
            f.write("half")
            raise RuntimeError("power cut")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


def test_mode_follows_the_umask_so_another_daemon_of_the_group_can_read(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "clip.ogg") as tmp:
            tmp.write_bytes(b"x")
        write_atomic(tmp_path / "level.json", "{}", durable=False)
    finally:
        os.umask(old)
    assert (tmp_path / "clip.ogg").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "level.json").stat().st_mode & 0o777 == 0o640
