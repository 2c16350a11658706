"""Home Assistant discovery on a shop's own Mosquitto (anonymous, as Home Assistant's add-on
runs it): one device, its remotes as event entities (never retained), today's figures as
sensors, availability from the last will, re-announced on Home Assistant's birth message,
and Zigbee2MQTT-style requests with the transaction echoed."""
from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt

from appliance.journal import NewEvent
from tests.provisioning.boxes import Box


class HomeAssistantClient:
    def __init__(self, port: int):
        self.msgs: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="homeassistant")
        self.c.on_message = lambda cl, u, m: self._got(m)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        for t in ("homeassistant/#", "ca/v1/box-1/ha/#", "ca/v1/box-1/status"):
            self.c.subscribe(t, qos=1)
        time.sleep(0.3)

    def _got(self, m) -> None:
        with self.lock:
            self.msgs.append((m.topic, m.payload, bool(m.retain)))

    def seen(self, pred) -> list:
        with self.lock:
            return [x for x in self.msgs if pred(x)]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_home_assistant_discovery_events_sensors_and_requests(tmp_path, broker):
    path = tmp_path / "appliance.toml"
    path.write_text(f'[device]\nid = "box-1"\nstate_dir = "{tmp_path / "state"}"\n[points.till1]\n'
                    f'[remotes.a1b2c3]\npoint = "till1"\nname = "Till remote"\n'
                    f'[remotes.a1b2c3.buttons]\n1 = {{ meaning = "rating", value = 2 }}\n'
                    f'[sync]\nbroker = "{broker.url}"\n[home_assistant]\nenabled = true\ninterval_s = 10\n')
    ha = HomeAssistantClient(broker.port)
    box = Box(path)
    try:
        ext = box.stage.extensions[1]
        assert box.run_until(lambda: len(ha.seen(lambda m: m[0].endswith("/config"))) >= 5)
        configs = {t: (json.loads(p), r) for t, p, r in ha.seen(lambda m: m[0].endswith("/config"))}
        ev_topic = "homeassistant/event/box-1/remote_a1b2c3/config"
        assert ev_topic in configs and configs[ev_topic][0]["name"] == "Till remote"
        assert configs[ev_topic][0]["availability_topic"] == "ca/v1/box-1/status"
        assert {t.split("/")[3] for t in configs if "/sensor/" in t} == {"csi", "cdi", "contacts", "response_rate"}
        dev_ids = {json.dumps(d["device"]["identifiers"]) for d, _ in configs.values()}
        assert len(dev_ids) == 1                                        # one device
        assert box.run_until(lambda: ha.seen(lambda m: m[0] == "ca/v1/box-1/ha/state"))
        state = json.loads(ha.seen(lambda m: m[0] == "ca/v1/box-1/ha/state")[-1][1])
        assert set(state) >= {"csi", "cdi", "contacts", "response_rate"}

        box.journal.append(NewEvent("rating", int(time.time() * 1000), {"value": 2, "class": "top",
                                                                        "remote": "a1b2c3", "button": 1},
                                    "till1", "rf"))
        assert box.run_until(lambda: ha.seen(lambda m: m[0] == "ca/v1/box-1/ha/event/a1b2c3"))
        t, p, retained = ha.seen(lambda m: m[0] == "ca/v1/box-1/ha/event/a1b2c3")[0]
        assert json.loads(p)["event_type"] == "rating" and json.loads(p)["value"] == 2 and not retained

        ha.c.publish("homeassistant/status", b"online", qos=1)          # Home Assistant restarted
        assert box.run_until(lambda: ext.announced == 2)

        for action, body in (("set_owner", {"transaction": "t1", "point": "till1", "staff": "anna"}),
                             ("set_owner", {"transaction": "t2", "point": "nowhere", "staff": "x"}),
                             ("format", {"transaction": "t3"}), ("set_owner", {"no": "transaction"})):
            ha.c.publish(f"ca/v1/box-1/ha/request/{action}", json.dumps(body).encode(), qos=1)
        assert box.run_until(lambda: len(ha.seen(lambda m: "/ha/response/" in m[0])) >= 4)
        answers = [json.loads(p) for _, p, _ in ha.seen(lambda m: "/ha/response/" in m[0])]
        by_tx = {a.get("transaction"): a for a in answers}
        assert by_tx["t1"]["status"] == "ok" and by_tx["t1"]["data"]["staff"] == "anna"
        assert by_tx["t2"]["status"] == "error" and "args.point" in by_tx["t2"]["error"]
        assert by_tx["t3"]["status"] == "error"
        assert by_tx[None]["status"] == "error" and "transaction" in by_tx[None]["error"]
        assert all(not r for _, _, r in ha.seen(lambda m: "/ha/response/" in m[0]))
    finally:
        box.stop()
    end = time.monotonic() + 5
    while time.monotonic() < end and not ha.seen(lambda m: m[0] == "ca/v1/box-1/status" and b"offline" in m[1]):
        time.sleep(0.05)
    assert ha.seen(lambda m: m[0] == "ca/v1/box-1/status" and b"offline" in m[1])   # unavailable in HA
    ha.close()
