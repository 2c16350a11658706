"""The one typed schema of ``appliance.toml`` (ARCHITECTURE §8).

Every section is a ``msgspec.Struct`` that forbids unknown keys; constraints live in
the type annotations so the loader can both validate and describe them in errors.
Defaults here are the documented defaults (see ``config.example.toml``).
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

import msgspec
from msgspec import Meta, Struct, field

NonNegative = Annotated[float, Meta(ge=0)]
Positive = Annotated[float, Meta(gt=0)]
PositiveInt = Annotated[int, Meta(ge=1)]
Port = Annotated[int, Meta(ge=1, le=65535)]
Identifier = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}\Z")]
HexId = Annotated[str, Meta(pattern=r"^[0-9A-Fa-f]{1,16}\Z")]
ClockTime = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z")]
RatingClass = Literal["top", "neutral", "negative"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Section(Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=False):
    pass


class Device(_Section):
    id: str = ""
    """Device id; empty means 'derive from /etc/machine-id' at start."""
    state_dir: str = "/var/lib/appliance"
    secrets_file: str = ""
    """Optional TOML file merged over this one (readable only by the service users)."""


class Shift(_Section):
    staff: str
    start: ClockTime
    end: ClockTime
    days: list[Weekday] = field(default_factory=lambda: list(WEEKDAYS))


class Point(_Section):
    name: str = ""
    presence: Literal["auto", "rf", "sensor", "pos"] = "auto"
    """"rf": presence/arrived-left-dwell events; "sensor": a GPIO sensor's level changes;
    "pos": each receipt whose sale carries ``opened`` is a contact from then to the sale's time;
    "auto": "sensor" when a [sensors.*] names this point, else whichever comes first."""
    min_presence_s: NonNegative = 2.0
    leave_after_s: NonNegative = 5.0
    min_contact_s: NonNegative = 3.0
    max_contact_s: Positive = 1800.0
    dwell_s: Positive = 300.0
    rating_grace_s: NonNegative = 20.0
    sale_grace_s: NonNegative = 30.0
    misuse_presses: PositiveInt = 5
    misuse_window_s: NonNegative = 10.0
    escalate_after_s: Positive = 120.0
    """A staff call not answered within this goes to the escalation recipients."""
    pos: bool = False
    rating_scale: dict[int, RatingClass] = field(
        default_factory=lambda: {1: "negative", 2: "top"})
    shifts: list[Shift] = field(default_factory=list)


class RatingButton(Struct, tag_field="meaning", tag="rating", forbid_unknown_fields=True):
    value: int


class PresenceButton(Struct, tag_field="meaning", tag="presence", forbid_unknown_fields=True):
    state: Literal["arrived", "left", "dwell"]


class CallButton(Struct, tag_field="meaning", tag="call", forbid_unknown_fields=True):
    """A staff-call button: a short press calls, a held one (``[rf] long_press_s``) is a
    complaint. The rest is the call's incident snapshot, sent with it."""
    name: str = ""
    location: str = ""
    type_code: int = 0
    extra: dict[str, str] = field(default_factory=dict)


class AnswerButton(Struct, tag_field="meaning", tag="answer", forbid_unknown_fields=True):
    """A staff member's fob: closes the open call at the remote's point."""
    staff: str = ""


class StaffButton(Struct, tag_field="meaning", tag="staff", forbid_unknown_fields=True):
    staff: str


ButtonMeaning = Union[RatingButton, PresenceButton, CallButton, StaffButton, AnswerButton]


class Remote(_Section):
    point: str
    name: str = ""
    buttons: dict[int, ButtonMeaning] = field(default_factory=dict)


