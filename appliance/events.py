"""Input events: the JSON-lines format of replay, ``journal import``, the POS API and the
drop folder, validated against the config and normalised into journal events.

A remote's ``button`` event is mapped here through the config's button map into the
meaning it stands for (``rating``, ``presence``, ``call``, ``staff``), keeping ``remote``
and ``button`` so the rating log can show them.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Iterator, Literal, Union

import msgspec
from msgspec import Struct

from .config.schema import AnswerButton, CallButton, Config, PresenceButton, RatingButton, StaffButton, presence_source
from .errors import EventError
from .journal import NewEvent
from .point import MAX_RECEIPT_OPEN_MS
from .limits import FIXED, MAX_DEPTH, TimeWindow, nesting_depth
from .timefmt import parse_ts

INPUT_TYPES = ("presence", "rating", "button", "sale", "staff", "sensor", "call", "answer")
"""Event types a user may feed; ``button`` never lands as such (it is mapped)."""

Ts = Union[str, int]
Press = Literal["short", "long"]


class _In(Struct, tag_field="type"):
    ts: Ts


class PresenceIn(_In, tag="presence"):
    point: str
    state: Literal["arrived", "left", "dwell"]


class RatingIn(_In, tag="rating"):
    point: str
    value: int
    remote: str | None = None
    button: int | None = None


class ButtonIn(_In, tag="button"):
    remote: str
    button: int
    press: Press = "short"


class SaleIn(_In, tag="sale"):
    point: str
    receipt: str
    amount: float | None = None
    items: int | None = None
    currency: str | None = None
    opened: Ts | None = None
    """When the receipt was opened (first item scanned): at a ``presence = "pos"`` point the
    receipt is a contact from then to ``ts``."""


class StaffIn(_In, tag="staff"):
    point: str
    staff: str
    action: Literal["login", "logout"] = "login"


class SensorIn(_In, tag="sensor"):
    point: str
    present: bool


class CallIn(_In, tag="call"):
    point: str
    press: Press = "short"
    remote: str | None = None
    button: int | None = None


class AnswerIn(_In, tag="answer"):
    point: str
    staff: str | None = None
    remote: str | None = None
    button: int | None = None


AnyIn = Union[PresenceIn, RatingIn, ButtonIn, SaleIn, StaffIn, SensorIn, CallIn, AnswerIn]
_decoder = msgspec.json.Decoder(AnyIn)


def _msg(exc: msgspec.ValidationError) -> str:
    """msgspec's 'Expected `int`, got `str` - at `$.value`' -> 'value: expected int, got str'."""
    text = str(exc)
    if "`$.type`" in text or text.startswith("Object missing required field `type`"):
        return "\"type\" must be one of " + ", ".join(INPUT_TYPES)
    what, _, where = text.partition(" - at `")
    what = what.replace("`", "")
    what = what[0].lower() + what[1:]
    where = where.rstrip("`").removeprefix("$").lstrip(".")
    return f"{where}: {what}" if where else what


MAX_LINE = 64 * 1024
"""An input line or request body larger than this is refused unread."""


def decode_line(line: bytes | str, cfg: Config, window: TimeWindow = FIXED) -> NewEvent:
    """One JSON line (or request body) -> one normalised journal event. EventError says
    what is wrong; nothing else is raised, whatever the bytes."""
    if len(line) > MAX_LINE:
        raise EventError(f"longer than {MAX_LINE} bytes")
    if nesting_depth(line) > MAX_DEPTH:
        raise EventError(f"nested deeper than {MAX_DEPTH} levels")
    try:
        raw = _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise EventError(_msg(exc)) from None
    except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
        raise EventError(f"not valid JSON: {str(exc)[:200]}") from None
    return normalise(raw, cfg, window)


def from_dict(obj: dict, cfg: Config, window: TimeWindow = FIXED) -> NewEvent:
    try:
        raw = msgspec.convert(obj, AnyIn)
    except msgspec.ValidationError as exc:
        raise EventError(_msg(exc)) from None
    return normalise(raw, cfg, window)


def _point(cfg: Config, point: str):
    p = cfg.points.get(point)
    if p is None:
        known = ", ".join(cfg.points) or "none configured"
        raise EventError(f"unknown point {point!r} (points: {known})")
    return p


def _rating(cfg: Config, point: str, value: int) -> str:
    scale = _point(cfg, point).rating_scale
    cls = scale.get(value)
    if cls is None:
        raise EventError(f"rating value {value} is not on the rating scale of point {point} "
                         f"({', '.join(map(str, sorted(scale)))})")
    return cls


