"""The journal's vocabulary: every event type, as a constant, and the payload of every
event a stage or a daemon derives, as a msgspec Struct (the wire format does the same for
the cloud, ``appliance.cloud.wire``).

Producers build a payload and turn it into a journal event with :meth:`Payload.as_event`;
consumers read one back with :func:`read`, which checks the payload's shape. String
literals for event types and ``ev.data["…"]`` lookups stay out of the stages.

Input events (what a till, a remote or a sensor says) are validated on the way in by
``appliance.events``; their type names are here too, so every name has one home.
"""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal, TypeVar

import msgspec
from msgspec import Meta

from .errors import ApplianceError
from .journal import Event, NewEvent

# --- input events (appliance.events validates them) --------------------------------------
PRESENCE, SENSOR, RATING, SALE, STAFF, CALL = "presence", "sensor", "rating", "sale", "staff", "call"
ANSWER = "answer"
CORE_INPUT_TYPES = (PRESENCE, RATING, SALE, STAFF, SENSOR, CALL, ANSWER)
"""Journal event types the core pipeline consumes."""

# --- derived by the core -------------------------------------------------------------------
CONTACT_OPENED, CONTACT_CLOSED, CONTACT = "contact_opened", "contact_closed", "contact"
RATING_PRESSED, CALL_OPENED, CALL_ESCALATED = "rating_pressed", "call_opened", "call_escalated"
# --- alerts, reports and their delivery (appliance.alerts, appliance.notify) --------------------
ALERT_OPENED, ALERT_CLOSED, ALERT_ACKED = "alert_opened", "alert_closed", "alert_acked"
REPORT_DUE = "report_due"
NOTIFICATION_SENT, NOTIFICATION_DEAD = "notification_sent", "notification_dead"
RATING_SETTLED, SALE_SETTLED, CALL_SETTLED = "rating_settled", "sale_settled", "call_settled"
# --- the audio daemon ------------------------------------------------------------------------
CLIP, CLIP_TAGS, CLIP_DELETED, MIC_STATE = "clip", "clip_tags", "clip_deleted", "mic_state"
# --- the sync daemon -------------------------------------------------------------------------
CLIP_ACKED = "clip_acked"
COMMAND, COMMAND_RESULT = "command", "command_result"     # fleet commands, journalled before they run
# --- the rf daemon ---------------------------------------------------------------------------
UNKNOWN_REMOTE, UNKNOWN_REMOTES, RADIO_STATE = "unknown_remote", "unknown_remotes", "radio_state"
PRESS_RELEASED = "press_released"
SENSOR_STATE = "sensor_state"
# --- the technician ---------------------------------------------------------------------------
REBUILD, PRUNED = "rebuild", "pruned"

CLIP_LIFECYCLE = (CLIP, CLIP_ACKED, CLIP_DELETED)
"""What the clip uploader and retention follow."""


class VocabularyError(ApplianceError, ValueError):
    """A journal row whose payload does not have its type's shape."""


class Payload(msgspec.Struct, kw_only=True):
    """The data of one derived event type; ``TYPE`` names it."""
    TYPE: ClassVar[str]

    def as_event(self, ts: int, point: str | None = None, source: str = "local",
                 key: str | None = None) -> NewEvent:
        return NewEvent(self.TYPE, ts, msgspec.to_builtins(self), point, source, key)


P = TypeVar("P", bound=Payload)


def read(ev: Event, cls: type[P]) -> P:
    """The typed payload of a journal event of ``cls.TYPE``."""
    if ev.type != cls.TYPE:
        raise VocabularyError(f"event {ev.seq} is a {ev.type!r}, not a {cls.TYPE!r}")
    try:
        return msgspec.convert(ev.data, cls)
    except msgspec.ValidationError as exc:
        raise VocabularyError(f"event {ev.seq} ({ev.type}): {exc}") from None


# --- input events (as journalled: extra fields such as remote, frames, protocol are allowed) ---