class Sensor(_Section):
    """A presence sensor of one point: on GPIO (PIR, mmWave OUT pin, break beam, ultrasonic)
    or an LD2410-class mmWave radar on a serial port (``kind = "ld2410"``, ``port``)."""
    point: str
    kind: Literal["digital", "motion", "distance", "ld2410"] = "digital"
    pin: Annotated[int, Meta(ge=0, le=53)] = 17
    echo_pin: Annotated[int, Meta(ge=0, le=53)] | None = None
    active_high: bool = True
    threshold_m: Positive = 1.0
    """Distance sensors and radars: a target closer than this is presence."""
    port: str = "/dev/serial0"
    """ld2410: the serial port (the Pi's UART on GPIO 14/15, or a USB adapter)."""
    baud: Annotated[int, Meta(ge=1200, le=3_000_000)] = 256000
    silent_after_s: Annotated[float, Meta(ge=60)] = 14400.0
    """No change for longer than this: `status` and the health topic call the sensor silent
    (a cable off, a dead sensor — or a closed shop); present for longer: stuck."""


Micros = Annotated[int, Meta(ge=1, le=100_000)]


class RfDecoder(_Section):
    """A fixed-code remote declared as data (rtl_433 flex style): ``pwm`` tells bits by
    the mark width, ``ppm`` by the space width; the long one is 1."""
    modulation: Literal["pwm", "ppm"]
    short_us: Micros
    long_us: Micros
    gap_us: Micros
    bits: Annotated[int, Meta(ge=4, le=64)]
    sync_us: Annotated[int, Meta(ge=0, le=100_000)] = 0
    header_space_us: Annotated[int, Meta(ge=0, le=100_000)] = 0
    tolerance: Annotated[float, Meta(gt=0, le=0.5)] = 0.3
    button_bits: Annotated[int, Meta(ge=0, le=16)] = 0
    """The last this many bits are the button; the rest is the remote id."""


class Rf(_Section):
    source: Literal["gpiod", "gpio", "rtl_433", "nrf24", "none"] = "gpiod"
    """gpiod: the receiver's line through the kernel's GPIO character device (kernel-timestamped
    edges); gpio: through gpiozero's pin factory (boards without libgpiod v2)."""
    chip: Annotated[str, Meta(pattern=r"^/dev/gpiochip[0-9]{1,3}\Z")] = "/dev/gpiochip0"
    """The GPIO chip of the receiver's line (source gpiod): gpiochip0 is the header on every Pi
    with a current kernel."""
    pin: Annotated[int, Meta(ge=0, le=53)] = 27
    min_frames: PositiveInt = 2
    long_press_s: Positive = 3.0
    """A call button held this long is a complaint (as call-button systems do)."""
    decoders: dict[Identifier, RfDecoder] = field(default_factory=dict)


class Audio(_Section):
    source: Literal["alsa", "rtsp", "file", "none"] = "none"
    device: str = "default"
    url: str = ""
    rate: Literal[8000, 16000] = 16000
    spool_dir: str = "/run/appliance/audio"
    spool_minutes: Positive = 10.0
    segment_s: Positive = 10.0
    format: Literal["opus", "wav", "flac"] = "opus"
    bitrate_kbps: Annotated[int, Meta(ge=6, le=128)] = 24
    pre_s: NonNegative = 2.0
    post_s: NonNegative = 2.0
    before_s: NonNegative = 30.0
    after_s: NonNegative = 15.0


class Retention(_Section):
    max_age_days: Positive = 30.0
    quota_mb: Positive = 2048.0
    headroom_s: NonNegative = 3600.0


class JournalRetention(_Section):
    keep_raw_days: Annotated[float, Meta(ge=1)] = 90.0
    """Raw events (presses, receipts, presence, device events) older than this are pruned,
    once the core has derived them and the cloud (when sync is on) has acknowledged them."""
    keep_days: Annotated[float, Meta(ge=1)] = 800.0
    """The core's settled records (what reports count) are kept this long: two years and more,
    so that a year-on-year report works."""


