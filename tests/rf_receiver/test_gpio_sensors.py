"""GPIO presence sensors through gpiozero's MockFactory, from pin levels to journal events to
contacts (the core's own pipeline, ARCHITECTURE §4): a PIR that retriggers, a mmWave OUT pin
with dropouts, a break beam wired active-low, an ultrasonic sensor with noisy distances, a
sensor that cannot be opened. The clock is the real one, scaled down: presence needs
0.3 s, a contact 0.5 s, leaving 0.6 s."""
from __future__ import annotations

import time

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockTriggerPin

from appliance import vocabulary as v
from appliance.clock import Clock
from appliance.config import parse_config
from appliance.journal import Journal
from appliance.pipeline import InputEvent, run
from rf_receiver.sensors import GpioSensors

POINT = ('[points.till1]\nmin_presence_s = 0.3\nleave_after_s = 0.6\nmin_contact_s = 0.5\n'
         '[points.till2]\nmin_presence_s = 0.3\nleave_after_s = 0.6\nmin_contact_s = 0.5\n')


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()
    Device.pin_factory = None


@pytest.fixture(autouse=True)
def synced(monkeypatch):
    monkeypatch.setenv("APPLIANCE_ASSUME_SYNCED", "1")     # status's problems: the sensors' only


def config(tmp_path, sensors: str):
    return parse_config(f'[device]\nid = "box"\nstate_dir = "{tmp_path / "state"}"\n[rf]\nsource = "none"\n'
                        + POINT + sensors)


def journal_and_contacts(cfg, sensors: GpioSensors) -> tuple[list, list]:
    """What the rf daemon's loop does (drain into the journal), then the core's pipeline."""
    with Journal.in_dir(cfg.device.state_dir) as j:
        j.append_many(sensors.drain())
        evs = list(j.iter_all([v.SENSOR]))
    inputs = [InputEvent.from_journal(e) for e in evs]
    out = run(cfg, inputs, until=(evs[-1].ts + 10_000) if evs else None)
    return evs, [r for k, r in out if k == "contact"]


def hold(seconds: float) -> None:
    time.sleep(seconds)


def test_a_pir_that_retriggers_makes_one_contact_per_customer(tmp_path, factory):
    cfg = config(tmp_path, '[sensors.pir]\npoint = "till1"\nkind = "motion"\npin = 17\n')
    s = GpioSensors(cfg, Clock(), factory)
    pin = factory.pin(17)
    for _ in range(2):                       # two customers
        pin.drive_high()
        hold(0.5)
        pin.drive_low()                      # the PIR's output drops for a moment ...
        hold(0.2)
        pin.drive_high()                     # ... and retriggers: the same customer
        hold(0.6)
        pin.drive_low()
        hold(1.0)                            # gone
    evs, contacts = journal_and_contacts(cfg, s)
    s.close()
    assert [e.data["present"] for e in evs] == [False, True, False, True, False, True, False, True, False]
    assert all(e.point == "till1" and e.source == "gpio" and e.data["sensor"] == "pir" for e in evs)
    assert len(contacts) == 2
    assert all(1.1 <= c.duration_ms / 1000 <= 2.3 for c in contacts), [c.duration_ms / 1000 for c in contacts]


def test_a_mmwave_pin_with_dropouts_and_a_blip_too_short_to_count(tmp_path, factory):
    cfg = config(tmp_path, '[sensors.radar]\npoint = "till1"\nkind = "digital"\npin = 22\n')
    s = GpioSensors(cfg, Clock(), factory)
    pin = factory.pin(22)
    pin.drive_high()
    for _ in range(5):                       # a customer, the radar dropping out for 50 ms now and then
        hold(0.3)
        pin.drive_low()
        hold(0.05)
        pin.drive_high()
    hold(0.3)
    pin.drive_low()
    hold(1.0)
    pin.drive_high()                         # a passer-by: 0.1 s, below min_presence_s
    hold(0.1)
    pin.drive_low()
    hold(0.2)
    evs, contacts = journal_and_contacts(cfg, s)
    s.close()
    assert len(evs) == 1 + 1 + 2 * 5 + 1 + 2  # every change journalled with its own time
    assert len(contacts) == 1 and contacts[0].duration_ms / 1000 >= 1.7


def test_a_break_beam_wired_active_low(tmp_path, factory):
    cfg = config(tmp_path, '[sensors.beam]\npoint = "till2"\nkind = "digital"\npin = 5\nactive_high = false\n')
    s = GpioSensors(cfg, Clock(), factory)
    pin = factory.pin(5)
    assert pin.state is True                 # pulled up: nobody there
    pin.drive_low()                          # the beam is broken
    hold(1.0)
    pin.drive_high()
    hold(0.9)
    evs, contacts = journal_and_contacts(cfg, s)
    s.close()
    assert [e.data["present"] for e in evs] == [False, True, False]
    assert len(contacts) == 1 and contacts[0].point == "till2"


