"""Home Assistant, for the small shop (``[home_assistant] enabled = true``; off by default):
MQTT discovery of one device on the ``[sync]`` broker (Home Assistant's own, in a shop without
a fleet).

* each remote is an ``event`` entity: every press is an event on
  ``<prefix>/<id>/ha/event/<remote>`` (never retained: a press happens once);
* today's CSI, CDI, contacts and response rate are ``sensor`` entities, from
  ``<prefix>/<id>/ha/state`` (retained, refreshed every ``interval_s``);
* availability is the box's retained ``status`` (its last will says offline);
* the discovery documents are retained and published again when Home Assistant says
  ``online`` on ``<discovery_prefix>/status`` (it restarted);
* commands, Zigbee2MQTT style: ``<prefix>/<id>/ha/request/<action>`` with
  ``{"transaction": "...", ...args}``, answered on ``<prefix>/<id>/ha/response/<action>`` with
  the transaction echoed and ``status`` ok or error (run like fleet commands: journalled,
  once per transaction id).
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from appliance import __version__
from appliance import vocabulary as v
from appliance.cloud.sync import Extension, SyncStage
from appliance.cloud.wire import STATUS, Command, WireError, safe_name
from appliance.config.schema import Config
from appliance.journal import Journal

from .commands import Commands

log = logging.getLogger(__name__)

PRESS_TYPES = (v.RATING, v.CALL, v.ANSWER, v.STAFF)
SENSORS = (("csi", "Customer Support Index", "%"), ("cdi", "Customer Dissatisfaction Index", "%"),
           ("contacts", "Contacts today", None), ("response_rate", "Response rate", "%"))
REQUEST = "ha/request/"
_TRANSACTION = re.compile(r"^[A-Za-z0-9_.:-]{1,48}\Z")


class HomeAssistant(Extension):
    def __init__(self, cfg: Config, journal: Journal, device: str, commands: Commands):
        self.cfg = cfg
        self.ha = cfg.home_assistant
        self.journal = journal
        self.device = device
        self.commands = commands
        self.topics = (f"{REQUEST}+",)
        self.cursor = journal.last_seq()            # presses from now on (never history)
        self.lock = threading.Lock()
        self.announce = True
        self.requests: list[tuple[str, bytes]] = []
        self.state_at = -1e18
        self.announced = 0
        self.events = 0

    # --- topics ---------------------------------------------------------------------------

    def _root(self, stage: SyncStage) -> str:
        return f"{stage.prefix}/{self.device}"

    def discovery(self, stage: SyncStage) -> list[tuple[str, dict]]:
        """(topic, document) of every entity."""
        root, dp = self._root(stage), self.ha.discovery_prefix
        dev = {"identifiers": [f"contact-analyzer-{self.device}"], "name": f"Contact Analyzer {self.device}",
               "manufacturer": "Contact Analyzer", "model": "service-quality box", "sw_version": __version__}
        avail = {"availability_topic": f"{root}/{STATUS}", "availability_template": "{{ value_json.state }}",
                 "payload_available": "online", "payload_not_available": "offline"}
        out = []
        for rid, remote in self.cfg.remotes.items():
            uid = f"{self.device}_remote_{rid}"
            out.append((f"{dp}/event/{self.device}/remote_{rid}/config", {
                "name": remote.name or f"Remote {rid}", "unique_id": uid, "object_id": uid,
                "state_topic": f"{root}/ha/event/{rid}", "event_types": ["rating", "call", "answer", "staff"],
                "device": dev, **avail}))
        for key, name, unit in SENSORS:
            uid = f"{self.device}_{key}"
            doc = {"name": name, "unique_id": uid, "object_id": uid, "state_topic": f"{root}/ha/state",
                   "value_template": f"{{{{ value_json.{key} }}}}", "state_class": "measurement", "device": dev,
                   **avail}
            if unit:
                doc["unit_of_measurement"] = unit
            out.append((f"{dp}/sensor/{self.device}/{key}/config", doc))
        return out

    # --- paho's thread ------------------------------------------------------------------------

    def on_connected(self, stage: SyncStage) -> None:
        stage.client.subscribe(f"{self.ha.discovery_prefix}/status", qos=1)
        with self.lock:
            self.announce = True

    def on_message(self, stage: SyncStage, suffix: str, payload: bytes) -> None:
        if suffix.startswith(REQUEST):
            with self.lock:
                if len(self.requests) < 100:
                    self.requests.append((suffix[len(REQUEST):], payload))

    def on_foreign(self, topic: str, payload: bytes) -> None:
        """A message outside the device root: Home Assistant's birth message."""
        if topic == f"{self.ha.discovery_prefix}/status" and payload.strip() == b"online":
            with self.lock:
                self.announce = True

    # --- the stage's thread ---------------------------------------------------------------

    def step(self, stage: SyncStage) -> None:
        if not stage.connected.is_set():
            return
        with self.lock:
            announce, self.announce = self.announce, False
            requests, self.requests = self.requests, []
        if announce:
            for t, doc in self.discovery(stage):
                stage.client.publish(t, json.dumps(doc).encode(), qos=1, retain=True)
            self.announced += 1
            self.state_at = -1e18
        self._presses(stage)
        now = time.monotonic()
        if now - self.state_at >= self.ha.interval_s:
            self.state_at = now
            stage.publish("ha/state", json.dumps(self.today()).encode(), retain=True)
        for action, payload in requests:
            self._request(stage, action, payload)

    def _presses(self, stage: SyncStage) -> None:
        for ev in self.journal.read(self.cursor, 500, PRESS_TYPES):
            rid = str(ev.data.get("remote") or "").lower()
            if rid in self.cfg.remotes:
                attrs = {"event_type": ev.type, "point": ev.point, "button": ev.data.get("button"),
                         "time": ev.ts}
                for k in ("value", "class", "press", "staff"):
                    if k in ev.data:
                        attrs[k] = ev.data[k]
                stage.publish(f"ha/event/{rid}", json.dumps(attrs).encode(), retain=False)
                self.events += 1
        last = self.journal.last_seq()
        self.cursor = last

    def today(self) -> dict:
        from appliance.records import report
        tz = ZoneInfo(self.cfg.time.timezone)
        start = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        total = report(self.journal.db, "day", self.cfg.time.timezone, int(start.timestamp() * 1000), None)["total"]
        m = total.result()

        def pct(x):
            return None if x is None else round(100 * x, 1)
        return {"csi": pct(m["csi"]), "cdi": pct(m["cdi"]), "contacts": m["contacts"],
                "response_rate": pct(m["response_rate"]), "day": start.date().isoformat()}

    def _request(self, stage: SyncStage, action: str, payload: bytes) -> None:
        reply = f"ha/response/{action}" if safe_name(action) else "ha/response/unknown"
        try:
            doc = json.loads(payload)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            transaction = doc.pop("transaction", None)
            if not isinstance(transaction, str) or not _TRANSACTION.match(transaction):
                raise ValueError("transaction: a string of letters, digits and _.:- (1–48)")
        except (ValueError, RecursionError) as exc:
            stage.publish(reply, json.dumps({"status": "error", "error": str(exc)[:300]}).encode())
            return
        cmd_id = f"ha-{transaction}".replace(":", "-")
        try:
            cmd = Command(id=cmd_id, action=action, args=doc)
            from appliance.cloud.wire import encode
            self.commands.reply[cmd_id] = lambda r, t=transaction, rt=reply: (rt, json.dumps(
                {"transaction": t, "status": "ok" if r.status == "ok" else "error", "data": r.result,
                 **({"error": r.error} if r.error else {})}).encode())
            self.commands.receive(cmd_id, encode(cmd))
        except (WireError, TypeError, ValueError) as exc:
            stage.publish(reply, json.dumps({"transaction": transaction, "status": "error",
                                             "error": str(exc)[:300]}).encode())