class Sync(_Section):
    broker: str = ""
    """mqtt://host:port or mqtts://host:port; empty disables cloud sync."""
    prefix: str = "ca/v1"
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    """MQTT version; "auto" speaks 5 and falls back to 3.1.1 when the broker refuses it."""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    username: str = ""
    password: str = ""
    health_interval_s: Positive = 60.0
    batch_max: PositiveInt = 200
    chunk_kib: Annotated[int, Meta(ge=1, le=1024)] = 128
    rate_limit_kbps: NonNegative = 0.0
    """Clip uploads share the shop's uplink with the till: cap them (0: no cap)."""
    ack_timeout_s: Positive = 30.0
    """No acknowledgement for this long while records are in flight: send them again (only
    the oldest batch while the broker takes every publish: the ingest is busy, not deaf)."""
    ack_timeout_max_s: Annotated[float, Meta(gt=0, le=86_400)] = 600.0
    """Each timeout without progress doubles the next one, up to this (any ack resets it)."""
    reconnect_jitter_s: Annotated[float, Meta(ge=0, le=3_600)] = 5.0
    """After a reconnect, a random delay up to this before the backlog goes (a fleet
    reconnecting at once after an outage spreads out). The first connection goes at once."""
    audio_order: Literal["oldest", "newest"] = "oldest"
    """Which clips of a backlog go first (events and contacts always go before audio)."""


DEFAULT_PINNED = ["sync.broker", "sync.prefix", "sync.protocol", "sync.ca_file", "sync.cert_file", "sync.key_file",
                  "sync.username", "sync.password"]
"""Keys a remote configuration can never change (with ``device`` and ``provisioning``, always
pinned): the way to the cloud, so no remote change can cut a box off."""


class Provisioning(_Section):
    """Enrolment by claim, remote configuration and commands (ARCHITECTURE §7)."""
    claim_token: str = ""
    """One-time enrolment token (or any value when the fleet allow-lists this box's id).
    Enrolment runs when this or a claim credential is set and the box has no certificate yet."""
    claim_cert_file: str = ""
    """The shared claim certificate (allowed only on the provisioning topics) and its key."""
    claim_key_file: str = ""
    claim_username: str = ""
    """Or the shared claim user name and password."""
    claim_password: str = ""
    identity_dir: str = ""
    """Where the box keeps its own key (0600) and certificate; default <state_dir>/identity."""
    renew_before_days: Annotated[float, Meta(ge=1, le=365)] = 30.0
    remote_config: bool = False
    """Accept ``config/desired`` from the fleet (validated like this file; pinned keys stay local)."""
    pinned: list[Annotated[str, Meta(pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_-]+)*\Z")]] = field(
        default_factory=lambda: list(DEFAULT_PINNED))
    rollback_after_s: Annotated[float, Meta(ge=30, le=86400)] = 300.0
    """A remote config that does not reach the cloud within this long is rolled back."""
    commands: bool = True
    """Run commands from the fleet (restart, reboot, resync, set owner, test notification, diagnostics)."""
    reboot_command: list[str] = field(default_factory=lambda: ["systemctl", "reboot"])
    diagnostics_log_lines: Annotated[int, Meta(ge=0, le=10_000)] = 200


class Update(_Section):
    """Application updates from the fleet (signed release bundles; ``appliance-update.service``)."""
    keys_dir: str = "/etc/appliance/release-keys"
    """The Ed25519 release keys this box trusts (``*.pub``, PEM); none: every update is refused."""
    releases_dir: str = "/opt/appliance"
    """Where ``releases/<version>`` and the ``current`` link live."""
    window: Annotated[str, Meta(pattern=r"^\Z|^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]\Z")] = ""
    """Maintenance window ``HH:MM-HH:MM`` in [time] timezone (may pass midnight); empty: any time.
    An update waits for it (and for no open contact, no track being cut) until its command expires."""
    health_timeout_s: Annotated[float, Meta(ge=30, le=3600)] = 180.0
    """Every daemon READY and the broker reachable within this long, or the update is rolled back."""


class HomeAssistant(_Section):
    """MQTT discovery for Home Assistant on the [sync] broker (a small shop's own); off by default."""
    enabled: bool = False
    discovery_prefix: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}\Z")] = "homeassistant"
    interval_s: Annotated[float, Meta(ge=10, le=3600)] = 60.0
    """How often today's CSI, CDI, contacts and response rate are published."""


