"""The operator's side of remote configuration and commands (``fleetctl config push|get``,
``fleetctl cmd``): one short MQTT session with the operator identity."""
from __future__ import annotations

import threading
import time

from appliance.cloud.mqtt import BrokerSettings, make_client
from appliance.cloud.mqtt import start as mqtt_start
from appliance.cloud.wire import (CMD, CONFIG_DESIRED, CONFIG_REPORTED, RESULT, Command, CommandResult, DesiredConfig,
                                  ReportedConfig, WireError, decode_reported, decode_result, encode, topic)
from appliance.ids import uuid7


class OperatorError(Exception):
    pass


class UpdateBundle:
    """A signed release bundle as the ``update`` command announces it."""

    def __init__(self, path, url: str = "", chunk_size: int = 256 * 1024):
        import hashlib
        from pathlib import Path

        from provisioning.update import read_manifest
        self.path = Path(path)
        self.url = url
        self.chunk_size = chunk_size
        self.version = read_manifest(self.path)["version"]
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        self.sha256 = h.hexdigest()
        self.size = self.path.stat().st_size
        self.chunks = max(1, -(-self.size // chunk_size))

    def args(self) -> dict:
        a = {"version": self.version, "sha256": self.sha256, "size": self.size}
        return {**a, "url": self.url} if self.url else {**a, "chunks": self.chunks, "chunk_size": self.chunk_size}


class Operator:
    """A connected operator session (use as a context manager)."""

    def __init__(self, settings: BrokerSettings, prefix: str = "ca/v1", timeout_s: float = 10.0):
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.settings = settings
        self.client, self.host, self.port = make_client(settings, f"operator-{uuid7()[-12:]}")
        self.connected = threading.Event()
        self.refused = ""
        self.lock = threading.Lock()
        self.messages: dict[str, list[bytes]] = {}
        self.waiters: dict[str, threading.Event] = {}
        self.subs: dict[int, threading.Event] = {}
        self.acked_mids: set[int] = set()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        if rc.is_failure:
            self.refused = str(rc)
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, rcs, props) -> None:
        with self.lock:
            self.acked_mids.add(mid)
            ev = self.subs.pop(mid, None)
        if ev:
            ev.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.setdefault(msg.topic, []).append(msg.payload)
            ev = self.waiters.get(msg.topic)
        if ev:
            ev.set()

    def __enter__(self) -> "Operator":
        mqtt_start(self.client, self.host, self.port, self.settings)
        if not self.connected.wait(self.timeout_s) or self.refused:
            self.close()
            raise OperatorError(f"cannot connect to the broker at {self.host}:{self.port}"
                                + (f": {self.refused}" if self.refused else f" within {self.timeout_s:.0f} s"))
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _subscribe(self, name: str) -> threading.Event:
        """Subscribe once per topic (retained messages come with the first subscription)."""
        with self.lock:
            arrived = self.waiters.get(name)
            if arrived is not None:
                return arrived
            arrived = self.waiters[name] = threading.Event()
            done = threading.Event()
            rc, mid = self.client.subscribe(name, qos=1)    # the SUBACK waits for this lock
            if mid in self.acked_mids:
                done.set()
            self.subs[mid] = done
        if not done.wait(self.timeout_s):
            raise OperatorError(f"the broker did not confirm the subscription to {name}")
        return arrived

    def _wait(self, name: str, arrived: threading.Event, timeout_s: float, accept) -> bytes | None:
        end = time.monotonic() + timeout_s
        while True:
            with self.lock:
                for p in self.messages.get(name, []):
                    if accept(p):
                        return p
                arrived.clear()
            left = end - time.monotonic()
            if left <= 0:
                return None
            arrived.wait(left)

    # --- configuration --------------------------------------------------------------------

    def reported(self, device: str, timeout_s: float = 3.0, accept=lambda r: True) -> ReportedConfig | None:
        name = topic(self.prefix, device, CONFIG_REPORTED)
        arrived = self._subscribe(name)

        def ok(p: bytes) -> bool:
            try:
                return accept(decode_reported(p))
            except WireError:
                return False
        p = self._wait(name, arrived, timeout_s, ok)
        return decode_reported(p) if p is not None else None

    def desired_version(self, device: str, timeout_s: float = 2.0) -> int:
        from appliance.cloud.wire import decode_desired
        name = topic(self.prefix, device, CONFIG_DESIRED)
        arrived = self._subscribe(name)
        p = self._wait(name, arrived, timeout_s, lambda p: True)
        try:
            return decode_desired(p).version if p else 0
        except WireError:
            return 0

    def push_config(self, device: str, toml_text: str, version: int | None = None) -> int:
        """Retained ``config/desired``; the version is one more than the current one unless
        given. Returns the version pushed."""
        if version is None:
            version = self.desired_version(device) + 1
        info = self.client.publish(topic(self.prefix, device, CONFIG_DESIRED),
                                   encode(DesiredConfig(version=version, toml=toml_text)), qos=1, retain=True)
        info.wait_for_publish(self.timeout_s)
        return version

    # --- commands -------------------------------------------------------------------------

    def command(self, device: str, action: str, args: dict | None = None, cmd_id: str | None = None,
                expires_in_s: float = 600.0, wait_s: float = 30.0) -> CommandResult | None:
        """Send a command and wait for its result (None: none within ``wait_s``)."""
        cmd_id = self.send_command(device, action, args, cmd_id, expires_in_s)
        return self.result(device, cmd_id, wait_s)

    def send_command(self, device: str, action: str, args: dict | None = None, cmd_id: str | None = None,
                     expires_in_s: float = 600.0) -> str:
        """Publish a command (subscribed to its result first); returns its id."""
        cmd_id = cmd_id or uuid7()
        self._subscribe(topic(self.prefix, device, f"{CMD}/{cmd_id}/{RESULT}"))
        cmd = Command(id=cmd_id, action=action, args=args or {},
                      expires=int((time.time() + expires_in_s) * 1000) if expires_in_s else 0)
        self.client.publish(topic(self.prefix, device, f"{CMD}/{cmd_id}"), encode(cmd), qos=1).wait_for_publish(
            self.timeout_s)
        return cmd_id

    def result(self, device: str, cmd_id: str, wait_s: float) -> CommandResult | None:
        """A sent command's result (None: none within ``wait_s``)."""
        name = topic(self.prefix, device, f"{CMD}/{cmd_id}/{RESULT}")
        arrived = self._subscribe(name)
        p = self._wait(name, arrived, wait_s, lambda p: True)
        if p is None:
            return None
        with self.lock:
            self.messages.pop(name, None)
            self.waiters.pop(name, None)
        self.client.unsubscribe(name)
        return decode_result(p)

    def send_update(self, device: str, bundle: "UpdateBundle", cmd_id: str | None = None,
                    expires_in_s: float = 86400.0, progress=None) -> str:
        """The ``update`` command, then (without a URL) the bundle in chunks on
        ``update/<sha256>/<n>``; returns the command's id."""
        cmd_id = self.send_command(device, "update", bundle.args(), cmd_id, expires_in_s)
        if bundle.url:
            return cmd_id
        pending = []
        with open(bundle.path, "rb") as f:
            for n in range(bundle.chunks):
                data = f.read(bundle.chunk_size)
                pending.append(self.client.publish(topic(self.prefix, device, f"update/{bundle.sha256}/{n}"), data,
                                                   qos=1))
                while len(pending) > 8:                 # a window: paho keeps every payload until PUBACK
                    pending.pop(0).wait_for_publish(max(self.timeout_s, 60.0))
                if progress:
                    progress(device, n + 1, bundle.chunks)
        for info in pending:
            info.wait_for_publish(max(self.timeout_s, 60.0))
        return cmd_id

    def send_raw(self, device: str, suffix: str, payload: bytes) -> None:
        self.client.publish(topic(self.prefix, device, suffix), payload, qos=1).wait_for_publish(self.timeout_s)
