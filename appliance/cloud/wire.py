"""The cloud wire format (ARCHITECTURE §7), one definition for the device and the ingest so
they cannot drift apart: topics under ``<prefix>/<device_id>/`` and their JSON payloads.

Everything that arrives is hostile until parsed (ARCHITECTURE §11): topics must have exactly
one of the documented shapes, names come from a safe alphabet, numbers and sizes have
ranges, JSON nesting is capped before it is decoded, and every failure is a
:class:`WireError` — never another exception."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from .. import __version__
from ..errors import ApplianceError
from ..limits import MAX_DEPTH, nesting_depth

STATUS, INFO, HEALTH, JOURNAL, ACK = "status", "info", "health", "journal", "ack"
MANIFEST = "manifest"
CONFIG_DESIRED, CONFIG_REPORTED = "config/desired", "config/reported"
CMD, RESULT = "cmd", "result"                   # cmd/<id> down, cmd/<id>/result up
CSR, CERT = "csr", "cert"                       # certificate renewal on the device's own root
PROVISION = "provision"
"""Enrolment by claim: ``<prefix>/provision/<request>/csr`` up, ``…/cert`` down (the only
topics the shared claim credential may use)."""
LOAD = "ingest/load"
"""``<prefix>/ingest/load/<worker>``, retained, from each ingest worker: how long it needs
for what it holds (:class:`Load`); boxes never time out sooner."""
RESERVED_IDS = frozenset({PROVISION, "claim", "ingest", "operator", "fleet", "homeassistant"})
"""Service identities under the same topic root: never a device's id."""

SEQ_MAX = 2**53 - 1
"""Sequence numbers and times are JSON numbers every client reads exactly."""
MAX_CHUNKS = 4096
MAX_CHUNK_BYTES = 1024 * 1024
MAX_CLIP_BYTES = 256 * 1024 * 1024
MAX_PAYLOAD = {JOURNAL: 1024 * 1024, STATUS: 4096, ACK: 256 * 1024, MANIFEST: 64 * 1024,
               CONFIG_DESIRED: 512 * 1024, CONFIG_REPORTED: 256 * 1024, CMD: 64 * 1024, RESULT: 256 * 1024,
               CSR: 16 * 1024, CERT: 32 * 1024, HEALTH: 64 * 1024, INFO: 256 * 1024}

NAME_RE = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}\Z"
"""Device ids, clip ids, clip file names, points: ASCII letters, digits, ``_ - .``, not
starting with a dot, 1–64 characters (they become topic levels and file names)."""
SafeName = Annotated[str, Meta(pattern=NAME_RE)]
Seq = Annotated[int, Meta(ge=0, le=SEQ_MAX)]
_NAME = re.compile(NAME_RE)
_DIGITS = re.compile(r"^[0-9]{1,6}\Z")


def safe_name(name: str) -> bool:
    return bool(_NAME.match(name))


def topic(prefix: str, device: str, name: str) -> str:
    return f"{prefix}/{device}/{name}"


def clip_topic(prefix: str, device: str, clip_id: str, part: int | str) -> str:
    """``clip/<clip_id>/<n>`` for chunk n, ``clip/<clip_id>/manifest`` at the end."""
    return topic(prefix, device, f"clip/{clip_id}/{part}")


class WireError(ApplianceError, ValueError):
    """A topic or payload that does not follow the wire format (rejected, never half-applied)."""


@dataclass(frozen=True, slots=True)
class Topic:
    """An inbound topic of one of the documented shapes."""
    device: str
    kind: str                   # journal | status | health | info | config/reported | clip | result
    clip: str | None = None     # the clip id, or the command id of a result
    part: str | None = None     # chunk number (ASCII digits) or "manifest"

    @property
    def chunk(self) -> int | None:
        return None if self.part == MANIFEST or self.part is None else int(self.part)


def parse_topic(prefix: str, name: str) -> Topic:
    """``<prefix>/<id>/journal``, ``…/status``, ``…/clip/<clip_id>/<n>``,
    ``…/clip/<clip_id>/manifest``; the device id is taken from its position only (the topic
    root the broker's ACL confines each box to). Anything else is a WireError."""
    head = prefix + "/"
    if not name.startswith(head):
        raise WireError(f"topic outside {prefix}/")
    parts = name[len(head):].split("/")
    if not parts or not safe_name(parts[0]):
        raise WireError("topic: bad device id")
    device, rest = parts[0], parts[1:]
    if device in RESERVED_IDS:
        raise WireError(f"topic: {device!r} is a service identity, not a device")
    if rest in ([JOURNAL], [STATUS], [HEALTH], [INFO], [CSR]):
        return Topic(device, rest[0])
    if rest == CONFIG_REPORTED.split("/"):
        return Topic(device, CONFIG_REPORTED)
    if len(rest) == 3 and rest[0] == CMD and rest[2] == RESULT:
        if not safe_name(rest[1]):
            raise WireError("topic: bad command id")
        return Topic(device, RESULT, rest[1])
    if len(rest) == 3 and rest[0] == "clip":
        clip, part = rest[1], rest[2]
        if not safe_name(clip):
            raise WireError("topic: bad clip id")
        if part != MANIFEST and not (_DIGITS.match(part) and int(part) < MAX_CHUNKS):
            raise WireError(f"topic: chunk number must be ASCII digits below {MAX_CHUNKS}")
        return Topic(device, "clip", clip, part)
    raise WireError("topic: not one of the documented shapes")