Name = Annotated[str, Meta(min_length=1, max_length=64)]


class PresenceChange(Payload):
    TYPE: ClassVar[str] = PRESENCE
    state: Literal["arrived", "left", "dwell"]


class SensorReading(Payload):
    TYPE: ClassVar[str] = SENSOR
    present: bool


class RatingPress(Payload):
    TYPE: ClassVar[str] = RATING
    value: Annotated[int, Meta(ge=-1000, le=1000)]
    cls: Literal["top", "neutral", "negative"] = msgspec.field(default="neutral", name="class")
    remote: Name | None = None
    button: int | None = None


class Receipt(Payload):
    TYPE: ClassVar[str] = SALE
    receipt: Name
    amount: Annotated[float, Meta(ge=-1e12, le=1e12)] | None = None
    items: Annotated[int, Meta(ge=0, le=1_000_000)] | None = None
    currency: Annotated[str, Meta(max_length=8)] | None = None
    opened: Annotated[int, Meta(ge=0, le=1 << 53)] | None = None    # UTC ms: first item scanned


class StaffChange(Payload):
    TYPE: ClassVar[str] = STAFF
    staff: Name
    action: Literal["login", "logout"] = "login"


class CallPress(Payload):
    TYPE: ClassVar[str] = CALL
    press: Literal["short", "long"] = "short"
    remote: Name | None = None
    button: int | None = None


class CallAnswer(Payload):
    """A staff member's fob (a button with meaning ``answer``) or ``appliancectl calls
    answer`` closed the open call at the point."""
    TYPE: ClassVar[str] = ANSWER
    staff: Name | None = None
    remote: Name | None = None
    button: int | None = None


# --- the core's derived records ----------------------------------------------------------------

class ContactOpened(Payload):
    TYPE: ClassVar[str] = CONTACT_OPENED
    contact: str
    opened: int                         # UTC ms


class ContactClosed(Payload):
    TYPE: ClassVar[str] = CONTACT_CLOSED
    contact: str
    opened: int
    closed: int


class ContactSettled(Payload):
    """A counted contact, final: its rating, sales and tags (ARCHITECTURE §4)."""
    TYPE: ClassVar[str] = CONTACT
    contact: str
    point: str
    opened: str                         # ISO 8601, ms
    closed: str
    duration_s: float
    owner: str | None
    rating: int | None                  # the rating that counts
    sales: list[str]                    # receipt ids
    tags: list[str]
    superseded: list[str] = []          # refs of earlier ratings that no longer count
    rating_class: str | None = None     # top | neutral | negative (absent in early journals)
    revenue: float = 0.0                # sum of its receipts' amounts
    happy: float | None = None          # its rating on the point's scale as 0–100 (absent in early journals)


class RatingSettled(Payload):
    """A rating press once its status is final (counted, superseded, orphan, misuse)."""
    TYPE: ClassVar[str] = RATING_SETTLED
    rating: str                         # the input event's ref
    value: int
    cls: str = msgspec.field(name="class")
    status: str
    owner: str | None
    contact: str | None
    remote: str | None = None           # the remote and button pressed (absent in early journals)
    button: int | None = None
    happy: float | None = None          # the value on the point's scale as 0–100 (absent in early journals)


class SaleSettled(Payload):
    TYPE: ClassVar[str] = SALE_SETTLED
    sale: str                           # the input event's ref
    receipt: str
    contact: str | None
    owner: str | None
    amount: float | None = None
    items: int | None = None            # items on the receipt (absent in early journals)


class CallSettled(Payload):
    TYPE: ClassVar[str] = CALL_SETTLED
    owner: str | None
    answered_s: float | None
    call: str | None = None             # the call's id (absent in early journals)
    escalated: bool = False
    complaint: bool = False


