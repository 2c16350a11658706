"""Enrolment by claim (device side): with the shared claim credential — allowed only on the
provisioning topics — send this box's CSR and claim token, receive a certificate signed by
the fleet CA, keep it. From then on the box connects with its own certificate and never uses
the claim credential again."""
from __future__ import annotations

import logging
import secrets
import threading

from appliance.cloud.mqtt import BrokerSettings, make_client
from appliance.cloud.mqtt import start as mqtt_start
from appliance.cloud.wire import CERT, CSR, PROVISION, CsrRequest, WireError, decode_cert, encode

from .identity import Identity, IdentityError

log = logging.getLogger(__name__)


class EnrolmentError(Exception):
    pass


def claim_configured(cfg) -> bool:
    p = cfg.provisioning
    return bool(p.claim_token or p.claim_cert_file or p.claim_username)


def claim_settings(cfg) -> BrokerSettings:
    p, s = cfg.provisioning, cfg.sync
    return BrokerSettings(url=s.broker, ca_file=s.ca_file, cert_file=p.claim_cert_file, key_file=p.claim_key_file,
                          username=p.claim_username, password=p.claim_password,
                          protocol="3.1.1" if s.protocol == "3.1.1" else "5")


def device_settings(cfg, identity: Identity) -> BrokerSettings:
    """``[sync]`` as configured, with this box's enrolled certificate when it has one (and
    no certificate of its own is configured)."""
    s = BrokerSettings.from_config(cfg.sync)
    if not cfg.sync.cert_file and identity.cert_path.exists():
        import dataclasses
        s = dataclasses.replace(s, cert_file=str(identity.cert_path), key_file=str(identity.key_path),
                                ca_file=cfg.sync.ca_file or str(identity.ca_path))
    return s


def request_certificate(settings: BrokerSettings, prefix: str, device: str, identity: Identity, token: str,
                        timeout_s: float = 30.0) -> str:
    """One enrolment attempt: returns the certificate PEM (installed), or raises."""
    request = secrets.token_hex(12)
    reply = f"{prefix}/{PROVISION}/{request}/{CERT}"
    got: dict[str, bytes] = {}
    ready, answered = threading.Event(), threading.Event()
    client, host, port = make_client(settings, f"claim-{request}")

    def on_connect(c, u, f, rc, p):
        if rc.is_failure:
            got["refused"] = str(rc).encode()
            answered.set()
            return
        c.subscribe(reply, qos=1)

    def on_message(c, u, msg):
        got["answer"] = msg.payload
        answered.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *a: ready.set()
    client.on_message = on_message
    csr = identity.csr(device)
    mqtt_start(client, host, port, settings)
    try:
        if not ready.wait(timeout_s):
            raise EnrolmentError(f"could not subscribe for the answer within {timeout_s:.0f} s"
                                 + (f": {got['refused'].decode()}" if "refused" in got else ""))
        client.publish(f"{prefix}/{PROVISION}/{request}/{CSR}",
                       encode(CsrRequest(device=device, csr=csr, token=token)), qos=1)
        if not answered.wait(timeout_s) or "answer" not in got:
            raise EnrolmentError(f"no answer from the provisioning service within {timeout_s:.0f} s")
    finally:
        client.disconnect()
        client.loop_stop()
    try:
        resp = decode_cert(got["answer"])
    except WireError as exc:
        raise EnrolmentError(f"a bad answer: {exc}") from None
    if resp.error:
        raise EnrolmentError(f"refused: {resp.error}")
    if resp.device != device:
        raise EnrolmentError(f"the answer is for {resp.device!r}")
    try:
        identity.install(device, resp.cert, resp.ca)
    except IdentityError as exc:
        raise EnrolmentError(str(exc)) from None
    return resp.cert


def enrol(cfg, device: str, identity: Identity, stop: threading.Event, timeout_s: float = 30.0,
          max_wait_s: float = 600.0) -> bool:
    """Until enrolled or ``stop``: attempts with backoff (10 s doubling to ``max_wait_s``)."""
    settings = claim_settings(cfg)
    wait = 10.0
    while not stop.is_set():
        try:
            request_certificate(settings, cfg.sync.prefix, device, identity, cfg.provisioning.claim_token, timeout_s)
            log.info("enrolment: %s has its certificate; the claim credential is no longer used", device)
            return True
        except (EnrolmentError, OSError, ValueError) as exc:
            log.warning("enrolment of %s failed: %s; trying again in %.0f s", device, exc, wait)
        stop.wait(wait)
        wait = min(max_wait_s, wait * 2)
    return False
