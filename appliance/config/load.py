"""Load and validate ``appliance.toml``: every error at once, each naming its key path.

The schema (``schema.py``) is the single source of truth. This module walks the TOML
document along msgspec's type information so that errors carry the concrete key path
(``points.till1.min_contact_s``) and a plain-words description of what is expected;
msgspec itself checks every leaf and builds the typed ``Config``.
"""
from __future__ import annotations

import difflib
import json
import os
import stat
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec
from msgspec import inspect as mi

from ..errors import ConfigError
from .remote import overlay, remote_document
from .schema import SECRET_KEYS, WEEKDAYS, Config, CsvLog, Sms

CREDENTIALS_NAME = "appliance-secrets.toml"


@lru_cache(maxsize=1)
def _config_info() -> Any:
    """The schema as msgspec describes it: walked only for a document that does not convert
    (every error with its key path); a valid one skips the 30 ms it takes to build."""
    return mi.type_info(Config)


def read_text(path: Path, what: str = "") -> str:
    """A config or secrets file's text, or a ConfigError saying why it cannot be read."""
    where = f"{what}: " if what else ""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{where}{str(path)[:200]}: cannot read: {exc.strerror or exc}"]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{where}{str(path)[:200]}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x})"]) \
            from None


def load_config(path: str | os.PathLike) -> Config:
    """Read, merge secrets, validate. Raises ConfigError listing every problem."""
    path = Path(path)
    return parse_config(read_text(path), source=str(path), base_dir=path.parent)


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None,
                 remote: bool = True) -> Config:
    """Validate a config file's text (with its secrets). ``remote``: where the file enables
    it and the box holds one, the fleet's remote layer with the pinned keys from this file
    (:mod:`.remote`); a remote layer that does not validate is ignored with a warning."""
    doc = _parse_toml(text, source)
    secrets = _secrets_document(doc, base_dir)
    layer = remote_document(doc) if remote else None
    if layer is not None:
        try:
            return config_from_dict(deep_merge(overlay(layer, doc), secrets), f"{source} + remote layer")
        except ConfigError as exc:
            import logging
            logging.getLogger(__name__).warning("config: the remote layer does not validate (%s); "
                                                "running the local file", "; ".join(exc.errors)[:500])
    if secrets:
        doc = deep_merge(doc, secrets)
    return config_from_dict(doc, source)


def parse_remote(remote_text: str, local_path: str | os.PathLike) -> Config:
    """A remote config document as this box would run it: the TOML text as the remote layer
    over the local file (pinned keys from the local one, its secrets merged). Raises
    ConfigError with every problem and its key path."""
    local_path = Path(local_path)
    remote = _parse_toml(remote_text, "config/desired")
    local = _parse_toml(read_text(local_path), str(local_path))
    secrets = _secrets_document(local, local_path.parent)
    return config_from_dict(deep_merge(overlay(remote, local), secrets), "config/desired")


def redacted(cfg: Config) -> dict:
    """The config as plain data with every secret replaced by ``***`` (secret keys, and the
    user:password part of URLs): for diagnostics bundles and anything that leaves the box."""
    from urllib.parse import urlsplit, urlunsplit

    def walk(x: Any, key: str = "") -> Any:
        if isinstance(x, dict):
            return {k: walk(v, str(k)) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if key in SECRET_KEYS and x:
            return "***"
        if isinstance(x, str) and "://" in x and "@" in x:
            try:
                u = urlsplit(x)
                return urlunsplit(u._replace(netloc="***@" + u.netloc.rsplit("@", 1)[1]))
            except ValueError:
                return "***"
        return x
    return walk(msgspec.to_builtins(cfg))


def config_hash(cfg: Config) -> str:
    """A short fingerprint of a validated config (the core's snapshot, the ``info`` topic)."""
    import hashlib
    return hashlib.sha256(msgspec.json.encode(cfg)).hexdigest()[:16]


def config_from_dict(doc: dict, source: str = "<config>") -> Config:
    errors: list[str] = []
    try:
        cfg = msgspec.convert(doc, Config, str_keys=True)
    except msgspec.ValidationError as e:
        _check(doc, _config_info(), "", errors)
        if not errors:                          # the walk is never more lenient; said all the same
            errors.append(str(e))
    else:
        errors.extend(_cross_check(cfg))
    if errors:
        raise ConfigError(errors, source)
    return _normalise(cfg)


def _parse_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source) from None