class RatingPressed(Payload):
    """A rating press as the core took it (owner and class known, misuse decided): what
    instant alerts are sent from, seconds after the press, long before its contact closes."""
    TYPE: ClassVar[str] = RATING_PRESSED
    rating: str                         # the input event's ref
    value: int
    cls: str = msgspec.field(name="class")
    owner: str | None
    misuse: bool = False
    remote: str | None = None
    button: int | None = None


class CallOpened(Payload):
    """A staff call opened (a short press), or a complaint (a held button: ``complaint``,
    already escalated), with its incident snapshot."""
    TYPE: ClassVar[str] = CALL_OPENED
    call: str
    owner: str | None
    complaint: bool = False
    press: str = ""                     # the press's journal id (its press track)
    remote: str | None = None
    button: int | None = None
    name: str = ""
    location: str = ""
    type_code: int = 0
    extra: dict[str, str] = {}


class CallEscalated(Payload):
    """An open call not answered within the point's ``escalate_after_s``."""
    TYPE: ClassVar[str] = CALL_ESCALATED
    call: str
    owner: str | None
    opened: str                         # ISO 8601


# --- alerts and reports ------------------------------------------------------------------------

class AlertOpened(Payload):
    """A windowed figure crossed its threshold, or something went quiet (``rule`` names
    the destination's rule: ``windows[0]``, ``silence[1]``)."""
    TYPE: ClassVar[str] = ALERT_OPENED
    alert: str
    destination: str
    rule: str
    what: str                           # e.g. "negative_share 0.62 ≥ 0.5 over 15 min (8 ratings)"
    value: float | None = None


class AlertClosed(Payload):
    TYPE: ClassVar[str] = ALERT_CLOSED
    alert: str
    destination: str
    rule: str
    what: str


class AlertAcked(Payload):
    TYPE: ClassVar[str] = ALERT_ACKED
    alert: str
    comment: str = ""
    by: str = ""


class ReportDue(Payload):
    """A scheduled report of [start, end) for one destination."""
    TYPE: ClassVar[str] = REPORT_DUE
    destination: str
    every: str
    start: str
    end: str
    chart: bool = True


class NotificationSent(Payload):
    """A destination confirmed a message (``key``: its idempotency key)."""
    TYPE: ClassVar[str] = NOTIFICATION_SENT
    destination: str
    key: str
    kind: str
    attempts: int
    clip: str | None = None


class NotificationDead(Payload):
    """A message given up after ``attempts`` failures: on the dead-letter list."""
    TYPE: ClassVar[str] = NOTIFICATION_DEAD
    destination: str
    key: str
    kind: str
    attempts: int
    error: str


# --- audio -----------------------------------------------------------------------------------------

class Clip(Payload):
    """A clip file written under ``<state_dir>/clips`` (ARCHITECTURE §6)."""
    TYPE: ClassVar[str] = CLIP
    clip: str
    kind: str                           # contact | press
    file: str
    start: str                          # ISO 8601
    end: str
    duration_s: float
    format: str
    size: int
    sha256: str
    missing_ms: int = 0
    complete: bool = True
    contact: str | None = None          # contact tracks
    press: str | None = None            # press tracks: rating | call
    event: str | None = None            # press tracks: the press's journal id
    tags: list[str] = []


class ClipTags(Payload):
    TYPE: ClassVar[str] = CLIP_TAGS
    clip: str
    tags: list[str]


class ClipDeleted(Payload):
    TYPE: ClassVar[str] = CLIP_DELETED
    clip: str
    reason: str
    acked: bool
    size: int


class ClipAcked(Payload):
    TYPE: ClassVar[str] = CLIP_ACKED
    clip: str


class CommandReceived(Payload):
    """A fleet command, journalled before it runs (key ``cmd:<id>``: one run per id)."""
    TYPE: ClassVar[str] = COMMAND
    id: Name
    action: Name
    args: dict = {}
    expires: int = 0


class CommandDone(Payload):
    """What a fleet command did (key ``cmd-result:<id>``): a repeated id gets this again."""
    TYPE: ClassVar[str] = COMMAND_RESULT
    id: Name
    status: Literal["ok", "error", "expired", "rejected"]
    result: dict = {}
    error: str = ""


