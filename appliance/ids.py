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


DEVICE_ID_FILE = "device-id"
"""``<state_dir>/device-id``: the id this box enrolled and synced under, kept beside its key
and journal so that it never changes under them (a new OS, the SD card in another Pi)."""


def device_id(cfg) -> str:
    """The box's id: ``[device] id``; else the one it has used (``<state_dir>/device-id``);
    else ``ca-`` and its hardware id (:func:`hardware_id`)."""
    if cfg.device.id:
        return cfg.device.id
    try:
        kept = open(os.path.join(cfg.device.state_dir, DEVICE_ID_FILE)).read().strip()
        if kept:
            return kept
    except OSError:
        pass
    return "ca-" + hardware_id()


def legacy_device_id() -> str:
    """What boxes without ``[device] id`` were called before the Pi serial came first."""
    try:
        return "ca-" + open(MACHINE_ID).read().strip()[:12]
    except OSError:
        return "ca-" + os.uname().nodename


def settle_device_id(cfg, synced_before: bool) -> str:
    """The sync daemon, before it first connects: the box's id from now on, written down. A
    box that synced before under the older rule keeps that name (``synced_before``)."""
    if cfg.device.id:
        return cfg.device.id
    path = os.path.join(cfg.device.state_dir, DEVICE_ID_FILE)
    if os.path.exists(path):
        return device_id(cfg)
    dev = legacy_device_id() if synced_before else "ca-" + hardware_id()
    from .files import write_atomic
    write_atomic(path, dev + "\n")
    return dev