class Pos(_Section):
    listen: str = ""
    """host:port of the token-authenticated POS HTTP API; empty disables it."""
    token: str = ""
    drop_dir: str = ""
    """Folder a till writes JSON-lines files into; empty disables it."""


class Time(_Section):
    timezone: str = "UTC"
    """Zone of shift schedules and of day/hour periods in reports."""
    reorder_s: NonNegative = 0.5
    """How long the live core holds events so that late ones are taken in time order."""
    max_ahead_s: Annotated[float, Meta(ge=60, le=30 * 86400)] = 86400.0
    """An event from the till may be at most this far ahead of the box's synchronised clock
    (and never before 2020); before the clock syncs only the fixed bounds apply."""


Tag = Literal["rated", "positive", "not_positive", "negative", "unrated", "productive", "unproductive", "long",
              "truncated"]
"""Every tag a contact can get (ARCHITECTURE §4)."""
WindowMetric = Literal["negative_share", "csi", "cdi", "cci", "eli", "response_rate", "conversion"]


class WindowRule(_Section):
    """An alert opened when a figure over the last ``over_s`` crosses a threshold (with at
    least ``min_count`` ratings for the shares of ratings, ``min_count`` contacts for the
    indices); it closes by itself when the figure recovers."""
    metric: WindowMetric = "negative_share"
    above: Annotated[float, Meta(ge=0, le=1)] | None = None
    below: Annotated[float, Meta(ge=0, le=1)] | None = None
    over_s: Annotated[float, Meta(ge=60, le=31 * 86400)] = 900.0
    min_count: PositiveInt = 4


class SilenceRule(_Section):
    """An alert when a point (no input), a remote (no press) or the microphone (no audio
    level) stays quiet for longer than ``after_s`` between ``from_`` and ``to`` local time."""
    what: Literal["point", "remote", "microphone"]
    id: str = ""
    """The point or the remote id ("point", "remote"); empty for the microphone."""
    after_s: Annotated[float, Meta(ge=60, le=7 * 86400)] = 3600.0
    start: ClockTime = "00:00"
    end: ClockTime = "23:59"


class ReportRule(_Section):
    """A scheduled report: ``every`` hour, day (at ``at``, e.g. closing time) or week (on
    Mondays at ``at``), of the period that just ended, by point and by owner."""
    every: Literal["hour", "day", "week"] = "day"
    at: ClockTime = "21:00"
    chart: bool = True


class _Sink(Struct, forbid_unknown_fields=True, kw_only=True):
    """What every destination takes: the rules that select its messages and its retries."""
    on: list[Tag] = field(default_factory=list)
    """Contacts with any of these tags are sent when they close."""
    ratings: list[Union[RatingClass, int]] = field(default_factory=list)
    """Rating presses of these classes or values are sent when journalled (instant alerts)."""
    calls: bool = False
    """Staff calls are sent when they open."""
    escalations: bool = False
    """Escalated calls and complaints (a held call button) are sent."""
    points: list[str] = field(default_factory=list)
    """Only these points (all when empty)."""
    owners: list[str] = field(default_factory=list)
    """Only contacts, presses and calls of these staff members (all when empty)."""
    attach: Literal["contact", "press", "none"] = "contact"
    windows: list[WindowRule] = field(default_factory=list)
    silence: list[SilenceRule] = field(default_factory=list)
    reports: list[ReportRule] = field(default_factory=list)
    max_attempts: Annotated[int, Meta(ge=1, le=1000)] = 10
    """Failed sends are retried with exponential backoff; after this many the message goes
    to the dead-letter list."""
    retry_s: Annotated[float, Meta(ge=0.01, le=3600)] = 5.0
    """The first retry's delay; each next one doubles it (with jitter), at most an hour."""
    timeout_s: Annotated[float, Meta(gt=0, le=600)] = 20.0
    clip_wait_s: Annotated[float, Meta(ge=0, le=3600)] = 120.0
    """How long a message waits for its clip to be cut; then it goes without it and says so."""


