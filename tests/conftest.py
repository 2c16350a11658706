"""Shared fixtures: configs, state folders, the CLI as users run it (a real process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.config import parse_config

ROOT = Path(__file__).resolve().parent.parent

BASE_CONFIG = """
[points.till1]
pos = true
rating_scale = { 1 = "negative", 2 = "negative", 3 = "neutral", 4 = "neutral", 5 = "top" }

[points.till2]

[remotes.a1b2c3]
point = "till2"
buttons = { 1 = { meaning = "rating", value = 1 }, 2 = { meaning = "rating", value = 2 }, 3 = { meaning = "call" }, 4 = { meaning = "staff", staff = "zoe" } }
"""


def make_config(tmp_path: Path, extra: str = "", base: str = BASE_CONFIG) -> Path:
    state = tmp_path / "state"
    text = f'[device]\nstate_dir = "{state}"\n' + base + extra
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return make_config(tmp_path)


@pytest.fixture
def cfg(config_path: Path):
    from appliance.config import load_config
    return load_config(config_path)


def write_events(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def run_cli(*args: str, env: dict | None = None, timeout: float = 120, input: str | None = None):
    """appliancectl in a real process, as a technician or systemd runs it."""
    full_env = dict(os.environ, NO_COLOR="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "appliance.cli.main", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=ROOT, input=input)


def config_text(text: str):
    return parse_config(text)


@pytest.fixture
def broker(tmp_path):
    """A real Mosquitto on loopback, one per test."""
    from tests.mqtt_broker import Mosquitto
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def spin(stage, steps: int, pause_s: float = 0.01) -> None:
    """Drive a sync stage for a while whatever happens (the link may be down)."""
    for _ in range(steps):
        stage.step()
        time.sleep(pause_s)


def run_until(pred, stage, limit: float = 60) -> bool:
    """Drive a sync stage until a condition holds (bounded)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        stage.step()
        if pred():
            return True
        time.sleep(0.01)
    return False


def clip_event(clip: str, data: bytes, ts: int, point: str | None = "till1", kind: str = "contact"):
    """The journal event the audio daemon writes for a clip file holding ``data``."""
    import hashlib

    from appliance import vocabulary as v
    from appliance.timefmt import iso_ms
    return v.Clip(clip=clip, kind=kind, file=f"{clip}.ogg", start=iso_ms(ts - 10_000), end=iso_ms(ts),
                  duration_s=10.0, format="opus", size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                  contact=clip if kind == "contact" else None).as_event(ts, point, "audio", f"audio:clip:{clip}")
