"""The remote configuration layer (ARCHITECTURE §7–8).

A box with ``[provisioning] remote_config = true`` runs the configuration the fleet sent on
``config/desired`` — stored as ``<state_dir>/remote-config.toml`` — with every *pinned* key
taken from the local file instead (``device`` and ``provisioning`` always, the
``[provisioning] pinned`` key paths besides), so no remote change can cut a box off. The local
file stays the technician's; the remote layer is written only by the sync daemon, only after
it validated with the same schema, and atomically. A remote layer that no longer validates
(after an upgrade, say) is ignored with a warning: the box always starts.
"""
from __future__ import annotations

import copy
import logging
import tomllib
from pathlib import Path
from typing import Any

from .schema import DEFAULT_PINNED

log = logging.getLogger(__name__)

REMOTE_FILE = "remote-config.toml"
LAST_GOOD_FILE = "remote-config.last-good.toml"
STATE_FILE = "remote-config.json"
ALWAYS_PINNED = ("device", "provisioning", "update")
_MISSING = object()


def _get(doc: dict, path: list[str]) -> Any:
    for k in path:
        if not isinstance(doc, dict) or k not in doc:
            return _MISSING
        doc = doc[k]
    return doc


def _set(doc: dict, path: list[str], value: Any) -> None:
    for k in path[:-1]:
        nxt = doc.get(k)
        if not isinstance(nxt, dict):
            if value is _MISSING:
                return
            nxt = doc[k] = {}
        doc = nxt
    if value is _MISSING:
        doc.pop(path[-1], None)
    else:
        doc[path[-1]] = copy.deepcopy(value)


def pinned_paths(local: dict) -> list[str]:
    prov = local.get("provisioning") if isinstance(local.get("provisioning"), dict) else {}
    pins = prov.get("pinned", DEFAULT_PINNED)
    pins = [p for p in pins if isinstance(p, str)] if isinstance(pins, list) else list(DEFAULT_PINNED)
    return list(ALWAYS_PINNED) + pins


def overlay(remote: dict, local: dict) -> dict:
    """The remote document with every pinned key path as the local one has it (present or
    absent)."""
    out = copy.deepcopy(remote)
    for path in pinned_paths(local):
        _set(out, path.split("."), _get(local, path.split(".")))
    return out


def enabled(local: dict) -> bool:
    prov = local.get("provisioning")
    return isinstance(prov, dict) and prov.get("remote_config") is True


def state_dir(local: dict) -> Path:
    dev = local.get("device") if isinstance(local.get("device"), dict) else {}
    sd = dev.get("state_dir", "/var/lib/appliance")
    return Path(sd if isinstance(sd, str) else "/var/lib/appliance")


def remote_document(local: dict) -> dict | None:
    """The stored remote layer, when this box takes one and has one."""
    if not enabled(local):
        return None
    path = state_dir(local) / REMOTE_FILE
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        log.warning("config: the remote layer %s cannot be read (%s); running the local file", path, exc)
        return None