def _secrets_document(doc: dict, base_dir: Path | None) -> dict:
    """Secrets from `[device] secrets_file` and from systemd credentials, if present."""
    candidates = []
    name = (doc.get("device") or {}).get("secrets_file") if isinstance(doc.get("device"), dict) else None
    if isinstance(name, str) and name:
        p = Path(name)
        candidates.append(p if p.is_absolute() or base_dir is None else base_dir / p)
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        candidates.append(Path(cred_dir) / CREDENTIALS_NAME)
    merged: dict = {}
    for p in candidates:
        what = "device.secrets_file" if p.name != CREDENTIALS_NAME else "credential"
        try:
            st = p.stat()
        except FileNotFoundError:
            if p.name != CREDENTIALS_NAME:
                raise ConfigError([f"device.secrets_file: {str(p)[:200]} does not exist"]) from None
            continue
        except OSError as exc:
            raise ConfigError([f"{what}: {str(p)[:200]}: {exc.strerror or exc}"]) from None
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError([f"{what}: {str(p)[:200]} is not a regular file"])
        if st.st_mode & 0o007:
            raise ConfigError([f"{what}: {p} is readable by every user of this machine; "
                               f"make it private: chmod o-rwx {p}"])
        merged = deep_merge(merged, _parse_toml(read_text(p, what), str(p)))
    return merged


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# --- walking the document along the schema -------------------------------------------

def _join(path: str, key: Any) -> str:
    key = str(key)
    if not path:
        return key
    if key.replace("_", "").replace("-", "").isalnum():
        return f"{path}.{key}"
    return f'{path}."{key}"'


def _is_secret(path: str) -> bool:
    return path.rsplit(".", 1)[-1].strip('"') in SECRET_KEYS


def _got(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:77] + "..."
    return type(value).__name__


def _bounds(t: Any) -> str:
    parts = []
    if getattr(t, "ge", None) is not None:
        parts.append(f"≥ {_num(t.ge)}")
    if getattr(t, "gt", None) is not None:
        parts.append(f"> {_num(t.gt)}")
    if getattr(t, "le", None) is not None:
        parts.append(f"≤ {_num(t.le)}")
    if getattr(t, "lt", None) is not None:
        parts.append(f"< {_num(t.lt)}")
    return (" " + " and ".join(parts)) if parts else ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


_PATTERN_WORDS = {
    r"^[A-Za-z0-9_.\-]{1,64}$": "an id of 1–64 letters, digits, '_', '.' or '-'",
    r"^[0-9A-Fa-f]{1,16}$": "a hexadecimal remote id (1–16 digits)",
    r"^([01][0-9]|2[0-3]):[0-5][0-9]$": 'a time of day "HH:MM"',
}


def describe(t: Any) -> str:
    """Plain words for what a type info accepts."""
    if isinstance(t, mi.FloatType):
        return "a number" + _bounds(t)
    if isinstance(t, mi.IntType):
        return "an integer" + _bounds(t)
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.StrType):
        if t.pattern:
            return _PATTERN_WORDS.get(t.pattern, f"a string matching {t.pattern}")
        return "a string"
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(_got(v) for v in t.values)
    if isinstance(t, (mi.StructType, mi.DictType)):
        return "a table"
    if isinstance(t, mi.ListType):
        return "an array of " + describe(t.item_type)
    if isinstance(t, mi.UnionType):
        return " or ".join(describe(x) for x in t.types if not isinstance(x, mi.NoneType))
    return "a value"


def _leaf_type(t: Any) -> Any:
    """Rebuild a Python type for msgspec.convert from a leaf type info."""
    import typing
    from msgspec import Meta
    if isinstance(t, mi.FloatType):
        return typing.Annotated[float, Meta(ge=t.ge, gt=t.gt, le=t.le, lt=t.lt)]
    if isinstance(t, mi.IntType):
        return typing.Annotated[int, Meta(ge=t.ge, gt=t.gt, le=t.le, lt=t.lt)]
    if isinstance(t, mi.BoolType):
        return bool
    if isinstance(t, mi.StrType):
        return typing.Annotated[str, Meta(pattern=t.pattern)] if t.pattern else str
    if isinstance(t, mi.LiteralType):
        return typing.Literal[tuple(t.values)]
    return Any


