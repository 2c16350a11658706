"""A real Mosquitto per test, and the loop that drives a sync stage until a condition holds."""
from __future__ import annotations

import time

import pytest

from tests.mqtt_broker import Mosquitto


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def run_until(pred, stage, limit: float = 60) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        stage.step()
        if pred():
            return True
        time.sleep(0.01)
    return False
