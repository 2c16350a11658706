"""An MQTT connection as both ends use it: paho-mqtt 2.x, MQTT 5 (3.1.1 on request),
``mqtt://`` or ``mqtts://`` (TLS with server verification; a client certificate for mutual
TLS), username/password as an alternative, a last will, reconnects with jittered
exponential backoff (paho's own loop)."""
from __future__ import annotations

import logging
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to connect. Frozen: paho's network thread reads it while it runs; a
    change (the fallback to 3.1.1) makes a new one for a new client."""
    url: str
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    username: str = ""
    password: str = ""
    protocol: str = "5"             # "5" or "3.1.1"
    keepalive_s: int = 30

    @classmethod
    def from_config(cls, s) -> "BrokerSettings":
        """From the ``[sync]`` section; ``auto`` starts with MQTT 5."""
        return cls(url=s.broker, ca_file=s.ca_file, cert_file=s.cert_file, key_file=s.key_file,
                   username=s.username, password=s.password, protocol="3.1.1" if s.protocol == "3.1.1" else "5")

    def __repr__(self) -> str:      # never a password in a log line
        return (f"BrokerSettings(url={self.url!r}, protocol={self.protocol!r}, username={self.username!r}, "
                f"password={'***' if self.password else ''!r})")


def make_client(s: BrokerSettings, client_id: str,
                will: tuple[str, bytes] | None = None) -> tuple[mqtt.Client, str, int]:
    """A configured, not yet connected client, and the host and port to connect to."""
    u = urlparse(s.url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ValueError(f"broker URL must be mqtt://host:port or mqtts://host:port, got {s.url!r}")
    proto = mqtt.MQTTv5 if s.protocol == "5" else mqtt.MQTTv311
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto,
                    **({} if proto == mqtt.MQTTv5 else {"clean_session": False}))
    if u.scheme == "mqtts":
        ctx = ssl.create_default_context(cafile=s.ca_file or None)      # verifies the server
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if s.cert_file:
            ctx.load_cert_chain(s.cert_file, s.key_file or None)
        c.tls_set_context(ctx)
    if s.username:
        c.username_pw_set(s.username, s.password or None)
    if will:
        c.will_set(will[0], will[1], qos=1, retain=True)
    c.reconnect_delay_set(min_delay=1, max_delay=60)
    c.max_inflight_messages_set(20)
    port = u.port or (8883 if u.scheme == "mqtts" else 1883)
    return c, u.hostname, port


def start(client: mqtt.Client, host: str, port: int, s: BrokerSettings) -> None:
    """Connect in the background and keep reconnecting; the session persists (MQTT 5:
    session expiry; 3.1.1: clean_session off)."""
    if s.protocol == "5":
        client.connect_async(host, port, keepalive=s.keepalive_s, clean_start=False, properties=connect_properties())
    else:
        client.connect_async(host, port, keepalive=s.keepalive_s)
    client.loop_start()


def network_alive(client: mqtt.Client) -> bool:
    """paho's network thread (``loop_start``) is running: without it nothing is sent or received."""
    thread = getattr(client, "_thread", None)
    return thread is not None and thread.is_alive()


def no_delay(sock) -> None:
    """TCP_NODELAY: an ack or a small batch goes out at once, not after Nagle's wait for the
    previous segment's ACK (tens of milliseconds on every small message)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):       # not a TCP socket (a test's stand-in): nothing to tune
        pass


def refused_for_protocol(reason_code) -> bool:
    """The broker does not speak the MQTT version we asked for (CONNACK 1 / reason 132)."""
    return getattr(reason_code, "value", reason_code) in (1, 132)


HANDSHAKE_S = 5.0
"""How long a CONNACK may take once the connection is open before ``auto`` tries the other
protocol (some 3.1.1-only brokers answer an MQTT 5 CONNECT with nothing at all)."""


class Handshake:
    """Whether a broker speaks the protocol asked for, in every way one can say no: a CONNACK
    refusing the version, the connection closed before any CONNACK, or no CONNACK within
    ``HANDSHAKE_S`` of the socket opening. A broker that is down (no socket) says nothing
    about protocols and never triggers a switch. Callbacks come on paho's thread; ``failed``
    is read on the owner's."""

    def __init__(self, timeout_s: float | None = None):
        self.timeout_s = HANDSHAKE_S if timeout_s is None else timeout_s
        self.opened_at: float | None = None     # socket open, CONNACK not yet seen
        self.refused = False

    def attach(self, client: mqtt.Client) -> None:
        client.on_socket_open = self._opened

    def _opened(self, client, userdata, sock) -> None:
        self.opened_at = time.monotonic()
        no_delay(sock)

    def connack(self, reason_code) -> None:
        self.opened_at = None
        if reason_code.is_failure and refused_for_protocol(reason_code):
            self.refused = True

    def closed(self) -> None:
        """on_disconnect: closed before a CONNACK came means this protocol was not spoken."""
        if self.opened_at is not None:
            self.opened_at = None
            self.refused = True

    def failed(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.refused or (self.opened_at is not None and now - self.opened_at > self.timeout_s)


def other_protocol(protocol: str) -> str:
    return "3.1.1" if protocol == "5" else "5"


def connect_properties(session_expiry_s: int = 7 * 86400):
    """MQTT 5: keep the session (and queued QoS 1 messages) across disconnects."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = session_expiry_s
    return p
