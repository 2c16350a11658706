"""The box's identity: its id (``appliance.ids.device_id``: the Raspberry Pi serial, else
/etc/machine-id, or ``[device] id``), its own EC key pair generated here — the private key
never leaves the box, mode 0600, owned by the user that runs the sync daemon — and the
certificate the fleet CA signed for it."""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from typing import TYPE_CHECKING

from appliance.files import fsync_path, write_atomic, write_private

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

# cryptography costs a process ~10 MB: it is imported only to make a key, a CSR or to check
# a new certificate. The sync daemon learns its certificate's expiry from NOT_AFTER, written
# beside it when it is installed.

log = logging.getLogger(__name__)

KEY, CERT, CA, NOT_AFTER = "device.key", "device.pem", "fleet-ca.pem", "device.not-after"


class IdentityError(Exception):
    """A certificate that does not belong to this box's key, or cannot be read."""


def identity_dir(cfg) -> Path:
    return Path(cfg.provisioning.identity_dir or Path(cfg.device.state_dir) / "identity")


class Identity:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    @property
    def key_path(self) -> Path:
        return self.dir / KEY

    @property
    def cert_path(self) -> Path:
        return self.dir / CERT

    @property
    def ca_path(self) -> Path:
        return self.dir / CA

    def key(self) -> "ec.EllipticCurvePrivateKey":
        """This box's private key, generated on first use (0600, written atomically)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        if self.key_path.exists():
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise IdentityError(f"{self.key_path}: not an EC key")
            return key
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        write_private(self.key_path, pem)
        log.info("identity: generated this box's key pair in %s", self.dir)
        return key

    def csr(self, device: str) -> str:
        """A certificate signing request for ``device`` (CN), signed with this box's key."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import NameOID
        req = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
               .sign(self.key(), hashes.SHA256()))
        return req.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def certificate(self) -> "x509.Certificate | None":
        from cryptography import x509
        try:
            return x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("identity: %s cannot be read: %s", self.cert_path, exc)
            return None

    def install(self, device: str, cert_pem: str, ca_pem: str) -> "x509.Certificate":
        """Keep a certificate the fleet signed, after checking it is for this box's key and
        id; written atomically (the old one stays until the new one is whole)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.x509.oid import NameOID
        try:
            cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
            x509.load_pem_x509_certificate(ca_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise IdentityError(f"not a PEM certificate: {exc}") from None
        mine = self.key().public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        theirs = cert.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        if mine != theirs:
            raise IdentityError("the certificate is not for this box's key")
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not cns or cns[0].value != device:
            raise IdentityError(f"the certificate is not for device {device!r}")
        write_atomic(self.ca_path, ca_pem)
        write_atomic(self.cert_path, cert_pem)
        write_atomic(self.dir / NOT_AFTER, cert.not_valid_after_utc.isoformat())
        fsync_path(self.dir)
        return cert

    def not_after(self) -> dt.datetime | None:
        """When this box's certificate expires: from NOT_AFTER when it is newer than the
        certificate, else read from the certificate (and NOT_AFTER written for next time)."""
        try:
            cert_mtime = self.cert_path.stat().st_mtime
        except FileNotFoundError:
            return None
        side = self.dir / NOT_AFTER
        try:
            if side.stat().st_mtime >= cert_mtime:
                return dt.datetime.fromisoformat(side.read_text().strip())
        except (OSError, ValueError):
            pass
        cert = self.certificate()
        if cert is None:
            return None
        try:
            write_atomic(side, cert.not_valid_after_utc.isoformat())
        except OSError as exc:
            log.debug("identity: %s not written: %s", side, exc)
        return cert.not_valid_after_utc

    def expires_in_s(self, now: dt.datetime | None = None) -> float | None:
        end = self.not_after()
        if end is None:
            return None
        now = now or dt.datetime.now(dt.timezone.utc)
        return (end - now).total_seconds()

    def enrolled(self) -> bool:
        left = self.expires_in_s()
        return left is not None and left > 0 and self.key_path.exists()
