"""The Debian package, built by ``image_build/build-deb.sh`` and lintian-clean, in a fresh
Debian 12 root made by mmdebstrap: it installs (``appliancectl --version``, ``config check``
and ``doctor`` run there), an upgrade to a newer build keeps the journal and the edited
conffile and switches the release, and purge leaves nothing behind.

Slow (a Debian root and two package builds, a few minutes; the root is cached in
``build/debroot.tar`` and the downloaded wheels in ``build/deb``): it runs wherever mmdebstrap
is installed (tools/install.sh installs it), as root."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "debroot"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="a chroot needs root"),
    pytest.mark.skipif(not shutil.which("mmdebstrap"), reason="needs mmdebstrap (tools/install.sh installs it)"),
]


def run(*cmd: str, env: dict | None = None, timeout: float = 1200, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check and r.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


class Chroot:
    def __init__(self, path: Path):
        self.path = path
        self.mounts: list[Path] = []

    def __enter__(self) -> "Chroot":
        for fs, target, opts in (("proc", "proc", ["-t", "proc"]), ("/dev", "dev", ["--bind"])):
            t = self.path / target
            run("mount", *opts, fs, str(t))
            self.mounts.append(t)
        return self

    def __exit__(self, *exc) -> None:
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(m)], capture_output=True)

    def sh(self, script: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        r = subprocess.run(["chroot", str(self.path), "/bin/sh", "-ec", script], capture_output=True, text=True,
                           timeout=timeout, env=env)
        if check and r.returncode:
            raise AssertionError(f"in the chroot: {script}\n({r.returncode}) {r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r


def tree(root: Path) -> set[str]:
    """Every path of the root, but the package manager's own records, logs and caches."""
    skip = ("proc/", "dev/", "var/lib/dpkg/", "var/log/", "var/cache/", "tmp/", "var/lib/systemd/deb-systemd")
    out = set()
    for p in root.rglob("*"):
        rel = str(p.relative_to(root))
        if not rel.startswith(skip) and rel not in ("proc", "dev", "tmp"):
            out.add(rel)
    return out


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """The package as built from this tree, and the same code as a newer version."""
    first = run("bash", str(ROOT / "image_build" / "build-deb.sh"), timeout=1800)
    assert "lintian: clean" in first.stdout, first.stdout[-2000:]
    old = Path(next(line.split()[1] for line in first.stdout.splitlines() if line.startswith("built ")))
    second = run("bash", str(ROOT / "image_build" / "build-deb.sh"), env={"VERSION_SUFFIX": "+t1"}, timeout=1800)
    assert "lintian: clean" in second.stdout
    new = Path(next(line.split()[1] for line in second.stdout.splitlines() if line.startswith("built ")))
    keep = tmp_path_factory.mktemp("debs")
    return Path(shutil.copy2(old, keep)), Path(shutil.copy2(new, keep))


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory):
    """A fresh Debian 12 root with the package's dependencies (cached as a tarball)."""
    target = tmp_path_factory.mktemp("root") / "bookworm"
    tarball = CACHE.with_suffix(".tar")
    if not tarball.exists():
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        run("mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,systemd,adduser,ca-certificates,"
            "libasound2,libsystemd0,passwd", "bookworm", str(tarball), timeout=1800)
    target.mkdir()
    run("tar", "-C", str(target), "-xf", str(tarball))
    yield target
    subprocess.run(["umount", "-R", "-l", str(target / "proc")], capture_output=True)


