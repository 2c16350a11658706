"""Application updates the fleet can trust: a signed release bundle installed beside the
running release, switched to atomically, health-checked, then committed or rolled back.

A **bundle** is a tar file: ``manifest.json`` (format, version, and every file's size and
SHA-256), ``manifest.sig`` (an Ed25519 signature of the manifest's exact bytes) and
``wheels/*.whl`` (the project and its dependencies, as the Debian package carries them). A
bundle is taken only if the signature verifies against one of the box's release keys and
every file is the manifest's; anything else in the tar (links, devices, paths outside it,
files not in the manifest, sizes over the caps) refuses it.

The **releases** live in ``<base>/releases/<version>`` (a Python environment made from the
bundle's wheels, marked complete last) and ``<base>/current`` points at one (replaced by an
atomic rename). Every step is written to ``update.json`` before it is taken, so a process
killed at any instant leaves ``current`` at a complete release — the old one or the new one,
never neither — and :meth:`Updater.recover` finishes or undoes what was interrupted."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from appliance.files import fsync_path, write_atomic

FORMAT = 1
MAX_FILES = 200
MAX_FILE_BYTES = 256 << 20
MAX_BUNDLE_BYTES = 512 << 20
VERSION_CHARS = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.+~-_")


TERMINAL = ("committed", "rolled_back", "refused", "failed", "expired")
"""Phases in ``update.json`` that end an update (the fleet command's result)."""


class UpdateError(Exception):
    """Why a bundle was refused or an update did not take: said on ``cmd/<id>/result``."""


@dataclass
class Manifest:
    version: str
    files: dict[str, dict] = field(default_factory=dict)      # name -> {"sha256", "size"}


# --- bundles --------------------------------------------------------------------------------


def make_bundle(wheels: list[Path], version: str, private_key, out: Path) -> Path:
    """Write a signed bundle of ``wheels`` (``private_key``: an Ed25519PrivateKey)."""
    files = {}
    for w in wheels:
        data = w.read_bytes()
        files[f"wheels/{w.name}"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest = json.dumps({"format": FORMAT, "version": version, "files": files}, sort_keys=True,
                          indent=1).encode()
    sig = private_key.sign(manifest)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w") as tar:
        for name, data in (("manifest.json", manifest), ("manifest.sig", sig)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
        for w in wheels:
            tar.add(w, arcname=f"wheels/{w.name}", recursive=False)
    os.replace(tmp, out)
    return out


def read_manifest(path: Path) -> dict:
    """A bundle's manifest, unchecked (the operator's own file: what it names)."""
    try:
        with tarfile.open(path, "r:") as tar:
            doc = json.loads(tar.extractfile("manifest.json").read())
        if not isinstance(doc, dict) or not isinstance(doc.get("version"), str):
            raise ValueError("no version")
        return doc
    except (OSError, tarfile.TarError, KeyError, AttributeError, ValueError) as exc:
        raise UpdateError(f"{path}: not a release bundle ({exc})") from None


def load_public_keys(directory: Path) -> list:
    """The release keys a box trusts: ``*.pub`` PEM files (Ed25519) in ``directory``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    keys = []
    for p in sorted(Path(directory).glob("*.pub")):
        k = load_pem_public_key(p.read_bytes())
        if isinstance(k, Ed25519PublicKey):
            keys.append(k)
    return keys


def verify_bundle(path: Path, public_keys: list, into: Path | None) -> Manifest:
    """Check ``path`` and extract its wheels into ``into`` (None: check only); UpdateError
    says why not."""
    from cryptography.exceptions import InvalidSignature
    if not public_keys:
        raise UpdateError("no release key on this box: it takes no update")
    try:
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise UpdateError(f"bundle larger than {MAX_BUNDLE_BYTES >> 20} MB")
        tar = tarfile.open(path, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise UpdateError(f"not a bundle: {exc}") from None
    with tar:
        members = tar.getmembers()
        if len(members) > MAX_FILES + 2:
            raise UpdateError("too many files in the bundle")
        by_name = {}
        for m in members:
            if not m.isfile() or m.name.startswith("/") or ".." in m.name.split("/") or m.size > MAX_FILE_BYTES:
                raise UpdateError(f"bundle: {m.name[:100]!r} is not a plain file inside it")
            by_name[m.name] = m
        try:
            raw = tar.extractfile(by_name["manifest.json"]).read()
            sig = tar.extractfile(by_name["manifest.sig"]).read()
        except KeyError:
            raise UpdateError("bundle: no manifest.json and manifest.sig") from None
        for key in public_keys:
            try:
                key.verify(sig, raw)
                break
            except InvalidSignature:
                continue
        else:
            raise UpdateError("bundle: the signature is not from a release key this box trusts")
        try:
            doc = json.loads(raw)
            version, files = doc["version"], doc["files"]
            assert doc["format"] == FORMAT and isinstance(files, dict) and isinstance(version, str)
            assert 0 < len(version) <= 64 and set(version) <= VERSION_CHARS
        except (ValueError, KeyError, TypeError, AssertionError):
            raise UpdateError("bundle: the manifest is not one this box reads") from None
        extra = set(by_name) - set(files) - {"manifest.json", "manifest.sig"}
        if extra:
            raise UpdateError(f"bundle: files not in the manifest: {sorted(extra)[:3]}")
        if into is not None:
            into.mkdir(parents=True, exist_ok=True)
        for name, meta in files.items():
            if not name.startswith("wheels/") or "/" in name[7:] or not name.endswith(".whl") or name not in by_name:
                raise UpdateError(f"bundle: {name[:100]!r} missing or not a wheel")
            data = tar.extractfile(by_name[name]).read()
            if len(data) != meta.get("size") or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
                raise UpdateError(f"bundle: {name} is not the file the manifest signs")
            if into is not None:
                (into / name[7:]).write_bytes(data)
    return Manifest(version, files)


# --- releases -------------------------------------------------------------------------------


def read_state(path: Path) -> dict:
    """``update.json``: the last update's phase (an empty dict when there is none or it is unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


class Releases:
    """``<base>/releases/<version>`` and the ``<base>/current`` link."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.dir = self.base / "releases"

    def path(self, version: str) -> Path:
        return self.dir / version

    def complete(self, version: str) -> bool:
        return (self.path(version) / ".complete").exists()

    def current(self) -> str | None:
        try:
            return Path(os.readlink(self.base / "current")).name
        except OSError:
            return None

    def switch(self, version: str) -> None:
        """Point ``current`` at a complete release, atomically (a rename over the link)."""
        if not self.complete(version):
            raise UpdateError(f"release {version} is not complete")
        tmp = self.base / "current.new"
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        os.symlink(f"releases/{version}", tmp)
        os.replace(tmp, self.base / "current")
        fsync_path(self.base)

    def prune(self, keep: set[str]) -> None:
        for d in self.dir.iterdir() if self.dir.exists() else []:
            if d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)


def venv_installer(release: Path, wheels: Path) -> None:
    """The release's Python environment from the bundle's wheels, offline."""
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    subprocess.run([python, "-m", "venv", str(release)], check=True, capture_output=True, timeout=600)
    subprocess.run([str(release / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--disable-pip-version-check", "--no-cache-dir", *map(str, sorted(wheels.glob("*.whl")))],
                   check=True, capture_output=True, timeout=1800)


def _why(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        return f"{exc.cmd[0] if isinstance(exc.cmd, list) else exc.cmd} exited {exc.returncode}" + (
            f": {tail[0][:300]}" if tail else "")
    return str(exc)[:300]


def in_window(window: str, now_local) -> bool:
    """``HH:MM-HH:MM`` (may pass midnight; empty: always) at ``now_local`` (a datetime)."""
    if not window:
        return True
    a, b = window.split("-")
    start, end = (int(x[:2]) * 60 + int(x[3:]) for x in (a, b))
    t = now_local.hour * 60 + now_local.minute
    if start == end:
        return True
    return start <= t < end if start < end else (t >= start or t < end)


# --- the update -----------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str                 # committed | rolled_back | refused | failed | deferred
    version: str | None
    previous: str | None
    detail: str = ""


class Updater:
    """One update at a time. ``restart()`` restarts the daemons on ``current``; ``healthy()``
    says whether every daemon is READY and the broker reachable; ``busy()`` names what holds
    the update lock (an open contact, a clip being cut) or None; ``in_window()`` whether now
    is inside the maintenance window."""

    def __init__(self, releases: Releases, state_file: Path, public_keys: list,
                 restart: Callable[[], None], healthy: Callable[[], bool],
                 busy: Callable[[], str | None] = lambda: None, in_window: Callable[[], bool] = lambda: True,
                 installer: Callable[[Path, Path], None] = venv_installer, health_timeout_s: float = 120.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 why_unhealthy: Callable[[], str] = lambda: ""):
        self.releases = releases
        self.state_file = Path(state_file)
        self.keys = public_keys
        self.restart, self.healthy, self.busy, self.in_window = restart, healthy, busy, in_window
        self.installer = installer
        self.health_timeout_s = health_timeout_s
        self.clock, self.sleep = clock, sleep
        self.why_unhealthy = why_unhealthy

    def state(self) -> dict:
        return read_state(self.state_file)

    def note(self, **doc) -> None:
        write_atomic(self.state_file, json.dumps({**doc, "time": int(time.time())}, sort_keys=True).encode())

    def note_waiting(self, update_id: str, why: str) -> None:
        """An update that waits (window, lock): said in ``info`` meanwhile."""
        self.note(id=update_id, phase="waiting", previous=self.releases.current(), error=why)

    def apply(self, bundle: Path, update_id: str = "") -> Outcome:
        previous = self.releases.current()
        if not self.in_window():
            return Outcome("deferred", None, previous, "outside the maintenance window")
        holder = self.busy()
        if holder:
            return Outcome("deferred", None, previous, f"busy: {holder}")
        self.releases.base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="update-", dir=self.releases.base) as tmp:
            try:
                m = verify_bundle(bundle, self.keys, Path(tmp) / "wheels")
            except UpdateError as exc:
                self.note(id=update_id, phase="refused", error=str(exc), previous=previous)
                return Outcome("refused", None, previous, str(exc))
            if m.version == previous:
                self.note(id=update_id, phase="committed", version=m.version, previous=previous,
                           error="already running this release")
                return Outcome("committed", m.version, previous, "already running this release")
            self.note(id=update_id, phase="installing", version=m.version, previous=previous)
            try:
                self._install(m.version, Path(tmp) / "wheels")
            except (OSError, subprocess.SubprocessError) as exc:     # e.g. wheels for another machine
                shutil.rmtree(self.releases.path(m.version), ignore_errors=True)
                why = f"installing {m.version} failed: {_why(exc)}"
                self.note(id=update_id, phase="failed", version=m.version, previous=previous, error=why)
                return Outcome("failed", m.version, previous, why)
        return self._switch_and_check(update_id, m.version, previous)

    def _install(self, version: str, wheels: Path) -> None:
        rel = self.releases.path(version)
        if self.releases.complete(version):
            return
        shutil.rmtree(rel, ignore_errors=True)
        rel.parent.mkdir(parents=True, exist_ok=True)
        self.installer(rel, wheels)
        (rel / ".complete").write_bytes(b"")
        fsync_path(rel)
        fsync_path(rel.parent)

    def _switch_and_check(self, update_id: str, version: str, previous: str | None) -> Outcome:
        self.note(id=update_id, phase="switching", version=version, previous=previous)
        self.releases.switch(version)
        return self._check(update_id, version, previous)

    def _check(self, update_id: str, version: str, previous: str | None) -> Outcome:
        self.note(id=update_id, phase="checking", version=version, previous=previous)
        self.restart()
        deadline = self.clock() + self.health_timeout_s
        while self.clock() < deadline:
            if self.healthy():
                self.note(id=update_id, phase="committed", version=version, previous=previous)
                self.releases.prune({version} | ({previous} if previous else set()))
                return Outcome("committed", version, previous)
            self.sleep(1.0)
        problem = self.why_unhealthy()
        return self._roll_back(update_id, version, previous,
                               f"not healthy within {self.health_timeout_s:.0f} s (every daemon READY, the broker "
                               f"reachable)" + (f": {problem}" if problem else ""))

    def _roll_back(self, update_id: str, version: str, previous: str | None, why: str) -> Outcome:
        if previous and self.releases.complete(previous):
            self.releases.switch(previous)
            self.restart()
        if self.releases.current() != version:          # never the release that runs
            shutil.rmtree(self.releases.path(version), ignore_errors=True)
        self.note(id=update_id, phase="rolled_back", version=version, previous=previous, error=why)
        return Outcome("rolled_back", version, previous, why)

    def recover(self) -> Outcome | None:
        """After a restart: finish or undo an update that was interrupted."""
        st = self.state()
        phase, version, previous = st.get("phase"), st.get("version"), st.get("previous")
        for d in self.releases.base.glob("update-*"):          # a killed verification's scratch folder
            shutil.rmtree(d, ignore_errors=True)
        (self.releases.base / "current.new").unlink(missing_ok=True)
        if phase == "installing":
            if version and self.releases.current() != version:
                shutil.rmtree(self.releases.path(version), ignore_errors=True)
            self.note(id=st.get("id", ""), phase="failed", version=version, previous=previous,
                       error="interrupted while installing")
            return Outcome("rolled_back", version, previous, "interrupted while installing")
        if phase in ("switching", "checking"):
            if self.releases.current() == version:      # switched: the health check decides, again
                return self._check(st.get("id", ""), version, previous)
            return self._roll_back(st.get("id", ""), version, previous, "interrupted before the switch")
        return None
