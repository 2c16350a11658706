"""A broker as a deployment runs it: TLS with client certificates from a throw-away CA,
identity = certificate CN, and the per-device ACL (``pattern readwrite ca/v1/%u/#``)."""
from __future__ import annotations

import pytest

from tests.mqtt_broker import Mosquitto
from tests.pki import CA


@pytest.fixture
def tls(tmp_path):
    ca = CA(tmp_path / "pki")
    server = ca.issue("broker", server=True)
    certs = {cn: ca.issue(cn) for cn in ("box-1", "box-2", "ingest")}
    expired = ca.issue("box-1", expired=True)
    stranger = CA(tmp_path / "stranger", "stranger-ca").issue("box-1")
    acl = tmp_path / "acl"
    acl.write_text("user ingest\ntopic readwrite ca/v1/#\n\npattern readwrite ca/v1/%u/#\n")
    broker = Mosquitto(tmp_path / "broker", extra=(
        f"cafile {ca.path}\ncertfile {server[0]}\nkeyfile {server[1]}\nrequire_certificate true\n"
        f"use_identity_as_username true\nacl_file {acl}\n")).start()
    broker.ca, broker.certs, broker.expired, broker.stranger = ca, certs, expired, stranger
    broker.tls_url = f"mqtts://127.0.0.1:{broker.port}"
    yield broker
    broker.stop()
