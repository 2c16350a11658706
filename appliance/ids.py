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


def device_id(cfg) -> str:
    """The box's id: ``[device] id``, else derived from /etc/machine-id (the host name when
    there is none)."""
    if cfg.device.id:
        return cfg.device.id
    try:
        return "ca-" + open("/etc/machine-id").read().strip()[:12]
    except OSError:
        import os
        return "ca-" + os.uname().nodename
