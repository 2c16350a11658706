"""GPIO presence sensors (``[sensors.*]``), read in ``appliance-rf``, the process that already
owns the GPIO chip (no fifth daemon on a 512 MB Pi): a PIR (``motion``: gpiozero
``MotionSensor``), a mmWave radar's OUT pin or a break beam (``digital``:
``DigitalInputDevice``), an HC-SR04 ultrasonic sensor (``distance``: ``DistanceSensor``, present
closer than ``threshold_m``).

gpiozero calls back on its own threads; a callback only notes the change with the time it was
seen (the clock's stamp: wall time, monotonic time, boot) in a queue. The daemon's loop drains
the queue into ``sensor`` journal events of the sensor's point (the journal connection belongs
to that loop), each with the time of its change, so the core's debounce (ARCHITECTURE §4:
``min_presence_s``, ``leave_after_s``) works on when things happened, not on when they were
written. Only changes are journalled, plus the level each sensor has at start-up."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from appliance import vocabulary as v
from appliance.config.schema import Config, Sensor
from appliance.journal import NewEvent

log = logging.getLogger(__name__)


class SensorError(Exception):
    """A sensor that cannot be opened (no such pin, no GPIO chip): the message says which."""


@dataclass(slots=True)
class Change:
    sensor: str
    point: str
    present: bool
    stamp: object                       # appliance.clock.Stamp when it was seen
    distance_m: float | None = None     # ultrasonic sensors: the smoothed distance then


def open_device(s: Sensor, factory=None):
    """The gpiozero device for one configured sensor (or the radar, which behaves as one)."""
    if s.kind == "ld2410":
        from .ld2410 import Ld2410
        return Ld2410(s.port, s.baud, s.threshold_m)
    from gpiozero import DigitalInputDevice, DistanceSensor, MotionSensor
    if s.kind == "distance":
        if s.echo_pin is None:
            raise SensorError("a distance sensor needs echo_pin")
        return DistanceSensor(echo=s.echo_pin, trigger=s.pin, threshold_distance=s.threshold_m,
                              max_distance=max(2 * s.threshold_m, 1.0), queue_len=5, partial=True,
                              pin_factory=factory)
    if s.kind == "motion":
        return MotionSensor(s.pin, pull_up=not s.active_high, queue_len=1, sample_rate=20, pin_factory=factory)
    return DigitalInputDevice(s.pin, pull_up=not s.active_high, pin_factory=factory)


class GpioSensors:
    """Every ``[sensors.*]`` of the config, opened on ``factory`` (gpiozero's default: lgpio on
    a Pi, ``MockFactory`` in tests)."""

    def __init__(self, cfg: Config, clock, factory=None, names: list[str] | None = None):
        self.clock = clock
        self.queue: deque[Change] = deque(maxlen=10_000)
        self.lock = threading.Lock()
        self.devices: dict[str, object] = {}
        self.errors: dict[str, str] = {}
        self.state: dict[str, bool | None] = {}
        self.changes: dict[str, int] = {}
        for sid, s in cfg.sensors.items():
            if names is not None and sid not in names:
                continue
            try:
                dev = open_device(s, factory)
            except Exception as exc:  # noqa: BLE001 - gpiozero raises many kinds; one bad sensor fails alone
                self.errors[sid] = f"{type(exc).__name__}: {exc}"
                log.error("sensors: %s (%s on GPIO%d) cannot be opened: %s", sid, s.kind, s.pin, exc)
                continue
            on, off = (lambda sid=sid, p=s.point: self._seen(sid, p, True),
                       lambda sid=sid, p=s.point: self._seen(sid, p, False))
            self.devices[sid] = dev
            self.changes[sid] = 0
            if s.kind == "distance":            # gpiozero: "active" is out of range; it says which first
                dev.when_in_range, dev.when_out_of_range = on, off
            else:
                dev.when_activated, dev.when_deactivated = on, off  # gpiozero keeps the callables
                self._seen(sid, s.point, bool(dev.is_active))       # the level at start-up

    def _seen(self, sid: str, point: str, present: bool) -> None:
        """gpiozero's thread: note the change and when it happened."""
        with self.lock:
            if self.state.get(sid) == present:
                return
            self.state[sid] = present
            self.changes[sid] = self.changes.get(sid, 0) + 1
            dev = self.devices.get(sid)
            distance = None
            if dev is not None and hasattr(dev, "distance"):
                try:
                    distance = round(float(dev.distance), 3)
                except Exception:  # noqa: BLE001 - a reading is extra information only
                    distance = None
            self.queue.append(Change(sid, point, present, self.clock.now(), distance))

    def drain(self) -> list[NewEvent]:
        """The daemon's loop: the changes seen since the last call, as journal events."""
        out = []
        with self.lock:
            while self.queue:
                c = self.queue.popleft()
                data = {"present": c.present, "sensor": c.sensor}
                if c.distance_m is not None:
                    data["distance_m"] = c.distance_m
                ev = NewEvent(v.SENSOR, c.stamp.ts, data, c.point, "gpio")
                ev.mono, ev.boot, ev.synced = c.stamp.mono, c.stamp.boot, c.stamp.synced
                out.append(ev)
        return out

    def state_events(self, journal, now) -> list[NewEvent]:
        """At start-up: a ``sensor_state`` error for each sensor that could not be opened, and
        ``ok`` for one that works again after an error was journalled (status shows both)."""
        out = []
        for sid, err in self.errors.items():
            out.append(v.SensorState(sensor=sid, state="error", error=err[:500]).as_event(now, None, "gpio"))
        for sid in self.devices:
            last = journal.latest_where(v.SENSOR_STATE, "sensor", sid)
            if last is not None and last.data.get("state") == "error":
                out.append(v.SensorState(sensor=sid, state="ok").as_event(now, None, "gpio"))
        return out

    def status(self) -> dict:
        return {sid: {"present": self.state.get(sid), "changes": self.changes.get(sid, 0)}
                for sid in self.devices} | {sid: {"error": err} for sid, err in self.errors.items()}

    def close(self) -> None:
        for dev in self.devices.values():
            try:
                dev.close()
            except Exception:  # noqa: BLE001 - closing at shutdown: nothing more to do
                log.debug("sensors: close failed", exc_info=True)


class MockPinScript(threading.Thread):
    """The demo's hands on gpiozero's mock pins: a JSON-lines script of ``{"at_s": seconds
    after start, "pin": N, "high": true|false}`` played in real time in this process (mock
    pins exist only in the process that opened them). Refuses to run on real pins."""

    def __init__(self, path: str, factory=None):
        super().__init__(name="sim-gpio", daemon=True)
        import json
        from gpiozero import Device
        from gpiozero.pins.mock import MockFactory
        self.factory = factory or Device.pin_factory
        if not isinstance(self.factory, MockFactory):
            raise SensorError("APPLIANCE_SIM_GPIO drives mock pins only (GPIOZERO_PIN_FACTORY=mock)")
        with open(path, encoding="utf-8") as f:
            self.steps = sorted((float(d["at_s"]), int(d["pin"]), bool(d["high"]))
                                for d in map(json.loads, filter(str.strip, f)))
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        for at, pin, high in self.steps:
            if self.stop.wait(max(0.0, self.t0 + at - time.monotonic())):
                return
            p = self.factory.pin(pin)
            p.drive_high() if high else p.drive_low()
