"""A real Mosquitto on loopback for tests (Debian package ``mosquitto``)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    """Until something listens on 127.0.0.1:port; fail early if proc died."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with status {proc.returncode}") from None
            time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on port {port}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_connect(settings) -> bool:
    """Whether the broker accepts a client with these settings (TLS handshake and CONNACK)."""
    import ssl

    from appliance.cloud.mqtt import make_client
    c, host, port = make_client(settings, f"probe-{time.monotonic_ns()}")
    got: dict = {}
    c.on_connect = lambda cl, u, f, rc, p: got.setdefault("rc", rc)
    c.on_disconnect = lambda cl, u, f, rc, p: got.setdefault("gone", rc)
    try:
        c.connect(host, port)
    except (ssl.SSLError, OSError):
        return False
    c.loop_start()
    end = time.monotonic() + 5
    while not got and time.monotonic() < end:
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()
    return "rc" in got and not got["rc"].is_failure


class Mosquitto:
    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = True, extra: str = ""):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistence = persistence
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Mosquitto":
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.dir / "mosquitto.conf"
        conf.write_text(f"user root\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        f"persistence {'true' if self.persistence else 'false'}\n"
                        f"persistence_location {self.dir}/\nautosave_interval 1\n"
                        f"max_queued_messages 100000\n{self.extra}")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "mosquitto.log", "ab"))
        try:
            wait_port(self.port, self.proc, "mosquitto")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {(self.dir / 'mosquitto.log').read_text()}") from None
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Amqtt:
    """amqtt (PyPI), a second, independent broker implementation: MQTT 3.1.1 only, no shared
    subscriptions. Runs as its own process on loopback."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Amqtt":
        import sys
        conf = self.dir / "amqtt.yaml"
        conf.write_text(f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{self.port}\n"
                        "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n")
        binary = Path(sys.executable).with_name("amqtt")
        self.proc = subprocess.Popen([str(binary), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "amqtt.log", "ab"))
        wait_port(self.port, self.proc, "amqtt", timeout=30)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
