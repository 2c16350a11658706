"""An nRF24L01+ on SPI through pyrf24 (2.4 GHz): for button boxes that send their
presses as nRF24 payloads ``[protocol id, code (4 bytes, big-endian), bits]``.

Imported only where pyrf24 is installed; without an SPI radio ``begin()`` fails and this
source says so (the hardware test tier skips without one).
"""
from __future__ import annotations

import time

from ..decoders.base import Frame
from ..decoders.registry import frame_from_code
from .base import RfSource, SourceError

PROTOCOLS = {1: "EV1527", 2: "PT2262"}


def frame_from_payload(payload: bytes, t_us: int) -> Frame | None:
    if len(payload) < 6 or payload[0] not in PROTOCOLS:
        return None
    code = int.from_bytes(payload[1:5], "big")
    bits = payload[5]
    if not 8 <= bits <= 32 or code >> bits:
        return None
    return frame_from_code(PROTOCOLS[payload[0]], code, bits, t_us)


class Nrf24Source(RfSource):
    name = "nrf24"

    def __init__(self, ce_pin: int = 25, csn: int = 0, address: bytes = b"CAbtn", channel: int = 76):
        try:
            from pyrf24 import RF24, RF24_PA_LOW
        except ImportError as exc:
            raise SourceError(f"pyrf24 is not installed ({exc}): pip install pyrf24") from None
        self.radio = RF24(ce_pin, csn)
        try:
            if not self.radio.begin():
                raise SourceError("nRF24L01+ not responding on SPI (check wiring and dtparam=spi=on)")
        except RuntimeError as exc:
            raise SourceError(f"no nRF24L01+ on SPI: {exc}") from None
        self.radio.setPALevel(RF24_PA_LOW)
        self.radio.channel = channel
        self.radio.payloadSize = 6
        self.radio.openReadingPipe(1, address)
        self.radio.startListening()
        self.t0 = time.monotonic()

    def read(self, timeout_s: float) -> list[Frame]:
        end = time.monotonic() + timeout_s
        out = []
        while True:
            has, _pipe = self.radio.available_pipe()
            if has:
                f = frame_from_payload(bytes(self.radio.read(self.radio.payloadSize)), self.now_us())
                if f is not None:
                    out.append(f)
                continue
            if out or time.monotonic() >= end:
                return out
            time.sleep(0.002)

    def now_us(self) -> int:
        return int((time.monotonic() - self.t0) * 1e6)

    def close(self) -> None:
        self.radio.powerDown()