def test_an_ultrasonic_sensor_with_noisy_distances(tmp_path, factory):
    cfg = config(tmp_path, '[sensors.sonar]\npoint = "till1"\nkind = "distance"\npin = 23\necho_pin = 24\n'
                           'threshold_m = 1.0\n')
    trigger = factory.pin(23, pin_class=MockTriggerPin, echo_pin=factory.pin(24), echo_time=0.02)   # 3.4 m
    s = GpioSensors(cfg, Clock(), factory)
    hold(0.8)
    import random
    rng = random.Random(4)
    end = time.monotonic() + 2.0
    while time.monotonic() < end:            # a customer at ~0.5 m, readings noisy, now and then a wild one
        trigger.echo_time = 0.003 * (1 + rng.uniform(-0.2, 0.2)) if rng.random() > 0.1 else 0.02
        hold(0.05)
    trigger.echo_time = 0.02                 # gone
    hold(2.0)
    evs, contacts = journal_and_contacts(cfg, s)
    s.close()
    assert len(contacts) == 1, [(e.ts, e.data) for e in evs]
    assert 1.2 <= contacts[0].duration_ms / 1000 <= 3.5


def test_a_sensor_that_cannot_be_opened_fails_alone(tmp_path, factory):
    cfg = config(tmp_path, '[sensors.good]\npoint = "till1"\npin = 6\n'
                           '[sensors.bad]\npoint = "till2"\npin = 27\n')
    from gpiozero import LED
    led = LED(27, pin_factory=factory)       # the pin is in use as an output elsewhere
    s = GpioSensors(cfg, Clock(), factory)
    st = s.status()
    assert "error" in st["bad"] and st["good"] == {"present": False, "changes": 1}
    led.close()
    s.close()


def test_status_and_health_show_each_sensor(tmp_path, factory, capsys):
    from appliance.cli.main import main as appliancectl
    text = ('[device]\nid = "box"\nstate_dir = "' + str(tmp_path / "state") + '"\n[rf]\nsource = "none"\n' + POINT
            + '[sensors.pir]\npoint = "till1"\nkind = "motion"\npin = 17\n'
            + '[sensors.beam]\npoint = "till2"\npin = 5\n')
    (tmp_path / "box.toml").write_text(text)
    cfg = parse_config(text)
    s = GpioSensors(cfg, Clock(), factory, names=["pir"])             # the beam never reports
    factory.pin(17).drive_high()
    hold(0.2)
    with Journal.in_dir(cfg.device.state_dir) as j:
        j.append_many(s.drain())
    s.close()
    assert appliancectl(["--config", str(tmp_path / "box.toml"), "status", "--json"]) == 0
    st = __import__("json").loads(capsys.readouterr().out)["sensors"]
    assert st["pir"]["present"] is True and st["pir"]["last_change"] and st["pir"]["point"] == "till1"
    assert st["pir"]["verdict"] == "ok"
    assert st["beam"] == {"point": "till2", "kind": "digital", "present": None, "last_change": None,
                          "verdict": "never heard", "quiet_s": None, "error": None}
    assert appliancectl(["--config", str(tmp_path / "box.toml"), "status"]) == 0
    out = capsys.readouterr().out
    assert "sensor pir (motion, till1): ok, present since" in out
    assert "sensor beam (digital, till2): never heard, never heard" in out


class PastClock(Clock):
    """The real clock, ``hours`` ago: what a sensor said then is that old when status reads it."""

    def __init__(self, hours: float):
        super().__init__()
        self.shift = round(hours * 3600_000)

    def now(self):
        st = super().now()
        return type(st)(st.ts - self.shift, st.mono, st.boot, st.synced)

    def now_ms(self) -> int:
        return super().now_ms() - self.shift


def sensor_status(tmp_path, capsys, text: str) -> tuple[dict, list[str]]:
    from appliance.cli.main import main as appliancectl
    (tmp_path / "box.toml").write_text(text)
    assert appliancectl(["--config", str(tmp_path / "box.toml"), "status", "--json"]) == 0
    st = __import__("json").loads(capsys.readouterr().out)
    return st["sensors"], st["problems"]


