"""Release bundles for application updates (``fleetctl release keygen|bundle``): an Ed25519
key pair — the private key stays with whoever signs releases, the public one goes into the
image (``/etc/appliance/release-keys/``) — and signed bundles made from the Debian package's
wheels (or a folder of wheels)."""
from __future__ import annotations

import io
import os
import re
import tarfile
import tempfile
from pathlib import Path

from provisioning.update import make_bundle


class ReleaseError(Exception):
    pass


def keygen(directory: Path, name: str = "release") -> tuple[Path, Path]:
    """``<name>.key`` (PKCS#8 PEM, 0600) and ``<name>.pub``; never overwrites a key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
    directory.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    if key_path.exists() or pub_path.exists():
        raise ReleaseError(f"{key_path} or {pub_path} exists already; not overwritten")
    key = Ed25519PrivateKey.generate()
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    pub_path.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return key_path, pub_path


def load_private_key(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ReleaseError(f"{path}: not a readable private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"{path}: not an Ed25519 key")
    return key


def _deb_members(deb: Path) -> dict[str, bytes]:
    """The members of a .deb (an ar archive)."""
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise ReleaseError(f"{deb}: not a Debian package")
    out, pos = {}, 8
    while pos + 60 <= len(data):
        head = data[pos:pos + 60]
        name = head[:16].decode().strip().rstrip("/")
        size = int(head[48:58].decode().strip())
        out[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
    return out


def wheels_from_deb(deb: Path, into: Path) -> tuple[list[Path], str]:
    """The wheels the package carries (``/usr/lib/contact-analyzer/wheels``) and its version."""
    members = _deb_members(deb)
    data = next((v for k, v in members.items() if k.startswith("data.tar")), None)
    control = next((v for k, v in members.items() if k.startswith("control.tar")), None)
    if data is None or control is None:
        raise ReleaseError(f"{deb}: no data or control archive inside")
    version = ""
    with tarfile.open(fileobj=io.BytesIO(control)) as t:
        for m in t.getmembers():
            if m.name.lstrip("./") == "control":
                found = re.search(r"^Version: (\S+)$", t.extractfile(m).read().decode(), re.M)
                version = found.group(1) if found else ""
    wheels = []
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t.getmembers():
            name = m.name.lstrip("./")
            if m.isfile() and name.startswith("usr/lib/contact-analyzer/wheels/") and name.endswith(".whl"):
                p = into / Path(name).name
                p.write_bytes(t.extractfile(m).read())
                wheels.append(p)
    if not wheels or not version:
        raise ReleaseError(f"{deb}: not a contact-analyzer package (no wheels or no version)")
    return sorted(wheels), version


def bundle(key_path: Path, out: Path, deb: Path | None = None, wheels_dir: Path | None = None,
           version: str = "") -> tuple[Path, str, int]:
    """Sign a bundle of the package's (or the folder's) wheels; (path, version, wheel count)."""
    key = load_private_key(key_path)
    with tempfile.TemporaryDirectory() as tmp:
        if deb is not None:
            wheels, deb_version = wheels_from_deb(deb, Path(tmp))
            version = version or deb_version
        else:
            wheels = sorted(Path(wheels_dir).glob("*.whl"))
            if not wheels:
                raise ReleaseError(f"{wheels_dir}: no wheels")
            if not version:
                own = [w for w in wheels if w.name.startswith("contact_analyzer-")]
                if not own:
                    raise ReleaseError("give --version (no contact_analyzer wheel to take it from)")
                version = own[0].name.split("-")[1]
        make_bundle(wheels, version, key, out)
    return out, version, len(wheels)
