"""Real audio paths without a sound card: an ALSA PCM reading a file (pyalsaaudio and
arecord see a capture device), and a GStreamer RTSP server on loopback."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.mqtt_broker import free_port, wait_port

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"


def asoundrc(home: Path, infile: Path, name: str = "filemic") -> Path:
    """$XDG_CONFIG_HOME/alsa/asoundrc defining a capture PCM that reads infile (raw S16_LE)."""
    (home / "alsa").mkdir(parents=True, exist_ok=True)
    (home / "alsa" / "asoundrc").write_text(
        f'pcm.{name} {{\n type file\n slave.pcm {{ type null }}\n file "/dev/null"\n'
        f' infile "{infile}"\n format "raw"\n}}\n')
    return home


class RtspServer:
    def __init__(self, port: int):
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/mic"

    def start(self) -> "RtspServer":
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"RTSP server did not start: {line} {self.proc.stderr.read()}")
        wait_port(self.port, self.proc, "RTSP server")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def rtsp_server():
    """A camera on loopback; fails (never skips) when the GStreamer packages are missing."""
    server = RtspServer(free_port()).start()
    yield server
    server.stop()