def test_a_dead_pir_makes_its_contacts_then_status_calls_it_silent(tmp_path, factory, capsys):
    """One customer, then the PIR's cable comes off (no edge ever again): one contact, and five
    hours later status and the health topic say the sensor is silent and what to do."""
    text = ('[device]\nid = "box"\nstate_dir = "' + str(tmp_path / "state") + '"\n[rf]\nsource = "none"\n' + POINT
            + '[sensors.pir]\npoint = "till1"\nkind = "motion"\npin = 17\n')
    cfg = parse_config(text)
    s = GpioSensors(cfg, PastClock(5), factory)
    pin = factory.pin(17)
    pin.drive_high()
    hold(0.8)
    pin.drive_low()
    hold(0.7)
    evs, contacts = journal_and_contacts(cfg, s)
    s.close()
    assert len(contacts) == 1
    sensors, problems = sensor_status(tmp_path, capsys, text)
    assert sensors["pir"]["verdict"] == "silent" and 4.9 * 3600 < sensors["pir"]["quiet_s"] < 5.1 * 3600
    assert problems == ["sensor pir has not changed for 5.0 h: check it with appliancectl sensor watch"]
    from appliance import health
    with Journal.in_dir(cfg.device.state_dir) as j:
        assert health.report(cfg, j, "box")["sensors"]["pir"]["verdict"] == "silent"


def test_a_sensor_stuck_on_presence_makes_one_truncated_contact_and_is_called_stuck(tmp_path, factory, capsys):
    text = ('[device]\nid = "box"\nstate_dir = "' + str(tmp_path / "state") + '"\n[rf]\nsource = "none"\n'
            + POINT.replace("min_contact_s = 0.5\n", "min_contact_s = 0.5\nmax_contact_s = 1.0\n", 1)
            + '[sensors.radar]\npoint = "till1"\npin = 22\nsilent_after_s = 3600\n')
    cfg = parse_config(text)
    s = GpioSensors(cfg, PastClock(2), factory)
    factory.pin(22).drive_high()                         # and it never drops again
    hold(0.3)
    evs, contacts = journal_and_contacts(cfg, s)
    s.close()
    assert [c.truncated for c in contacts] == [True] and contacts[0].duration_ms == 1000
    sensors, problems = sensor_status(tmp_path, capsys, text)
    assert sensors["radar"]["verdict"] == "stuck" and sensors["radar"]["present"] is True
    assert problems == ["sensor radar reports presence for 2.0 h: check it with appliancectl sensor watch"]


def test_a_sensor_that_cannot_be_opened_is_an_error_in_status(tmp_path, factory, capsys):
    text = ('[device]\nid = "box"\nstate_dir = "' + str(tmp_path / "state") + '"\n[rf]\nsource = "none"\n' + POINT
            + '[sensors.beam]\npoint = "till2"\npin = 27\n')
    cfg = parse_config(text)
    from gpiozero import LED
    led = LED(27, pin_factory=factory)                   # the pin is in use as an output elsewhere
    s = GpioSensors(cfg, Clock(), factory)
    with Journal.in_dir(cfg.device.state_dir) as j:
        j.append_many(s.state_events(j, Clock().now_ms()))
    s.close()
    sensors, problems = sensor_status(tmp_path, capsys, text)
    assert sensors["beam"]["verdict"] == "error" and "GPIO" in sensors["beam"]["error"].upper()
    assert problems[0].startswith("sensor beam cannot be read (") and "[sensors.beam] pin" in problems[0]
    led.close()
    s = GpioSensors(cfg, Clock(), factory)               # the pin is free again: it works, status says so
    with Journal.in_dir(cfg.device.state_dir) as j:
        evs = s.state_events(j, Clock().now_ms())
        assert [e.data["state"] for e in evs] == ["ok"]
        j.append_many(evs + s.drain())
    s.close()
    sensors, problems = sensor_status(tmp_path, capsys, text)
    assert sensors["beam"]["verdict"] == "ok" and problems == []


def test_sensor_watch_shows_changes_distances_and_contacts(tmp_path, factory, capsys):
    import threading

    from appliance.cli.main import main as appliancectl
    from appliance.journal import NewEvent
    text = ('[device]\nid = "box"\nstate_dir = "' + str(tmp_path / "state") + '"\n[rf]\nsource = "none"\n' + POINT
            + '[sensors.sonar]\npoint = "till1"\nkind = "distance"\npin = 23\necho_pin = 24\nthreshold_m = 1.0\n')
    (tmp_path / "box.toml").write_text(text)
    cfg = parse_config(text)
    with Journal.in_dir(cfg.device.state_dir):
        pass
    trigger = factory.pin(23, pin_class=MockTriggerPin, echo_pin=factory.pin(24), echo_time=0.02)
    s = GpioSensors(cfg, Clock(), factory)

    def shop():
        hold(0.8)
        trigger.echo_time = 0.003                     # someone at ~0.5 m
        hold(1.5)
        with Journal.in_dir(cfg.device.state_dir) as j:
            j.append_many(s.drain())
            j.append(NewEvent("contact", int(time.time() * 1000), {"duration_s": 4.2}, "till1", "core"))
    t = threading.Thread(target=shop)
    t.start()
    rc = appliancectl(["--config", str(tmp_path / "box.toml"), "sensor", "watch", "--count", "2", "--timeout", "20"])
    t.join()
    s.close()
    out = capsys.readouterr().out
    assert rc == 0 and "sensor sonar: present at 0." in out and "contact of 4.2 s counted" in out