# --- payloads -------------------------------------------------------------------------------

EventId = Annotated[str, Meta(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")]
EventType = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,31}\Z")]
Source = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{0,32}\Z")]
PointId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}\Z")]     # as the config allows


class Record(msgspec.Struct, kw_only=True):
    """One journal event as it travels."""
    seq: Annotated[int, Meta(ge=1, le=SEQ_MAX)]
    id: EventId
    type: EventType
    ts: Annotated[int, Meta(ge=-SEQ_MAX, le=SEQ_MAX)]   # UTC ms; a box's pre-sync times may be odd
    point: PointId | None = None
    source: Source = ""
    data: dict[str, Any] = {}


class Batch(msgspec.Struct, kw_only=True):
    """Journal records in sequence order. ``prev`` is the seq the device had sent before
    this batch's first record, so the ingest can tell a batch that follows what it holds
    from one that arrived early (after a lost one)."""
    device: SafeName
    prev: Seq
    last: Seq
    records: Annotated[list[Record], Meta(max_length=10_000)]


class RecordIn(Record, kw_only=True):
    """A record as the ingest receives it: ``data`` stays the raw JSON text, to be checked
    against the journal vocabulary and stored as it came (never decoded twice)."""
    data: msgspec.Raw = msgspec.Raw(b"{}")


class BatchIn(Batch, kw_only=True):
    records: Annotated[list[RecordIn], Meta(max_length=10_000)]


class Ack(msgspec.Struct, kw_only=True, omit_defaults=True):
    """From the ingest: every record up to ``upto`` is stored (end-to-end, not the broker);
    ``clips`` are stored whole and verified; ``chunks`` tells, per clip still arriving, how
    many leading chunks it holds (where an interrupted upload resumes)."""
    upto: Annotated[int, Meta(ge=-1, le=SEQ_MAX)] = -1
    clips: Annotated[list[SafeName], Meta(max_length=1000)] = []
    chunks: Annotated[dict[SafeName, Annotated[int, Meta(ge=0, le=MAX_CHUNKS)]], Meta(max_length=1000)] = {}


class ClipManifest(msgspec.Struct, kw_only=True):
    """Sent after a clip's chunks on ``clip/<clip_id>/manifest``."""
    clip: SafeName
    file: SafeName
    size: Annotated[int, Meta(ge=0, le=MAX_CLIP_BYTES)]
    sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]
    chunks: Annotated[int, Meta(ge=1, le=MAX_CHUNKS)]
    chunk_size: Annotated[int, Meta(ge=1, le=MAX_CHUNK_BYTES)]
    tags: Annotated[list[Annotated[str, Meta(pattern=r"^[a-z_]{1,32}\Z")]], Meta(max_length=32)] = []
    meta: dict[str, Any] = {}


class Status(msgspec.Struct, kw_only=True):
    state: Literal["online", "offline"]
    version: Annotated[str, Meta(max_length=64)] = __version__


_enc = msgspec.json.Encoder()
_batch = msgspec.json.Decoder(BatchIn)
_ack = msgspec.json.Decoder(Ack)
_status = msgspec.json.Decoder(Status)
_manifest = msgspec.json.Decoder(ClipManifest)


def encode(obj: msgspec.Struct) -> bytes:
    return _enc.encode(obj)


def _decode(decoder: msgspec.json.Decoder, what: str, payload: bytes, limit: int):
    if len(payload) > limit:
        raise WireError(f"{what}: {len(payload)} bytes, more than {limit}")
    if nesting_depth(payload) > MAX_DEPTH:
        raise WireError(f"{what}: nested deeper than {MAX_DEPTH}")
    try:
        return decoder.decode(payload)
    except (msgspec.MsgspecError, RecursionError, ValueError, OverflowError) as exc:
        raise WireError(f"{what}: {str(exc)[:200]}") from None


class Load(msgspec.Struct, kw_only=True):
    """An ingest worker's load hint: ``wait_s`` to store what it holds now (0: idle)."""
    wait_s: Annotated[float, Meta(ge=0, le=86_400)] = 0.0
    queued: Annotated[int, Meta(ge=0, le=SEQ_MAX)] = 0
    rate: Annotated[float, Meta(ge=0, le=1e9)] = 0.0


_load = msgspec.json.Decoder(Load)


def load_topic(prefix: str, worker: str) -> str:
    return f"{prefix}/{LOAD}/{worker}"


def decode_load(payload: bytes) -> Load:
    """An empty payload (the hint deleted: the worker stopped) is an idle worker."""
    return _decode(_load, "ingest load", payload, 4096) if payload else Load()


