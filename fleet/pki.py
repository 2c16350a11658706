"""The fleet CA (``fleetctl ca init``, ``provision serve``, ``revoke``): one directory holds the
CA key (0600), the broker's and the services' certificates, the shared claim credential,
one-time enrolment tokens, the allow-list, the revocation list (and a CRL for the broker),
and the broker snippets (Mosquitto config and ACL).

Layout of ``DIR``::

    ca.pem ca.key                 the fleet CA
    broker.pem broker.key         the broker's server certificate (its host names / addresses)
    ingest.* operator.* provision.*   service identities (CN = MQTT user name)
    claim.pem claim.key           the shared claim credential baked into new boxes
    tokens                        one-time enrolment tokens, one per line (used ones are removed)
    allow                         device ids that may enrol with any claim token
    revoked                       revoked device ids, one per line
    issued.jsonl                  every certificate issued: device, serial, not_after
    crl.pem                       the revocation list for the broker (crlfile)
    mosquitto.conf acl            a listener and the ACL for Mosquitto
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.cloud.wire import RESERVED_IDS, safe_name
from appliance.files import write_atomic, write_private

SERVICES = ("ingest", "operator", "provision")
CLAIM = "claim"
DEVICE_DAYS = 365


class PkiError(Exception):
    """A request the CA refuses (the message says why; it goes back to the box)."""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _write_key(path: Path, key) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_private(path, pem)


def acl_text(prefix: str) -> str:
    """Mosquitto ACL: services by certificate CN, the claim credential only on the
    provisioning topics, every device confined to its own topic root (``%u`` = its CN) and
    free to read the ingest workers' load hints."""
    return (f"# Contact Analyzer fleet ACL (Mosquitto: use_identity_as_username true)\n"
            f"user ingest\ntopic readwrite {prefix}/#\n\n"
            f"user operator\ntopic readwrite {prefix}/#\n\n"
            f"user provision\ntopic readwrite {prefix}/provision/#\ntopic read {prefix}/+/csr\n"
            f"topic write {prefix}/+/cert\n\n"
            f"user claim\ntopic write {prefix}/provision/+/csr\ntopic read {prefix}/provision/+/cert\n\n"
            f"pattern readwrite {prefix}/%u/#\n"
            f"pattern read {prefix}/ingest/load/+\n")