def normalise(raw: AnyIn, cfg: Config, window: TimeWindow = FIXED) -> NewEvent:
    try:
        ts = parse_ts(raw.ts)
    except (ValueError, OverflowError) as exc:
        raise EventError(f"ts: {exc}") from None
    why = window.problem(ts)
    if why:
        raise EventError(f"ts: {why}")
    if type(raw) is ButtonIn:
        return map_button(raw.remote, raw.button, raw.press, ts, cfg)
    p = _point(cfg, raw.point)
    return _NORMALISE[type(raw)](raw, ts, p, cfg)


FROM_TILL = "takes its contacts from the till (sale events with \"opened\")"


def _presence(raw: PresenceIn, ts: int, p, cfg: Config) -> NewEvent:
    src = presence_source(cfg, raw.point)
    if src == "sensor":
        raise EventError(f"point {raw.point} takes presence from its sensor, not from presence events")
    if src == "pos":
        raise EventError(f"point {raw.point} {FROM_TILL}, not from presence events")
    return NewEvent("presence", ts, {"state": raw.state}, raw.point)


def _sensor(raw: SensorIn, ts: int, p, cfg: Config) -> NewEvent:
    src = presence_source(cfg, raw.point)
    if src == "rf":
        raise EventError(f"point {raw.point} takes presence from RF (presence events), not from a sensor")
    if src == "pos":
        raise EventError(f"point {raw.point} {FROM_TILL}, not from a sensor")
    return NewEvent("sensor", ts, {"present": raw.present}, raw.point)


def _rating_event(raw: RatingIn, ts: int, p, cfg: Config) -> NewEvent:
    data = {"value": raw.value, "class": _rating(cfg, raw.point, raw.value)}
    if raw.remote is not None:
        data["remote"], data["button"] = raw.remote.lower(), raw.button
    return NewEvent("rating", ts, data, raw.point)


def _sale(raw: SaleIn, ts: int, p, cfg: Config) -> NewEvent:
    receipt = raw.receipt.strip()
    if not receipt or len(receipt) > 64:
        raise EventError("receipt: expected a receipt id of 1–64 characters")
    if raw.amount is not None and not (raw.amount == raw.amount and abs(raw.amount) < 1e12):
        raise EventError("amount: expected a finite number")
    if raw.items is not None and raw.items < 0:
        raise EventError("items: expected a count ≥ 0")
    data: dict = {"receipt": receipt}
    for k in ("amount", "items", "currency"):
        if getattr(raw, k) is not None:
            data[k] = getattr(raw, k)
    if raw.opened is not None:
        try:
            opened = parse_ts(raw.opened)
        except (ValueError, OverflowError) as exc:
            raise EventError(f"opened: {exc}") from None
        if opened > ts:
            raise EventError("opened: the receipt was opened after its time (ts)")
        if ts - opened > MAX_RECEIPT_OPEN_MS:
            raise EventError("opened: more than 24 hours before the receipt's time (ts)")
        data["opened"] = opened
    return NewEvent("sale", ts, data, raw.point, key=f"sale:{raw.point}:{receipt}")


def _staff(raw: StaffIn, ts: int, p, cfg: Config) -> NewEvent:
    staff = raw.staff.strip()
    if not staff or len(staff) > 64:
        raise EventError("staff: expected a name of 1–64 characters")
    return NewEvent("staff", ts, {"staff": staff, "action": raw.action}, raw.point)


def _call(raw: CallIn, ts: int, p, cfg: Config) -> NewEvent:
    data = {"press": raw.press}
    if raw.remote is not None:
        data["remote"], data["button"] = raw.remote.lower(), raw.button
    return NewEvent("call", ts, data, raw.point)


def _answer(raw: AnswerIn, ts: int, p, cfg: Config) -> NewEvent:
    data: dict = {}
    if raw.staff is not None:
        staff = raw.staff.strip()
        if not staff or len(staff) > 64:
            raise EventError("staff: expected a name of 1–64 characters")
        data["staff"] = staff
    if raw.remote is not None:
        data["remote"], data["button"] = raw.remote.lower(), raw.button
    return NewEvent("answer", ts, data, raw.point)


_NORMALISE = {PresenceIn: _presence, SensorIn: _sensor, RatingIn: _rating_event, SaleIn: _sale,
              StaffIn: _staff, CallIn: _call, AnswerIn: _answer}


