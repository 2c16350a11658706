"""Time-ordered unique ids (UUIDv7, RFC 9562)."""
from __future__ import annotations

import hashlib
import os
import time


def uuid7(ms: int | None = None, rand: bytes | None = None) -> str:
    """A UUIDv7 string: 48-bit Unix ms, version 7, 74 random (or given) bits."""
    if ms is None:
        ms = time.time_ns() // 1_000_000
    rand = rand if rand is not None else os.urandom(10)
    b = bytearray(ms.to_bytes(6, "big") + rand[:10])
    b[6] = 0x70 | (b[6] & 0x0F)
    b[8] = 0x80 | (b[8] & 0x3F)
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derived_id(ms: int, *parts: object) -> str:
    """A deterministic UUIDv7 for derived records (a contact): same inputs, same id.

    Replay and a restarted stage therefore produce the same ids, which makes their
    outputs idempotent.
    """
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=10).digest()
    return uuid7(max(ms, 0), digest)


SERIAL_FILES = ("/sys/firmware/devicetree/base/serial-number", "/proc/device-tree/serial-number")
MACHINE_ID = "/etc/machine-id"


def hardware_id() -> str:
    """The Raspberry Pi's serial number from the device tree; else /etc/machine-id; else the
    host name. Stable across reinstalls of the SD card (the serial) or of the OS (machine-id)."""
    import re
    for path in SERIAL_FILES:
        try:
            serial = open(path, "rb").read().rstrip(b"\0\n ").decode("ascii").lower()
        except (OSError, UnicodeDecodeError):
            continue
        if re.fullmatch(r"[0-9a-f]{8,32}", serial):
            return serial
    try:
        mid = open(MACHINE_ID).read().strip()
        if mid:
            return mid[:12]
    except OSError:
        pass
    return os.uname().nodename


def device_id(cfg) -> str:
    """The box's id: ``[device] id``, else ``ca-`` and its hardware id (:func:`hardware_id`)."""
    if cfg.device.id:
        return cfg.device.id
    return "ca-" + hardware_id()
