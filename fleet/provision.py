"""``fleetctl provision serve``: signs boxes' certificate requests with the fleet CA.

Enrolment: a new box, connected with the shared claim credential, sends its CSR and claim
token on ``<prefix>/provision/<request>/csr``; the answer (certificate + CA, or why not) goes
to ``<prefix>/provision/<request>/cert``. Renewal: an enrolled box sends a CSR on its own
``<prefix>/<id>/csr`` (the broker authenticated it as ``<id>``), the answer goes to
``<prefix>/<id>/cert``. Revoked devices are refused both ways. Every request fails alone."""
from __future__ import annotations

import logging
import re
import threading

from appliance.cloud.mqtt import BrokerSettings, make_client, network_alive
from appliance.cloud.mqtt import start as mqtt_start
from appliance.cloud.wire import (CERT, CSR, PROVISION, CertResponse, WireError, decode_csr, encode, parse_topic,
                                  safe_name)

from .pki import FleetCA, PkiError

log = logging.getLogger(__name__)


class ProvisionServer:
    def __init__(self, settings: BrokerSettings, ca: FleetCA, prefix: str = "ca/v1", client_id: str = "provision"):
        self.ca = ca
        self.prefix = prefix
        self.settings = settings
        self.client, self.host, self.port = make_client(settings, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.subscribed = threading.Event()
        self._claim = re.compile(rf"^{re.escape(prefix)}/{PROVISION}/([A-Za-z0-9_-]{{8,64}})/{CSR}$")
        self.issued = 0
        self.refused = 0
        self.started = False

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("provision: broker refused: %s", reason_code)
            return
        client.subscribe([(f"{self.prefix}/{PROVISION}/+/{CSR}", 1), (f"{self.prefix}/+/{CSR}", 1)])
        log.info("provision: connected to %s:%d", self.host, self.port)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self._handle(client, msg.topic, msg.payload)
        except Exception:  # noqa: BLE001 - one request fails alone; the loop goes on
            self.refused += 1
            log.exception("provision: a request on %s could not be handled", msg.topic[:200])

    def _handle(self, client, name: str, payload: bytes) -> None:
        m = self._claim.match(name)
        if m:
            reply, token_required = f"{self.prefix}/{PROVISION}/{m.group(1)}/{CERT}", True
            device = None
        else:
            try:
                t = parse_topic(self.prefix, name)
            except WireError as exc:
                log.warning("provision: ignored a message on %s: %s", name[:200], exc)
                return
            if t.kind != CSR:
                return
            reply, token_required, device = f"{self.prefix}/{t.device}/{CERT}", False, t.device
        req = None
        try:
            req = decode_csr(payload)
            if device is not None and req.device != device:
                raise PkiError(f"a renewal on {device}'s topic names {req.device!r}")
            cert = self.ca.sign(req.device, req.csr, req.token if token_required else None)
        except (WireError, PkiError) as exc:
            self.refused += 1
            who = device or "a claim request"
            log.warning("provision: refused %s: %s", who, exc)
            dev = device or (req.device if req is not None and safe_name(req.device) else "unknown")
            client.publish(reply, encode(CertResponse(device=dev, error=str(exc)[:500])), qos=1)
            return
        self.issued += 1
        log.info("provision: issued a certificate to %s (%s)", req.device, "enrolment" if token_required else "renewal")
        client.publish(reply, encode(CertResponse(device=req.device, cert=cert, ca=self.ca.ca_pem)), qos=1)

    def start(self) -> None:
        mqtt_start(self.client, self.host, self.port, self.settings)
        self.started = True

    def alive(self) -> bool:
        return not self.started or network_alive(self.client)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