def _check(value: Any, t: Any, path: str, errors: list[str]) -> None:
    if isinstance(t, mi.UnionType):
        non_none = [x for x in t.types if not isinstance(x, mi.NoneType)]
        if value is None and len(non_none) < len(t.types):
            return
        structs = [x for x in non_none if isinstance(x, mi.StructType)]
        if structs and structs[0].tag_field:
            _check_tagged(value, structs, path, errors)
            return
        if len(non_none) == 1:
            _check(value, non_none[0], path, errors)
            return
        if not structs:                         # e.g. a rating class or a value
            for x in non_none:
                sub: list[str] = []
                _check(value, x, path, sub)
                if not sub:
                    return
            errors.append(f"{path}: expected {describe(t)}, got {_got(value)}")
            return
    if isinstance(t, mi.StructType):
        if t.tag_field:
            _check_tagged(value, [t], path, errors)
            return
        _check_struct(value, t, path, errors)
    elif isinstance(t, mi.DictType):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a table, got {_got(value)}")
            return
        for k, v in value.items():
            key_ok = True
            try:
                msgspec.convert(k, _leaf_type(t.key_type), str_keys=True, strict=False)
            except msgspec.ValidationError:
                errors.append(f"{_join(path, k)}: the key must be {describe(t.key_type)}, got {_got(k)}")
                key_ok = False
            if key_ok:
                _check(v, t.value_type, _join(path, k), errors)
    elif isinstance(t, mi.ListType):
        if not isinstance(value, list):
            errors.append(f"{path}: expected {describe(t)}, got {_got(value)}")
            return
        for i, item in enumerate(value):
            _check(item, t.item_type, f"{path}[{i}]", errors)
    else:
        try:
            msgspec.convert(value, _leaf_type(t))
        except msgspec.ValidationError:
            got = "a value that is not shown (a secret)" if _is_secret(path) else _got(value)
            errors.append(f"{path}: expected {describe(t)}, got {got}")


def _check_struct(value: Any, t: mi.StructType, path: str, errors: list[str],
                  skip: tuple[str, ...] = ()) -> None:
    if not isinstance(value, dict):
        errors.append(f"{path or 'the document'}: expected a table, got {_got(value)}")
        return
    fields = {f.encode_name: f for f in t.fields}
    for key in value:
        if key in skip:
            continue
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            known = f"did you mean {hint[0]!r}?" if hint else "known keys: " + ", ".join(sorted(fields))
            errors.append(f"{_join(path, key)}: unknown key ({known})")
    for name, f in fields.items():
        if name in value:
            _check(value[name], f.type, _join(path, name), errors)
        elif f.required:
            errors.append(f"{_join(path, name)}: missing (expected {describe(f.type)})")


def _check_tagged(value: Any, structs: list[mi.StructType], path: str, errors: list[str]) -> None:
    tag_field = structs[0].tag_field
    by_tag = {s.tag: s for s in structs}
    if not isinstance(value, dict):
        errors.append(f"{path}: expected a table, got {_got(value)}")
        return
    tag = value.get(tag_field)
    if not isinstance(tag, str) or tag not in by_tag:
        choices = ", ".join(_got(x) for x in by_tag)
        where = _join(path, tag_field)
        errors.append(f"{where}: expected one of {choices}, got {_got(tag) if tag_field in value else 'nothing'}")
        return
    _check_struct(value, by_tag[tag], path, errors, skip=(tag_field,))


# --- rules that span sections ----------------------------------------------------------

