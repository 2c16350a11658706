"""Signed application updates: a good release committed (a real Python environment made from
the bundle's wheel), one that never becomes healthy rolled back, bad signatures and tampered
bundles refused with nothing changed, the update lock and the maintenance window, and SIGKILL
at random moments of an update (50 trials) always leaving the old or the new release
runnable — never neither — with recovery finishing or undoing it."""
from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioning.update import Outcome, Releases, Updater, UpdateError, make_bundle, verify_bundle

ROOT = Path(__file__).resolve().parents[2]
KEY = Ed25519PrivateKey.generate()


def tiny_wheel(directory: Path, version: str, source: str | None = None) -> Path:
    """A real wheel whose console script ``appliancectl`` runs ``tinyapp.main``: by default it
    prints its version; ``source`` is the package's own code instead."""
    name = f"tinyapp-{version}-py3-none-any.whl"
    dist = f"tinyapp-{version}.dist-info"
    files = {
        "tinyapp/__init__.py": source or f"def main():\n    print('tinyapp {version}')\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: tinyapp\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": "[console_scripts]\nappliancectl = tinyapp:main\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n"
    path = directory / name
    with zipfile.ZipFile(path, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
        z.writestr(f"{dist}/RECORD", record)
    return path


def fake_release(releases: Releases, version: str) -> None:
    """An installed release whose appliancectl prints its version (what the tests run)."""
    d = releases.path(version)
    (d / "bin").mkdir(parents=True)
    ctl = d / "bin" / "appliancectl"
    ctl.write_text(f"#!/bin/sh\necho tinyapp {version}\n")
    ctl.chmod(0o755)
    (d / ".complete").write_bytes(b"")


def slow_installer(release: Path, wheels: Path) -> None:
    """Writes a release file by file with pauses (a window for a SIGKILL to land in)."""
    version = next(wheels.glob("*.whl")).name.split("-")[1]
    (release / "bin").mkdir(parents=True, exist_ok=True)
    for i in range(5):
        (release / f"lib{i}").write_bytes(os.urandom(1000))
        time.sleep(0.02)
    ctl = release / "bin" / "appliancectl"
    ctl.write_text(f"#!/bin/sh\necho tinyapp {version}\n")
    ctl.chmod(0o755)


def runs(releases: Releases) -> str:
    return subprocess.run([str(releases.base / "current" / "bin" / "appliancectl")], capture_output=True, text=True,
                          timeout=30).stdout.strip()


@pytest.fixture
def box(tmp_path):
    releases = Releases(tmp_path / "opt")
    fake_release(releases, "1.0")
    releases.switch("1.0")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    bundle = make_bundle([tiny_wheel(wheels, "2.0")], "2.0", KEY, tmp_path / "release-2.0.bundle")
    return releases, bundle, tmp_path


def updater(releases: Releases, tmp: Path, healthy=lambda: True, **kw) -> Updater:
    return Updater(releases, tmp / "update.json", [KEY.public_key()], restart=kw.pop("restart", lambda: None),
                   healthy=healthy, sleep=lambda s: None, **kw)


def test_a_good_release_is_installed_beside_switched_checked_and_committed(box):
    releases, bundle, tmp = box
    fake_release(releases, "0.9")                       # an older one: pruned at the commit
    restarts, checks = [], iter([False, False, True])
    up = updater(releases, tmp, healthy=lambda: next(checks), restart=lambda: restarts.append(releases.current()))
    out = up.apply(bundle, "u1")
    assert out == Outcome("committed", "2.0", "1.0")
    assert runs(releases) == "tinyapp 2.0"              # a real environment made from the bundle's wheel
    assert restarts == ["2.0"]
    assert sorted(p.name for p in releases.dir.iterdir()) == ["1.0", "2.0"]     # the previous kept
    st = up.state()
    assert st.pop("time") > 1.7e9 and st == {"id": "u1", "phase": "committed", "version": "2.0", "previous": "1.0"}


def test_a_release_that_never_becomes_healthy_is_rolled_back(box):
    releases, bundle, tmp = box
    restarts = []
    clock = iter(range(0, 10_000, 10))
    up = updater(releases, tmp, healthy=lambda: False, restart=lambda: restarts.append(releases.current()),
                 installer=slow_installer, health_timeout_s=60, clock=lambda: next(clock))
    out = up.apply(bundle, "u2")
    assert out.status == "rolled_back" and "not healthy within 60 s" in out.detail
    assert releases.current() == "1.0" and runs(releases) == "tinyapp 1.0"
    assert restarts == ["2.0", "1.0"] and not releases.path("2.0").exists()
    assert up.state()["phase"] == "rolled_back"


def test_bad_signatures_and_tampered_bundles_are_refused_and_change_nothing(box):
    releases, bundle, tmp = box
    other = Ed25519PrivateKey.generate()
    wheels = tmp / "w2"
    wheels.mkdir()
    wheel = tiny_wheel(wheels, "3.0")
    forged = make_bundle([wheel], "3.0", other, tmp / "forged.bundle")

    def rewrite(src: Path, out: Path, change) -> Path:
        with tarfile.open(src) as t:
            items = [(m, t.extractfile(m).read()) for m in t.getmembers()]
        with tarfile.open(out, "w") as t:
            for m, data in change(items):
                m.size = len(data)
                t.addfile(m, io.BytesIO(data))
        return out
    tampered = rewrite(bundle, tmp / "tampered.bundle",
                       lambda items: [(m, d + b"x" if m.name.endswith(".whl") else d) for m, d in items])
    extra = tarfile.TarInfo("../../etc/cron.d/evil")

    def add_evil(items):
        return items + [(extra, b"* * * * * root sh\n")]
    traversal = rewrite(bundle, tmp / "traversal.bundle", add_evil)
    unsigned = rewrite(bundle, tmp / "unsigned.bundle", lambda items: [(m, d) for m, d in items
                                                                      if m.name != "manifest.sig"])
    garbage = tmp / "garbage.bundle"
    garbage.write_bytes(os.urandom(5000))
    up = updater(releases, tmp)
    for b, why in ((forged, "not from a release key"), (tampered, "not the file the manifest signs"),
                   (traversal, "not a plain file inside it"), (unsigned, "no manifest"), (garbage, "not a bundle")):
        out = up.apply(b)
        assert out.status == "refused" and why in out.detail, (b.name, out)
        assert releases.current() == "1.0" and sorted(p.name for p in releases.dir.iterdir()) == ["1.0"]
    assert not (tmp / "etc").exists() and not list(releases.base.glob("update-*"))
    with pytest.raises(UpdateError, match="no release key"):
        verify_bundle(bundle, [], tmp / "x")


def test_the_update_lock_and_the_maintenance_window(box):
    releases, bundle, tmp = box
    up = updater(releases, tmp, busy=lambda: "a contact is open at till1")
    assert up.apply(bundle) == Outcome("deferred", None, "1.0", "busy: a contact is open at till1")
    up = updater(releases, tmp, in_window=lambda: False)
    assert up.apply(bundle).detail == "outside the maintenance window"
    assert releases.current() == "1.0" and not releases.path("2.0").exists()


CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from provisioning.update import Releases, Updater
from tests.provisioning.test_update import slow_installer
key = load_pem_public_key(Path({pub!r}).read_bytes())
checks = iter([False, False, False, True])
up = Updater(Releases(Path({base!r})), Path({state!r}), [key], restart=lambda: time.sleep(0.03),
             healthy=lambda: next(checks, True), installer=slow_installer, sleep=lambda s: time.sleep(0.02),
             health_timeout_s=30)
print(up.apply(Path({bundle!r}), "kill").status, flush=True)
"""


def test_sigkill_at_any_moment_leaves_a_runnable_release(box):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    releases, bundle, tmp = box
    pub = tmp / "release.pub"
    pub.write_bytes(KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    script = tmp / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), pub=str(pub), base=str(releases.base),
                                   state=str(tmp / "update.json"), bundle=str(bundle)))
    t0 = time.monotonic()
    whole = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert whole.stdout.strip() == "committed", whole.stderr
    span = time.monotonic() - t0
    rng = random.Random(11)
    seen = {"1.0": 0, "2.0": 0}
    for trial in range(50):
        # back to 1.0 with nothing else, then an update killed somewhere in it
        releases.switch("1.0")
        releases.prune({"1.0"})
        (tmp / "update.json").unlink(missing_ok=True)
        p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0, span))
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        version = runs(releases)
        assert version in ("tinyapp 1.0", "tinyapp 2.0"), (trial, version)     # never neither
        assert releases.complete(releases.current())
        seen[version.split()[1]] += 1
        # the next start finishes or undoes it, and leaves no debris
        out = updater(releases, tmp).recover()
        cur = releases.current()
        assert releases.complete(cur) and runs(releases) == f"tinyapp {cur}"
        assert not list(releases.base.glob("update-*")) and not (releases.base / "current.new").exists()
        state = json.loads((tmp / "update.json").read_text()) if (tmp / "update.json").exists() else {}
        if out is not None:
            assert state["phase"] in ("committed", "rolled_back", "failed")
        for d in releases.dir.iterdir():
            assert (d / ".complete").exists(), (trial, d.name, state)   # no half-made release is kept
    assert seen["1.0"] and seen["2.0"], seen