def decode_batch(payload: bytes) -> BatchIn:
    b = _decode(_batch, "journal batch", payload, MAX_PAYLOAD[JOURNAL])
    if b.last < b.prev or any(r.seq <= b.prev or r.seq > b.last for r in b.records):
        raise WireError("journal batch: record seq outside (prev, last]")
    return b


def decode_ack(payload: bytes) -> Ack:
    return _decode(_ack, "ack", payload, MAX_PAYLOAD[ACK])


def decode_manifest(payload: bytes) -> ClipManifest:
    m = _decode(_manifest, "clip manifest", payload, MAX_PAYLOAD[MANIFEST])
    if m.chunks != max(1, -(-m.size // m.chunk_size)):
        raise WireError("clip manifest: chunk count does not match size and chunk size")
    return m


def decode_status(payload: bytes) -> Status:
    return _decode(_status, "status", payload, MAX_PAYLOAD[STATUS])


# --- provisioning, remote configuration, commands (ARCHITECTURE §7) -------------------------

Pem = Annotated[str, Meta(max_length=12_000)]
Text = Annotated[str, Meta(max_length=2_000)]


class CsrRequest(msgspec.Struct, kw_only=True):
    """A box's certificate signing request: on ``provision/<request>/csr`` with a claim token
    (enrolment), or on its own ``csr`` topic (renewal, no token)."""
    device: SafeName
    csr: Pem
    token: Annotated[str, Meta(max_length=256)] = ""


class CertResponse(msgspec.Struct, kw_only=True):
    """The signed certificate and the fleet CA, or why not."""
    device: SafeName
    cert: Pem = ""
    ca: Pem = ""
    error: Text = ""


class DesiredConfig(msgspec.Struct, kw_only=True):
    """Retained on ``config/desired``: the TOML text as it would be on disk, and a version."""
    version: Annotated[int, Meta(ge=1, le=SEQ_MAX)]
    toml: Annotated[str, Meta(max_length=400_000)]


class ReportedConfig(msgspec.Struct, kw_only=True):
    """Retained on ``config/reported``. ``status``: applied (running and reached the cloud),
    pending (written, waiting to reach the cloud), rejected (invalid: ``errors`` name the
    key paths; nothing changed), rolled_back (did not reach the cloud within the timeout)."""
    version: Annotated[int, Meta(ge=0, le=SEQ_MAX)]
    status: Literal["applied", "pending", "rejected", "rolled_back", "local"]
    hash: Annotated[str, Meta(max_length=64)] = ""
    applied_version: Annotated[int, Meta(ge=0, le=SEQ_MAX)] = 0
    errors: Annotated[list[Text], Meta(max_length=200)] = []
    time: Annotated[int, Meta(ge=0, le=SEQ_MAX)] = 0


CommandAction = Literal["restart", "reboot", "resync", "set_owner", "test_notification", "diagnostics", "update"]


class Command(msgspec.Struct, kw_only=True):
    """On ``cmd/<id>`` (never retained): run once per id, unless ``expires`` (UTC ms) passed."""
    id: SafeName
    action: CommandAction
    args: Annotated[dict[Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,31}\Z")], Any], Meta(max_length=16)] = {}
    expires: Annotated[int, Meta(ge=0, le=SEQ_MAX)] = 0


class CommandResult(msgspec.Struct, kw_only=True):
    """On ``cmd/<id>/result`` (never retained)."""
    id: SafeName
    status: Literal["ok", "error", "expired", "rejected"]
    result: dict[str, Any] = {}
    error: Text = ""
    time: Annotated[int, Meta(ge=0, le=SEQ_MAX)] = 0


_csr = msgspec.json.Decoder(CsrRequest)
_cert = msgspec.json.Decoder(CertResponse)
_desired = msgspec.json.Decoder(DesiredConfig)
_reported = msgspec.json.Decoder(ReportedConfig)
_command = msgspec.json.Decoder(Command)
_result = msgspec.json.Decoder(CommandResult)
_object = msgspec.json.Decoder(dict)


def decode_csr(payload: bytes) -> CsrRequest:
    return _decode(_csr, "certificate request", payload, MAX_PAYLOAD[CSR])


def decode_cert(payload: bytes) -> CertResponse:
    return _decode(_cert, "certificate response", payload, MAX_PAYLOAD[CERT])


def decode_desired(payload: bytes) -> DesiredConfig:
    return _decode(_desired, "config/desired", payload, MAX_PAYLOAD[CONFIG_DESIRED])


def decode_reported(payload: bytes) -> ReportedConfig:
    return _decode(_reported, "config/reported", payload, MAX_PAYLOAD[CONFIG_REPORTED])


def decode_command(payload: bytes) -> Command:
    return _decode(_command, "command", payload, MAX_PAYLOAD[CMD])


def decode_result(payload: bytes) -> CommandResult:
    return _decode(_result, "command result", payload, MAX_PAYLOAD[RESULT])


def decode_json_object(payload: bytes, what: str, limit: int) -> dict:
    """``health`` and ``info``: a JSON object, size- and depth-capped (stored as it came)."""
    return _decode(_object, what, payload, limit)