def map_button(remote: str, button: int, press: str, ts: int, cfg: Config) -> NewEvent:
    """A remote's press -> the journal event its configured meaning stands for."""
    rid = remote.lower()
    r = cfg.remotes.get(rid)
    if r is None:
        raise EventError(f"remote {remote!r} is not in the config (learn it with 'appliancectl rf learn')")
    m = r.buttons.get(button)
    if m is None:
        raise EventError(f"remote {rid} has no button {button} in the config "
                         f"(buttons: {', '.join(map(str, sorted(r.buttons))) or 'none'})")
    src = {"remote": rid, "button": button}
    if isinstance(m, RatingButton):
        return NewEvent("rating", ts, {"value": m.value, "class": _rating(cfg, r.point, m.value), **src}, r.point)
    if isinstance(m, PresenceButton):
        src_kind = presence_source(cfg, r.point)
        if src_kind == "sensor":
            raise EventError(f"point {r.point} takes presence from its sensor, not from remote {rid}")
        if src_kind == "pos":
            raise EventError(f"point {r.point} {FROM_TILL}, not from remote {rid}")
        return NewEvent("presence", ts, {"state": m.state, **src}, r.point)
    if isinstance(m, CallButton):
        return NewEvent("call", ts, {"press": press, **src}, r.point)
    if isinstance(m, StaffButton):
        return NewEvent("staff", ts, {"staff": m.staff, "action": "login", **src}, r.point)
    if isinstance(m, AnswerButton):
        return NewEvent("answer", ts, {**({"staff": m.staff} if m.staff else {}), **src}, r.point)
    raise EventError(f"remote {rid} button {button}: unsupported meaning")  # pragma: no cover


class LineErrors(list):
    """(line number, message) pairs."""

    def report(self, source: str) -> str:
        return "\n".join(f"{source}:{n}: {m}" for n, m in self)


def read_lines(lines: Iterable[bytes], cfg: Config,
               window: TimeWindow = FIXED) -> tuple[list[tuple[int, NewEvent]], LineErrors]:
    """Number and decode every non-blank, non-comment line. Bad lines, and a receipt id
    repeated at the same point, are collected as (line, message); nothing is raised."""
    events: list[tuple[int, NewEvent]] = []
    errors = LineErrors()
    receipts: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue
        try:
            ev = decode_line(line, cfg, window)
        except EventError as exc:
            errors.append((n, exc.message))
            continue
        if ev.key is not None:
            first = receipts.setdefault(ev.key, n)
            if first != n:
                errors.append((n, f"receipt {ev.data['receipt']} at {ev.point} repeats line {first}"))
                continue
        events.append((n, ev))
    return events, errors


MAX_REPORTED = 1000
"""Bad lines listed one by one at most; beyond, only counted."""


class FileCheck:
    """A whole events file validated in one streaming pass (bounded memory whatever its
    size): bad lines with their numbers, receipts repeated within the file (their keys are
    kept in a temporary SQLite table, not in memory), the events counted and the content
    hashed for the idempotency keys of :func:`file_events`."""

    def __init__(self, path: str, cfg: Config, window=None, progress=lambda done, total: None):
        import os
        import sqlite3
        self.errors = LineErrors()
        self.bad = 0
        self.events = 0
        digest = hashlib.sha256()
        seen = sqlite3.connect("")                    # a private temporary database on disk
        seen.execute("CREATE TABLE k(key TEXT PRIMARY KEY, line INTEGER)")
        total = os.path.getsize(path)
        done = 0
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                digest.update(line)
                done += len(line)
                if n % 20_000 == 0:
                    progress(done, total)
                if not line.strip() or line.lstrip().startswith(b"#"):
                    continue
                try:
                    ev = decode_line(line, cfg, window or FIXED)
                except EventError as exc:
                    self._bad(n, exc.message)
                    continue
                if ev.key is not None:
                    if seen.execute("INSERT OR IGNORE INTO k VALUES (?, ?)", (ev.key, n)).rowcount == 0:
                        first = seen.execute("SELECT line FROM k WHERE key = ?", (ev.key,)).fetchone()[0]
                        self._bad(n, f"receipt {ev.data['receipt']} at {ev.point} repeats line {first}")
                        continue
                self.events += 1
        progress(total, total)
        seen.close()
        self.digest = digest.hexdigest()[:16]

    def _bad(self, n: int, message: str) -> None:
        self.bad += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append((n, message))


def file_events(path: str, cfg: Config, digest: str, source: str = "import", window=None) -> Iterator[NewEvent]:
    """The events of a file :class:`FileCheck` found good, one at a time, keyed by the
    file's content (importing it twice lands every event once)."""
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith(b"#"):
                continue
            ev = decode_line(line, cfg, window or FIXED)
            if ev.key is None:
                ev.key = f"{source}:{digest}:{n}"
            ev.source = source
            yield ev


def load_file(path: str, cfg: Config, source: str = "import") -> tuple[list[NewEvent], LineErrors]:
    """Decode a whole events file for the journal. Events get idempotency keys from the
    file's content, so importing the same file twice lands every event once."""
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()[:16]
    numbered, errors = read_lines(data.splitlines(), cfg)
    for n, ev in numbered:
        if ev.key is None:
            ev.key = f"{source}:{digest}:{n}"
        ev.source = source
    return [ev for _, ev in numbered], errors