def test_install_upgrade_purge_in_a_fresh_debian_root(debs, debian_root):
    old, new = debs
    root = debian_root
    before = tree(root)
    shutil.copy2(old, root / "tmp" / old.name)
    shutil.copy2(new, root / "tmp" / new.name)
    events = "\n".join([
        '{"ts": "2026-11-20T09:00:00.000Z", "type": "presence", "point": "till1", "state": "arrived"}',
        '{"ts": "2026-11-20T09:00:30.000Z", "type": "sale", "point": "till1", "receipt": "R1", "amount": 12.5}',
        '{"ts": "2026-11-20T09:01:00.000Z", "type": "presence", "point": "till1", "state": "left"}']) + "\n"
    with Chroot(root) as ch:
        ch.sh(f"dpkg -i /tmp/{old.name}")
        version = ch.sh("appliancectl --version").stdout.strip()
        assert version.startswith("appliancectl ") and "+t1" not in version
        assert (root / "opt/appliance/current").is_symlink()
        assert (root / "etc/appliance/secrets.toml").stat().st_mode & 0o777 == 0o600
        for user in ("appliance-core", "appliance-rf", "appliance-audio", "appliance-sync"):
            assert user in (root / "etc/passwd").read_text()
        state = root / "var/lib/appliance"
        assert state.stat().st_mode & 0o7777 == 0o2770
        assert (state / "updates").stat().st_mode & 0o7777 == 0o2770         # bundles from the fleet
        assert (root / "etc/systemd/system/appliance.target.wants/appliance-update.path").is_symlink()
        r = ch.sh("appliancectl update status")
        assert "0 release key(s)" in r.stdout and "installed: " in r.stdout, r.stdout
        r = ch.sh("appliancectl config check /etc/appliance/appliance.toml", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        r = ch.sh("appliancectl doctor", check=False)
        assert "Traceback" not in r.stdout + r.stderr and r.stdout.strip(), r.stdout + r.stderr
        # a journal with events, and the technician's edit of the conffile
        (root / "tmp" / "events.jsonl").write_text(events)
        ch.sh("appliancectl journal import /tmp/events.jsonl")
        count = "python3 -c \"import sqlite3; print(sqlite3.connect('/var/lib/appliance/journal.db')" \
                ".execute('SELECT COUNT(*) FROM events').fetchone()[0])\""
        n_before = int(ch.sh(count).stdout)
        assert n_before >= 3
        conf = root / "etc/appliance/appliance.toml"
        conf.write_text(conf.read_text() + "\n# edited by the technician\n")
        # the upgrade: a new release beside the old one, current switched, journal and edit kept
        ch.sh(f"dpkg --force-confold -i /tmp/{new.name}")
        assert "+t1" in ch.sh("appliancectl --version").stdout
        assert os.readlink(root / "opt/appliance/current").endswith("+t1")
        assert int(ch.sh(count).stdout) == n_before
        assert conf.read_text().endswith("# edited by the technician\n")
        releases = sorted(p.name for p in (root / "opt/appliance/releases").iterdir())
        assert len(releases) == 2                           # the previous one stays for a rollback
        # remove keeps configuration and state; purge takes everything
        ch.sh("dpkg -r contact-analyzer")
        assert conf.exists() and (state / "journal.db").exists() and not (root / "opt/appliance").exists()
        ch.sh("dpkg --purge contact-analyzer")
    for name in (old.name, new.name, "events.jsonl"):
        (root / "tmp" / name).unlink(missing_ok=True)
    after = tree(root)
    assert after - before == set(), sorted(after - before)[:20]


def test_a_signed_release_bundle_from_the_package(debs, tmp_path):
    """``fleetctl release keygen`` and ``release bundle --deb``: the package's wheels, signed;
    a box's check takes every one of them and nothing else."""
    from fleet.cli import main as fleetctl
    from fleet.release import wheels_from_deb
    from provisioning.update import load_public_keys, verify_bundle
    _, new = debs
    assert fleetctl(["release", "keygen", "--dir", str(tmp_path / "keys")]) == 0
    assert (tmp_path / "keys" / "release.key").stat().st_mode & 0o777 == 0o600
    assert fleetctl(["release", "keygen", "--dir", str(tmp_path / "keys")]) == 2        # never overwritten
    out = tmp_path / "release.bundle"
    assert fleetctl(["release", "bundle", "--key", str(tmp_path / "keys" / "release.key"), "--deb", str(new),
                     "-o", str(out)]) == 0
    m = verify_bundle(out, load_public_keys(tmp_path / "keys"), tmp_path / "checked")
    (tmp_path / "raw").mkdir()
    wheels, version = wheels_from_deb(new, tmp_path / "raw")
    assert m.version == version and version.endswith("+t1")
    assert sorted(p.name for p in (tmp_path / "checked").iterdir()) == [w.name for w in wheels]
    assert any(w.name.startswith("contact_analyzer-") for w in wheels) and len(wheels) > 10