class MicState(Payload):
    TYPE: ClassVar[str] = MIC_STATE
    state: str                          # ok | silent | clipping | lost
    error: str | None = None


# --- rf ----------------------------------------------------------------------------------------------

class UnknownRemote(Payload):
    """A press of a remote or button the config does not know (never counted)."""
    TYPE: ClassVar[str] = UNKNOWN_REMOTE
    remote: str
    button: int | None
    protocol: str
    code: int | str
    bits: int
    frames: int
    unit_us: float
    error: str | None = None


class PressReleased(Payload):
    """A configured remote's button was let go: how long it was held. The press itself was
    journalled when it was confirmed (a call button's, when short or long was known)."""
    TYPE: ClassVar[str] = PRESS_RELEASED
    remote: str
    button: int | None
    protocol: str
    held_ms: Annotated[int, Meta(ge=0)]
    frames: int
    long: bool


class UnknownRemotes(Payload):
    """Presses of unknown remotes only counted in a window (a flood is not journalled press by press)."""
    TYPE: ClassVar[str] = UNKNOWN_REMOTES
    presses: int
    codes: int
    window_s: float
    first: str
    last: str


class RadioState(Payload):
    """The radio's source went away (rtl_433 exited, a device was lost) or came back."""
    TYPE: ClassVar[str] = RADIO_STATE
    state: str                          # ok | lost
    error: str | None = None
    restarts: int = 0


class SensorState(Payload):
    """A GPIO presence sensor could not be opened (pin in use, no GPIO chip) or works again."""
    TYPE: ClassVar[str] = SENSOR_STATE
    sensor: Name
    state: Literal["ok", "error"]
    error: Annotated[str, Meta(max_length=500)] | None = None


class Rebuild(Payload):
    """``appliancectl rebuild`` derived the core's records again from ``since`` on."""
    TYPE: ClassVar[str] = REBUILD
    since: str | None
    deleted: int
    derived: int


class Pruned(Payload):
    """Journal retention deleted old events (``appliance.pruning``), one batch, in the same
    transaction: ``count`` events of a kind (raw, clips, records) older than ``before``,
    between seq ``first_seq`` and ``last_seq``."""
    TYPE: ClassVar[str] = PRUNED
    kind: str
    count: int
    first_seq: int
    last_seq: int
    before: str


PAYLOADS: dict[str, type[Payload]] = {cls.TYPE: cls for cls in (
    PresenceChange, SensorReading, RatingPress, Receipt, StaffChange, CallPress, ContactOpened, ContactClosed,
    ContactSettled, RatingSettled, SaleSettled, CallSettled, Clip, ClipTags, ClipDeleted, ClipAcked, MicState,
    UnknownRemote, UnknownRemotes, PressReleased, RadioState, SensorState, Rebuild, Pruned, CallAnswer, RatingPressed, CallOpened, CallEscalated,
    AlertOpened, AlertClosed, AlertAcked, ReportDue, NotificationSent, NotificationDead, CommandReceived,
    CommandDone)}
"""Every event type the journal holds, and its payload."""


_JSON_DECODERS = {name: msgspec.json.Decoder(cls) for name, cls in PAYLOADS.items()}


def check(type: str, data: object) -> Payload:
    """Validate an event's data against its type (as the cloud ingest does before storing
    a box's record): a known type and a payload of its shape, or a VocabularyError. ``data``
    is a dict, or the raw JSON text of one (``bytes`` or ``msgspec.Raw``)."""
    cls = PAYLOADS.get(type)
    if cls is None:
        raise VocabularyError(f"unknown event type {type!r}")
    try:
        if isinstance(data, (bytes, msgspec.Raw)):
            return _JSON_DECODERS[type].decode(data)
        return msgspec.convert(data, cls)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise VocabularyError(f"{type}: {exc}") from None
