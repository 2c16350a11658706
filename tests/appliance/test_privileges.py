"""The shipped units' privileges work together: core and another journal writer run as two
different users of group ``appliance``, with the units' ``UMask=0027``, in a state directory
made as tmpfiles.d makes it (2770 root:appliance); both append while the other runs and while
it is stopped. The journal and its WAL/SHM are 0660, nothing in the directory is
world-readable. Needs root (CI runs as root): useradd and setpriv."""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from appliance.journal import Journal
from tests.conftest import ROOT

GROUP, CORE, WRITER = "ca-test-appliance", "ca-test-core", "ca-test-rf"
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("useradd"),
                                reason="needs root, useradd and setpriv (as CI has)")


@pytest.fixture(scope="module")
def users():
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", "-r", GROUP], check=True)
    for user in (CORE, WRITER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", "-g", GROUP, user], check=True)
    yield


@pytest.fixture
def state(users):
    top = Path(tempfile.mkdtemp(prefix="ca-priv-"))
    os.chmod(top, 0o755)
    state = top / "state"
    state.mkdir()
    os.chown(state, 0, grp.getgrnam(GROUP).gr_gid)
    os.chmod(state, 0o2770)                                   # as tmpfiles.d makes it
    yield top, state
    shutil.rmtree(top, ignore_errors=True)


def as_user(user: str, *argv: str) -> list[str]:
    return ["setpriv", f"--reuid={user}", f"--regid={GROUP}", "--init-groups", "--", "sh", "-c",
            'umask 0027; exec "$@"', "sh", *argv]


WRITE = """
import sys, time
from appliance.journal import Journal, NewEvent
state, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Journal.in_dir(state) as j:
    for i in range(n):
        j.append(NewEvent("rating", 1795165200000 + i, {"value": 1, "class": "negative"}, "till2", tag,
                          key=f"{tag}:{i}"))
        time.sleep(0.01)
"""


def test_core_and_another_writer_share_the_journal_as_different_users(state):
    top, state_dir = state
    cfg = top / "appliance.toml"
    cfg.write_text(f'[device]\nstate_dir = "{state_dir}"\n[points.till2]\n')
    os.chmod(cfg, 0o644)

    def writer(tag: str, n: int) -> subprocess.CompletedProcess:
        return subprocess.run(as_user(WRITER, sys.executable, "-c", WRITE, str(state_dir), tag, str(n)), cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    first = writer("before", 20)                               # the other writer creates the journal
    assert first.returncode == 0, first.stderr
    core = subprocess.Popen(as_user(CORE, sys.executable, "-m", "appliance.cli.main", "--config", str(cfg), "run",
                                    "core"), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        during = writer("during", 50)                          # both write while core runs
        assert during.returncode == 0, during.stderr
        modes = {p.name: p.stat().st_mode & 0o777 for p in state_dir.iterdir()}
        end = time.monotonic() + 20
        while time.monotonic() < end:
            with Journal.in_dir(state_dir, readonly=True) as j:
                if j.cursor("core") >= j.last_seq():
                    break
            time.sleep(0.2)
    finally:
        core.send_signal(signal.SIGTERM)
        rc = core.wait(20)
    err = core.stderr.read()
    assert rc == 0 and "readonly database" not in err, err
    after = writer("after", 20)                                # and after core stopped
    assert after.returncode == 0, after.stderr
    with Journal.in_dir(state_dir, readonly=True) as j:
        sources = j.count_by_type()
        assert j.count("rating") == 90 and j.cursor("core") > 0 and sources["rating"] == 90
    assert modes["journal.db"] == 0o660
    assert modes.get("journal.db-wal", 0o660) == 0o660 and modes.get("journal.db-shm", 0o660) == 0o660
    assert all(m & 0o007 == 0 for m in modes.values()), modes   # nothing for others
    assert all(p.stat().st_gid == grp.getgrnam(GROUP).gr_gid for p in state_dir.iterdir())
