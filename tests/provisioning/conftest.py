"""A fleet as it is deployed: a fleet CA made by ``fleetctl ca init``, Mosquitto with the
listener and ACL it writes (TLS, client certificates, identity = CN, a CRL), the
provisioning service and the ingest with their own certificates."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.cloud.mqtt import BrokerSettings
from fleet.ingest import Ingest, IngestStore
from fleet.pki import FleetCA
from fleet.provision import ProvisionServer
from tests.mqtt_broker import Mosquitto, free_port


@dataclass
class Fleet:
    ca: FleetCA
    broker: Mosquitto
    port: int
    store: IngestStore
    ingest: Ingest
    provision: ProvisionServer
    tmp: Path

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def settings(self, who: str) -> BrokerSettings:
        return BrokerSettings(self.url, str(self.ca.dir / "ca.pem"), str(self.ca.dir / f"{who}.pem"),
                              str(self.ca.dir / f"{who}.key"))

    def box_config(self, box: str, extra: str = "", token: str = "any", remote: bool = True) -> Path:
        d = self.tmp / box
        d.mkdir(exist_ok=True)
        path = d / "appliance.toml"
        path.write_text(
            f'[device]\nid = "{box}"\nstate_dir = "{d / "state"}"\n[points.till1]\n[points.till2]\n'
            f'[sync]\nbroker = "{self.url}"\nca_file = "{self.ca.dir / "ca.pem"}"\nack_timeout_s = 5\n'
            f'[provisioning]\nclaim_token = "{token}"\nclaim_cert_file = "{self.ca.dir / "claim.pem"}"\n'
            f'claim_key_file = "{self.ca.dir / "claim.key"}"\nremote_config = {"true" if remote else "false"}\n'
            f'reboot_command = ["touch", "{d / "rebooted"}"]\n{extra}')
        return path

    def restart_broker(self) -> None:
        self.broker.stop()
        self.broker.start()


def start_fleet(tmp: Path, clips: bool = False) -> Fleet:
    port = free_port()
    ca = FleetCA.init(tmp / "ca", ["127.0.0.1", "localhost"], port=port, bind="127.0.0.1")
    broker = Mosquitto(tmp / "broker", extra=(ca.dir / "mosquitto.conf").read_text()).start()
    end = time.monotonic() + 10
    while time.monotonic() < end:
        import socket
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    fleet = Fleet(ca, broker, port, None, None, None, tmp)  # type: ignore[arg-type]
    fleet.store = IngestStore(tmp / "ingest.db")
    fleet.ingest = Ingest(fleet.settings("ingest"), fleet.store, clips_dir=(tmp / "clips") if clips else None)
    fleet.ingest.start()
    fleet.provision = ProvisionServer(fleet.settings("provision"), ca)
    fleet.provision.start()
    assert fleet.provision.subscribed.wait(10)
    end = time.monotonic() + 10
    while not fleet.ingest.subscribed.is_set() and time.monotonic() < end:
        time.sleep(0.02)
    return fleet


@pytest.fixture
def fleet(tmp_path):
    f = start_fleet(tmp_path, clips=True)
    yield f
    f.provision.stop()
    f.ingest.stop()
    f.store.close()
    f.broker.stop()