class Telegram(_Sink, tag_field="kind", tag="telegram", kw_only=True, forbid_unknown_fields=True):
    token: str
    chat_id: str
    api_base: str = "https://api.telegram.org"
    """The Bot API's base URL (a self-hosted Bot API server, or a test server)."""
    on: list[Tag] = field(default_factory=lambda: ["negative"])


class Email(_Sink, tag_field="kind", tag="email", kw_only=True, forbid_unknown_fields=True):
    host: str
    port: Port = 587
    starttls: bool = True
    implicit_tls: bool = False
    """TLS from the first byte (port 465) instead of STARTTLS."""
    username: str = ""
    password: str = ""
    sender: str
    to: list[str]
    ca_file: str = ""
    """Trust these CAs instead of the system's (a private mail server)."""
    on: list[Tag] = field(default_factory=lambda: ["negative"])


class Ftp(_Sink, tag_field="kind", tag="ftp", kw_only=True, forbid_unknown_fields=True):
    host: str
    port: Port = 21
    tls: bool = True
    username: str = ""
    password: str = ""
    directory: str = "/"
    ca_file: str = ""
    on: list[Tag] = field(default_factory=lambda: ["negative", "unproductive"])


class Webhook(_Sink, tag_field="kind", tag="webhook", kw_only=True, forbid_unknown_fields=True):
    url: str
    token: str = ""
    """Sent as ``Authorization: Bearer <token>`` when set."""
    secret: str = ""
    """When set, ``X-Signature: sha256=<hex HMAC-SHA256 of the body>``."""
    ca_file: str = ""
    on: list[Tag] = field(default_factory=lambda: ["negative"])


class Sms(_Sink, tag_field="kind", tag="sms", kw_only=True, forbid_unknown_fields=True):
    """A USB GSM modem on a serial port (AT commands, text mode)."""
    device: str = "/dev/ttyUSB0"
    baud: PositiveInt = 115200
    to: list[Annotated[str, Meta(pattern=r"^\+?[0-9]{3,20}\Z")]]
    attach: Literal["contact", "press", "none"] = "none"


class CsvLog(_Sink, tag_field="kind", tag="csv", kw_only=True, forbid_unknown_fields=True):
    """A live rating log: ``<directory>/<date>.csv``, a line per rating press as it happens."""
    directory: str
    attach: Literal["contact", "press", "none"] = "none"
    ratings: list[Union[RatingClass, int]] = field(default_factory=lambda: ["top", "neutral", "negative"])


Notification = Union[Telegram, Email, Ftp, Webhook, Sms, CsvLog]


class Config(_Section):
    device: Device = field(default_factory=Device)
    time: Time = field(default_factory=Time)
    points: dict[Identifier, Point] = field(default_factory=dict)
    remotes: dict[HexId, Remote] = field(default_factory=dict)
    sensors: dict[Identifier, Sensor] = field(default_factory=dict)
    rf: Rf = field(default_factory=Rf)
    audio: Audio = field(default_factory=Audio)
    retention: Retention = field(default_factory=Retention)
    journal: JournalRetention = field(default_factory=JournalRetention)
    sync: Sync = field(default_factory=Sync)
    pos: Pos = field(default_factory=Pos)
    notifications: dict[Identifier, Notification] = field(default_factory=dict)
    provisioning: Provisioning = field(default_factory=Provisioning)
    home_assistant: HomeAssistant = field(default_factory=HomeAssistant)
    update: Update = field(default_factory=Update)


SECRET_KEYS = frozenset({"password", "token", "secret", "key_password", "claim_token", "claim_password"})
"""Key names whose values never appear in logs, `info` or `config show`."""


def presence_source(cfg: "Config", pid: str) -> str | None:
    """'rf' or 'sensor' as configured or implied; None while an "auto" point is undecided."""
    p = cfg.points[pid]
    if p.presence != "auto":
        return p.presence
    if any(s.point == pid for s in cfg.sensors.values()):
        return "sensor"
    return None


def schema_json() -> dict:
    """JSON Schema of the config (published on the `info` topic)."""
    return msgspec.json.schema(Config)