class FleetCA:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.lock = threading.Lock()
        try:
            self.cert = x509.load_pem_x509_certificate((self.dir / "ca.pem").read_bytes())
            self.key = serialization.load_pem_private_key((self.dir / "ca.key").read_bytes(), password=None)
        except FileNotFoundError:
            raise PkiError(f"{self.dir}: no fleet CA here (create one with: fleetctl ca init {self.dir})") from None
        except ValueError as exc:
            raise PkiError(f"{self.dir}: the CA files cannot be read: {exc}") from None

    # --- creation -------------------------------------------------------------------------

    @classmethod
    def init(cls, directory: str | Path, hosts: list[str], prefix: str = "ca/v1", port: int = 8883,
             days: int = 3650, name: str = "Contact Analyzer fleet CA", bind: str = "") -> "FleetCA":
        d = Path(directory)
        if (d / "ca.key").exists():
            raise PkiError(f"{d}: a fleet CA exists already (its key would be lost)")
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .sign(key, hashes.SHA256()))
        _write_key(d / "ca.key", key)
        write_atomic(d / "ca.pem", _pem(cert))
        for f in ("tokens", "allow", "revoked"):
            if not (d / f).exists():
                write_atomic(d / f, "")
        ca = cls(d)
        ca.issue_service("broker", server_hosts=hosts, days=days)
        for svc in SERVICES + (CLAIM,):
            ca.issue_service(svc, days=days)
        ca.write_crl()
        write_atomic(d / "acl", acl_text(prefix))
        write_atomic(d / "mosquitto.conf", (
            f"# Contact Analyzer fleet listener (include from /etc/mosquitto/conf.d/)\n"
            f"listener {port}{' ' + bind if bind else ''}\n"
            f"cafile {d / 'ca.pem'}\ncertfile {d / 'broker.pem'}\nkeyfile {d / 'broker.key'}\n"
            f"require_certificate true\nuse_identity_as_username true\ncrlfile {d / 'crl.pem'}\n"
            f"acl_file {d / 'acl'}\n"))
        return ca

    def issue_service(self, cn: str, server_hosts: list[str] | None = None, days: int = 3650) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        b = self._builder(cn, key.public_key(), days)
        if server_hosts is not None:
            sans: list[x509.GeneralName] = []
            for h in server_hosts:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(h)))
                except ValueError:
                    sans.append(x509.DNSName(h))
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        _write_key(self.dir / f"{cn}.key", key)
        write_atomic(self.dir / f"{cn}.pem", _pem(cert))

    def _builder(self, cn: str, public_key, days: int) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.timezone.utc)
        return (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.cert.subject)
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))

    @property
    def ca_pem(self) -> str:
        return _pem(self.cert)

    # --- lists ----------------------------------------------------------------------------

    def _lines(self, name: str) -> list[str]:
        try:
            return [x.strip() for x in (self.dir / name).read_text().splitlines() if x.strip()]
        except FileNotFoundError:
            return []

    def add_tokens(self, n: int) -> list[str]:
        with self.lock:
            new = [secrets.token_urlsafe(18) for _ in range(n)]
            write_atomic(self.dir / "tokens", "\n".join(self._lines("tokens") + new) + "\n")
        return new

    def allow(self, device: str) -> None:
        with self.lock:
            if device not in self._lines("allow"):
                write_atomic(self.dir / "allow", "\n".join(self._lines("allow") + [device]) + "\n")

    def revoked(self) -> set[str]:
        return set(self._lines("revoked"))

    def issued(self) -> list[dict]:
        try:
            return [json.loads(x) for x in (self.dir / "issued.jsonl").read_text().splitlines() if x.strip()]
        except FileNotFoundError:
            return []

    def revoke(self, device: str) -> int:
        """Refuse the device from now on; its certificates go on the CRL. Returns how many
        certificates were revoked."""
        with self.lock:
            if device not in self._lines("revoked"):
                write_atomic(self.dir / "revoked", "\n".join(self._lines("revoked") + [device]) + "\n")
        return self.write_crl(device)

    def write_crl(self, device: str | None = None) -> int:
        revoked = self.revoked()
        now = dt.datetime.now(dt.timezone.utc)
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
             .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=365)))
        n = 0
        for rec in self.issued():
            if rec["device"] in revoked:
                b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(int(rec["serial"]))
                                              .revocation_date(now).build())
                n += rec["device"] == device
        write_atomic(self.dir / "crl.pem", b.sign(self.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.PEM).decode("ascii"))
        return n

    # --- signing --------------------------------------------------------------------------

    def sign(self, device: str, csr_pem: str, token: str | None, days: int = DEVICE_DAYS) -> str:
        """Check and sign a box's CSR. ``token`` None: a renewal (the box already proved who
        it is with its certificate on its own topic); else a one-time token, or any token
        for an allow-listed device id."""
        if not safe_name(device) or device in RESERVED_IDS:
            raise PkiError(f"{device!r} cannot be a device id")
        if device in self.revoked():
            raise PkiError(f"device {device} is revoked")
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise PkiError("not a PEM certificate signing request") from None
        if not csr.is_signature_valid:
            raise PkiError("the request's signature does not verify")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(cns) != 1 or cns[0].value != device:
            raise PkiError("the request's common name is not the device id")
        pub = csr.public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.key_size < 256:
            raise PkiError("the request's key must be EC P-256 or stronger")
        if token is not None:
            self._take_token(device, token)
        cert = (self._builder(device, pub, days)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        with self.lock:
            with open(self.dir / "issued.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"device": device, "serial": str(cert.serial_number),
                                    "not_after": cert.not_valid_after_utc.isoformat(),
                                    "renewal": token is None}) + "\n")
                f.flush()
                os.fsync(f.fileno())
        return _pem(cert)

    def _take_token(self, device: str, token: str) -> None:
        with self.lock:
            tokens = self._lines("tokens")
            if token and token in tokens:
                tokens.remove(token)
                write_atomic(self.dir / "tokens", "\n".join(tokens) + ("\n" if tokens else ""))
                return
        if device in self._lines("allow"):
            return
        raise PkiError("unknown or used claim token, and the device is not on the allow-list")
