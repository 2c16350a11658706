"""An HLK-LD2410-class 24 GHz mmWave radar over UART (pyserial; 256000 baud 8N1 by default).

The radar reports about ten times a second, in data frames ``F4 F3 F2 F1 | length (2 bytes,
little-endian) | type (01 engineering, 02 basic) AA | target state, moving distance (cm, 2),
moving energy, stationary distance (cm, 2), stationary energy, detection distance (cm, 2)
[engineering data] | 55 00 | F8 F7 F6 F5``. :class:`FrameParser` is pure: bytes in, reports
out; it resynchronises on the next header after anything that is not a whole, well-formed
frame (line noise, a half frame at start-up, a command acknowledgement), and holds at most
one frame's worth of bytes. :class:`Ld2410` reads the port in its own thread and offers
gpiozero's callback interface (``when_activated``, ``when_deactivated``, ``is_active``,
``distance``), so the rf daemon's sensor code treats it as any presence sensor: present is a
target within ``threshold_m``."""
from __future__ import annotations

import logging
import struct
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

HEADER, FOOTER = b"\xf4\xf3\xf2\xf1", b"\xf8\xf7\xf6\xf5"
MAX_LEN = 64                            # an engineering frame is 35 bytes of data; anything longer is noise
NONE, MOVING, STATIONARY, BOTH = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Report:
    state: int                          # NONE, MOVING, STATIONARY, BOTH
    moving_cm: int
    moving_energy: int
    stationary_cm: int
    stationary_energy: int
    distance_cm: int                    # the detection distance

    @property
    def target(self) -> bool:
        return self.state != NONE


class FrameParser:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.bad = 0                    # bytes skipped while resynchronising

    def feed(self, data: bytes) -> list[Report]:
        self.buf += data
        out = []
        while True:
            i = self.buf.find(HEADER)
            if i < 0:
                keep = len(HEADER) - 1                     # a header may be split across reads
                self.bad += max(0, len(self.buf) - keep)
                del self.buf[:max(0, len(self.buf) - keep)]
                return out
            if i:
                self.bad += i
                del self.buf[:i]
            if len(self.buf) < 6:
                return out
            (n,) = struct.unpack_from("<H", self.buf, 4)
            if n < 13 or n > MAX_LEN:
                self._skip()
                continue
            end = 6 + n + 4
            if len(self.buf) < end:
                return out
            frame = bytes(self.buf[6:6 + n])
            if self.buf[6 + n:end] != FOOTER or frame[0] not in (1, 2) or frame[1] != 0xAA \
                    or frame[-2:] != b"\x55\x00" or frame[2] > BOTH:
                self._skip()
                continue
            state, mv, me, st, se, det = struct.unpack_from("<BHBHBH", frame, 2)
            out.append(Report(state, mv, me, st, se, det))
            del self.buf[:end]

    def _skip(self) -> None:
        """Not a frame after all: look for the next header past this one."""
        self.bad += 1
        del self.buf[:1]


class Ld2410:
    """The radar on a serial port, with gpiozero's input-device callbacks."""

    def __init__(self, port: str, baud: int = 256000, threshold_m: float = 1.0):
        import serial
        self.threshold_cm = threshold_m * 100
        self.when_activated = None
        self.when_deactivated = None
        self.is_active = False
        self.distance: float | None = None      # metres, while there is a target
        self.reports = 0
        self.parser = FrameParser()
        self.serial = serial.Serial(port, baud, timeout=0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, name=f"ld2410 {port}", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        import serial
        while not self.stop.is_set():
            try:
                data = self.serial.read(256)
            except (serial.SerialException, OSError) as exc:
                if not self.stop.is_set():
                    log.error("ld2410: %s: %s", self.serial.port, exc)
                return
            for r in self.parser.feed(data):
                self.reports += 1
                self._report(r)

    def _report(self, r: Report) -> None:
        present = r.target and r.distance_cm <= self.threshold_cm
        self.distance = r.distance_cm / 100 if r.target else None
        if present != self.is_active:
            self.is_active = present
            cb = self.when_activated if present else self.when_deactivated
            if cb is not None:
                cb()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.serial.close()


def frame(state: int, distance_cm: int, moving_cm: int | None = None, stationary_cm: int | None = None,
          engineering: bool = False) -> bytes:
    """A report frame as the radar sends it (tests and the demo)."""
    mv = distance_cm if moving_cm is None else moving_cm
    st = distance_cm if stationary_cm is None else stationary_cm
    data = bytes([1 if engineering else 2, 0xAA]) + struct.pack("<BHBHBH", state, mv, 60, st, 40, distance_cm)
    if engineering:
        data += bytes([8, 8]) + bytes(18) + bytes(4)
    data += b"\x55\x00"
    return HEADER + struct.pack("<H", len(data)) + data + FOOTER
