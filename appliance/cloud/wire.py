"""The cloud wire format (ARCHITECTURE §7), one definition for the device and the ingest so
they cannot drift apart: topics under ``<prefix>/<device_id>/`` and their JSON payloads."""
from __future__ import annotations

from typing import Any

import msgspec

from .. import __version__
from ..errors import ApplianceError


def topic(prefix: str, device: str, name: str) -> str:
    return f"{prefix}/{device}/{name}"


STATUS, INFO, HEALTH, JOURNAL, ACK = "status", "info", "health", "journal", "ack"


def clip_topic(prefix: str, device: str, clip_id: str, part: int | str) -> str:
    """``clip/<clip_id>/<n>`` for chunk n, ``clip/<clip_id>/manifest`` at the end."""
    return topic(prefix, device, f"clip/{clip_id}/{part}")


class Record(msgspec.Struct, kw_only=True):
    """One journal event as it travels."""
    seq: int
    id: str
    type: str
    ts: int
    point: str | None = None
    source: str = ""
    data: dict[str, Any] = {}


class Batch(msgspec.Struct, kw_only=True):
    """Journal records in sequence order. ``prev`` is the seq the device had sent before
    this batch's first record, so the ingest can tell a batch that follows what it holds
    from one that arrived early (after a lost one)."""
    device: str
    prev: int
    last: int
    records: list[Record]


class Ack(msgspec.Struct, kw_only=True):
    """From the ingest: every record up to ``upto`` is stored (end-to-end, not the broker);
    ``clips`` are stored whole and verified; ``chunks`` tells, per clip still arriving, how
    many leading chunks it holds (where an interrupted upload resumes)."""
    upto: int = -1
    clips: list[str] = []
    chunks: dict[str, int] = {}


class ClipManifest(msgspec.Struct, kw_only=True):
    """Sent after a clip's chunks on ``clip/<clip_id>/manifest``."""
    clip: str
    file: str
    size: int
    sha256: str
    chunks: int
    chunk_size: int
    tags: list[str] = []
    meta: dict[str, Any] = {}


class Status(msgspec.Struct, kw_only=True):
    state: str                      # online | offline
    version: str = __version__


_enc = msgspec.json.Encoder()
_batch = msgspec.json.Decoder(Batch)
_ack = msgspec.json.Decoder(Ack)
_status = msgspec.json.Decoder(Status)
_manifest = msgspec.json.Decoder(ClipManifest)


def encode(obj: msgspec.Struct) -> bytes:
    return _enc.encode(obj)


class WireError(ApplianceError, ValueError):
    """A payload that does not follow the wire format (rejected, never half-applied)."""


def _decode(decoder: msgspec.json.Decoder, what: str, payload: bytes):
    try:
        return decoder.decode(payload)
    except msgspec.MsgspecError as exc:
        raise WireError(f"{what}: {exc}") from None


def decode_batch(payload: bytes) -> Batch:
    b = _decode(_batch, "journal batch", payload)
    if any(r.seq <= b.prev or r.seq > b.last for r in b.records):
        raise WireError("journal batch: record seq outside (prev, last]")
    return b


def decode_ack(payload: bytes) -> Ack:
    return _decode(_ack, "ack", payload)


def decode_manifest(payload: bytes) -> ClipManifest:
    m = _decode(_manifest, "clip manifest", payload)
    if m.size < 0 or m.chunks < 0 or m.chunk_size <= 0 or len(m.sha256) != 64:
        raise WireError("clip manifest: bad size, chunk count or sha256")
    return m


def decode_status(payload: bytes) -> Status:
    return _decode(_status, "status", payload)