def _cross_check(cfg: Config) -> list[str]:
    errors: list[str] = []
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        ZoneInfo(cfg.time.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(f"time.timezone: unknown time zone {_got(cfg.time.timezone)}")
    for pid, p in cfg.points.items():
        if not p.rating_scale:
            errors.append(f"points.{pid}.rating_scale: must name at least one rating value")
        if p.min_contact_s > p.max_contact_s:
            errors.append(f"points.{pid}.min_contact_s: {_num(p.min_contact_s)} is more than "
                          f"max_contact_s ({_num(p.max_contact_s)})")
        for i, sh in enumerate(p.shifts):
            if sh.start == sh.end:
                errors.append(f"points.{pid}.shifts[{i}]: start and end are equal")
    for rid, r in cfg.remotes.items():
        if r.point not in cfg.points:
            errors.append(f"remotes.{rid}.point: no point {_got(r.point)} (points: {', '.join(cfg.points) or 'none'})")
            continue
        scale = cfg.points[r.point].rating_scale
        for b, m in r.buttons.items():
            if getattr(m, "value", None) is not None and m.value not in scale:
                errors.append(f"remotes.{rid}.buttons.{b}.value: {m.value} is not on the rating scale "
                              f"of point {r.point} ({', '.join(map(str, sorted(scale)))})")
    for did, d in cfg.rf.decoders.items():
        if d.long_us <= d.short_us:
            errors.append(f"rf.decoders.{did}.long_us: must be longer than short_us ({d.short_us})")
        if d.button_bits >= d.bits:
            errors.append(f"rf.decoders.{did}.button_bits: must be fewer than bits ({d.bits})")
    for sid, s in cfg.sensors.items():
        if s.point not in cfg.points:
            errors.append(f"sensors.{sid}.point: no point {_got(s.point)}")
        elif cfg.points[s.point].presence not in ("auto", "sensor"):
            errors.append(f"sensors.{sid}.point: point {s.point} takes its presence from "
                          f"{'the till' if cfg.points[s.point].presence == 'pos' else 'RF'} "
                          f"(points.{s.point}.presence = \"{cfg.points[s.point].presence}\")")
        if s.kind == "distance" and s.echo_pin is None:
            errors.append(f"sensors.{sid}.echo_pin: a distance sensor needs its echo pin")
    errors += _check_notifications(cfg)
    if cfg.sync.broker and not cfg.sync.broker.startswith(("mqtt://", "mqtts://")):
        errors.append(f"sync.broker: expected \"mqtt://host:port\" or \"mqtts://host:port\", got {_got(cfg.sync.broker)}")
    if cfg.pos.listen:
        host, _, port = cfg.pos.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            errors.append(f"pos.listen: expected \"host:port\", got {_got(cfg.pos.listen)}")
        if not cfg.pos.token:
            errors.append("pos.token: the POS API needs a token (put it in the secrets file)")
        elif len(cfg.pos.token) < 16:
            errors.append("pos.token: use at least 16 characters")
    return errors


def _check_notifications(cfg: Config) -> list[str]:
    errors = []
    values = {v for p in cfg.points.values() for v in p.rating_scale}
    for name, n in cfg.notifications.items():
        path = f"notifications.{name}"
        for i, pid in enumerate(n.points):
            if pid not in cfg.points:
                errors.append(f"{path}.points[{i}]: no point {_got(pid)} (points: {', '.join(cfg.points) or 'none'})")
        for i, r in enumerate(n.ratings):
            if isinstance(r, int) and r not in values:
                errors.append(f"{path}.ratings[{i}]: {r} is on no point's rating scale "
                              f"({', '.join(map(str, sorted(values))) or 'none'})")
        for i, w in enumerate(n.windows):
            if (w.above is None) == (w.below is None):
                errors.append(f"{path}.windows[{i}]: give exactly one of above or below")
        for i, s in enumerate(n.silence):
            if s.what == "point" and s.id not in cfg.points:
                errors.append(f"{path}.silence[{i}].id: no point {_got(s.id)}")
            elif s.what == "remote" and s.id.lower() not in {r.lower() for r in cfg.remotes}:
                errors.append(f"{path}.silence[{i}].id: no remote {_got(s.id)}")
            elif s.what == "microphone" and s.id:
                errors.append(f"{path}.silence[{i}].id: the microphone takes no id")
        if isinstance(n, (Sms, CsvLog)) and n.attach != "none":
            errors.append(f"{path}.attach: an {'SMS' if isinstance(n, Sms) else 'CSV log'} carries no audio: "
                          f"use \"none\" (or leave it out)")
        url = getattr(n, "url", None) or getattr(n, "api_base", None)
        if url is not None and not url.startswith(("http://", "https://")):
            key = "url" if hasattr(n, "url") else "api_base"
            errors.append(f"{path}.{key}: expected an http:// or https:// URL, got {_got(url)}")
    return errors


def _normalise(cfg: Config) -> Config:
    """Remote ids are matched case-insensitively: store them lower-case."""
    cfg.remotes = {k.lower(): v for k, v in cfg.remotes.items()}
    for sh in (s for p in cfg.points.values() for s in p.shifts):
        sh.days = [d for d in WEEKDAYS if d in sh.days]
    return cfg
