"""Sources behind one interface: gpiozero's MockFactory pin driven with exact edge
times, replay, rtl_433 as a subprocess over a recording, nRF24 payloads."""
from __future__ import annotations

import shutil
import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from rf_receiver.press import CONFIRMED, ENDED, PressDetector
from rf_receiver.pulses import to_ook
from rf_receiver.service import RfService
from rf_receiver.synthetic import press
from rf_receiver.sources.base import SourceError
from rf_receiver.sources.gpio import GpioSource
from rf_receiver.sources.nrf24 import frame_from_payload
from rf_receiver.sources.replay import ReplaySource
from tests.rf_receiver.conftest import load_corpus

CODE = 0x5A3C96


class EdgePin(MockPin):
    """A mock pin whose edges carry the times the test gives (the kernel's timestamps)."""

    def drive_at(self, state: bool, ticks: float) -> None:
        if self._state != state:
            self._state = state
            self._last_change = ticks
            if self._when_changed is not None:
                self._call_when_changed()


def collect(source, frames_expected=True, seconds=5.0):
    got = []
    svc = RfService(source, PressDetector(2, 1_500_000), lambda e, p, ref: got.append((e, p)))
    end = time.monotonic() + seconds
    while time.monotonic() < end and not any(e == ENDED for e, _ in got):
        svc.step(0.01)
        if source.exhausted():
            got += [(e, p) for e, p in svc.detector.finish()]
            break
    return got


def test_gpio_source_through_gpiozero_mock_factory():
    factory = MockFactory(pin_class=EdgePin)
    src = GpioSource(17, factory=factory)
    pin = factory.pin(17)
    train = press(CODE, 24, "rc-switch-1", 380, repeats=5, jitter=0.05, seed=3)
    t = time.monotonic() - 1.0          # edges as if they happened during the last second
    def drive():
        nonlocal t
        for lv, dur in train:
            pin.drive_at(bool(lv), t)
            t += dur / 1e6
        pin.drive_at(True, t)            # a noise edge after the silence
        pin.drive_at(False, t + 0.0001)
    thread = threading.Thread(target=drive)
    thread.start()
    thread.join()
    got = collect(src)
    src.close()
    assert [(e, p.code, p.protocol) for e, p in got] == [(CONFIRMED, CODE, "EV1527"), (ENDED, CODE, "EV1527")]
    assert got[0][1].frames >= 2 and abs(got[0][1].unit_us - 380) < 30


def test_gpio_callback_is_held_strongly():
    factory = MockFactory(pin_class=EdgePin)
    src = GpioSource(4, factory=factory)
    import gc
    gc.collect()
    factory.pin(4).drive_at(True, time.monotonic())
    assert len(src.edges) == 1
    src.close()


def test_gpio_without_a_pin_factory_says_so():
    with pytest.raises(SourceError):
        GpioSource(99, factory=MockFactory())


def test_replay_source_paced_in_real_time():
    train = press(CODE, 24, "rc-switch-1", 350, repeats=3, seed=1, lead_us=1000, tail_us=5000)
    total = sum(d for _, d in train)
    src = ReplaySource(train, realtime=True)
    t0 = time.monotonic()
    got = collect(src)
    assert [p.code for e, p in got if e == ENDED] == [CODE]
    assert time.monotonic() - t0 >= total / 1e6 * 0.9


@pytest.mark.skipif(shutil.which("rtl_433") is None, reason="rtl_433 is not installed (apt install rtl-433)")
def test_rtl_433_subprocess_source(tmp_path):
    from rf_receiver.sources.rtl433 import Rtl433Source
    rec = next(r for r in load_corpus() if r["id"] == "PT2262/01/gfile001.data")
    ook = tmp_path / "rec.ook"
    ook.write_text(to_ook([tuple(p) for p in rec["pulses"]]))
    src = Rtl433Source(["-r", str(ook), "-R", "30"])
    got = collect(src, seconds=20)
    src.close()
    ended = [p for e, p in got if e == ENDED]
    assert [(p.protocol, p.code, p.remote, p.button) for p in ended] == [("PT2262", (30037 << 8) | 85, "7555", 85)]
    assert ended[0].frames == 14


def test_rtl_433_missing_binary_is_a_clear_error():
    from rf_receiver.sources.rtl433 import Rtl433Source
    with pytest.raises(SourceError, match="not found"):
        Rtl433Source(binary="rtl_433-does-not-exist")


def test_nrf24_payloads():
    f = frame_from_payload(bytes([1]) + CODE.to_bytes(4, "big") + bytes([24]), 5)
    assert (f.protocol, f.code, f.remote, f.button) == ("EV1527", CODE, f"{CODE >> 4:05x}", CODE & 0xF)
    assert frame_from_payload(b"\x09\x00\x00\x00\x01\x18", 0) is None
    assert frame_from_payload(bytes([1]) + (1 << 30).to_bytes(4, "big") + bytes([24]), 0) is None


def test_nrf24_radio_tier():
    """Hardware tier: runs where pyrf24 and an SPI radio exist, says why it cannot elsewhere."""
    pytest.importorskip("pyrf24", reason="pyrf24 not installed (the nrf24 extra)")
    from rf_receiver.sources.nrf24 import Nrf24Source
    try:
        src = Nrf24Source()
    except SourceError as exc:
        pytest.skip(f"no nRF24L01+ here: {exc}")
    src.close()


def test_rtl_433_messages_are_labelled_by_our_decoders():
    from rf_receiver.sources.rtl433 import frame_from_message
    f = frame_from_message({"model": "Generic-Remote", "id": 30037, "cmd": 85}, 7)
    assert (f.protocol, f.remote, f.button, f.start_us) == ("PT2262", "7555", 85, 7)
    f = frame_from_message({"model": "Generic-Remote", "id": 0xB5C3, "cmd": 0xE1}, 0)    # has a "10" pair
    assert (f.protocol, f.remote, f.button) == ("EV1527", "b5c3e", 1)
    f = frame_from_message({"model": "Smoke-GS558", "code": "f16a89"}, 0)
    assert (f.protocol, f.code) == ("EV1527", int("100100010101011010001111", 2))
    assert frame_from_message({"model": "Nexus-TH", "id": 1}, 0) is None
