"""Remote configuration (ARCHITECTURE §7–8), device side.

The retained ``config/desired`` document (``{"version": N, "toml": "..."}``) is validated with
the local file's schema — as the remote layer over the local file, pinned keys kept local
(:mod:`appliance.config.remote`). Invalid: nothing changes; ``config/reported`` carries every
error with its key path. Valid: the layer is written atomically, the state says *pending* with
a deadline, and the daemons whose part changed restart (:mod:`appliance.config.watch`). The
sync daemon that then runs the new config and reaches the cloud marks it *applied* (and keeps
it as the last good one); if none reaches the cloud before the deadline, the last good layer is
put back (*rolled_back*) and the daemons restart on it. The state survives restarts and power
cuts (``remote-config.json``, written atomically)."""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import msgspec

from appliance.cloud.wire import DesiredConfig, ReportedConfig, WireError, decode_desired, encode
from appliance.config import config_hash
from appliance.config.load import parse_remote
from appliance.config.remote import LAST_GOOD_FILE, REMOTE_FILE, STATE_FILE
from appliance.config.watch import request_restart
from appliance.errors import ConfigError
from appliance.files import fsync_path, write_atomic

log = logging.getLogger(__name__)


class RemoteConfig:
    def __init__(self, cfg, config_path: str | Path, clock=time.time):
        self.cfg = cfg
        self.local_path = Path(config_path)
        self.dir = Path(cfg.device.state_dir)
        self.enabled = cfg.provisioning.remote_config
        self.rollback_after_s = cfg.provisioning.rollback_after_s
        self.clock = clock
        self.running_hash = config_hash(cfg)
        self.lock = threading.Lock()
        self.inbox: bytes | None = None         # the latest config/desired (paho's thread puts it here)
        self.state = self._load_state()
        self.dirty = True                       # report on the next connection
        self.applied_now = False                # this process confirmed a pending config

    # --- state ------------------------------------------------------------------------------

    def _load_state(self) -> dict:
        try:
            st = json.loads((self.dir / STATE_FILE).read_text())
            return st if isinstance(st, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self, st: dict) -> None:
        write_atomic(self.dir / STATE_FILE, json.dumps(st, indent=1))
        self.state = st
        self.dirty = True

    def reported(self) -> ReportedConfig:
        st = self.state
        status = st.get("status", "local")
        return ReportedConfig(version=int(st.get("reported_version", st.get("version", 0))), status=status,
                              hash=self.running_hash, applied_version=int(st.get("version", 0)),
                              errors=list(st.get("errors", []))[:200], time=int(st.get("time", 0)))

    # --- paho's thread -------------------------------------------------------------------

    def receive(self, payload: bytes) -> None:
        with self.lock:
            self.inbox = payload

    # --- the sync daemon's thread --------------------------------------------------------

    def step(self, connected: bool) -> bytes | None:
        """Handle what arrived, confirm or roll back a pending config. Returns the
        ``config/reported`` payload to publish (retained) when there is news."""
        with self.lock:
            payload, self.inbox = self.inbox, None
        if payload is not None:
            self.handle(payload)
        st = self.state
        if st.get("status") == "pending":
            if connected and st.get("hash") == self.running_hash:
                self._confirm()
            elif self.clock() > float(st.get("deadline", 0)):
                self._roll_back()
        if self.dirty and connected:
            self.dirty = False
            return encode(self.reported())
        return None

    def handle(self, payload: bytes) -> None:
        try:
            desired = decode_desired(payload)
        except WireError as exc:
            self._reject(0, [str(exc)])
            return
        st = self.state
        if not self.enabled:
            if st.get("reported_version") != desired.version:
                self._reject(desired.version, ["provisioning.remote_config: this box does not take remote "
                                               "configuration (false in its local file)"])
            return
        if desired.version == st.get("version") and st.get("status") in ("applied", "pending"):
            return                               # the retained document again after a reconnect
        if desired.version == st.get("reported_version") and st.get("status") in ("rejected", "rolled_back"):
            return                               # refused already: nothing new to say
        errors, cfg = self.validate(desired)
        if errors:
            self._reject(desired.version, errors)
            return
        self._apply(desired, config_hash(cfg))

    def validate(self, desired: DesiredConfig):
        """(errors, config): the desired TOML as the remote layer over the local file."""
        try:
            return [], parse_remote(desired.toml, self.local_path)
        except ConfigError as exc:
            return exc.errors, None

    def _reject(self, version: int, errors: list[str]) -> None:
        log.warning("remote config: version %d rejected, nothing changed: %s", version, "; ".join(errors)[:1000])
        st = {k: v for k, v in self.state.items() if k in ("version", "hash")}
        st.update(status="rejected", reported_version=version, errors=errors[:200], time=int(self.clock() * 1000),
                  previous_status=self.state.get("status", "local"))
        self._save_state(st)

    def _apply(self, desired: DesiredConfig, new_hash: str) -> None:
        previous = {k: self.state.get(k) for k in ("version", "hash", "status")}
        write_atomic(self.dir / REMOTE_FILE, desired.toml)
        fsync_path(self.dir)
        self._save_state({"version": desired.version, "reported_version": desired.version, "hash": new_hash,
                          "status": "pending", "deadline": self.clock() + self.rollback_after_s,
                          "previous": previous, "time": int(self.clock() * 1000)})
        # the sync daemon confirms a config by running it: it restarts on every one, even one that
        # changes none of its own sections (the other daemons restart when their part changed)
        request_restart(self.dir, "sync")
        log.warning("remote config: version %d written (hash %s); the daemons it affects restart on it; it is "
                    "rolled back unless the box reaches the cloud within %.0f s", desired.version, new_hash,
                    self.rollback_after_s)

    def _confirm(self) -> None:
        st = dict(self.state)
        try:
            write_atomic(self.dir / LAST_GOOD_FILE, (self.dir / REMOTE_FILE).read_bytes())
        except FileNotFoundError:
            pass
        st.update(status="applied", time=int(self.clock() * 1000), errors=[])
        st.pop("deadline", None)
        self._save_state(st)
        self.applied_now = True
        log.info("remote config: version %s applied and the box reached the cloud with it", st.get("version"))

    def _roll_back(self) -> None:
        st = self.state
        good = self.dir / LAST_GOOD_FILE
        if good.exists():
            write_atomic(self.dir / REMOTE_FILE, good.read_bytes())
        else:
            (self.dir / REMOTE_FILE).unlink(missing_ok=True)
        fsync_path(self.dir)
        request_restart(self.dir, "sync")       # on the last good config now
        prev = st.get("previous") or {}
        error = f"the box did not reach the cloud within {self.rollback_after_s:.0f} s with version {st.get('version')}"
        log.error("remote config: %s; rolled back to %s", error,
                  f"version {prev.get('version')}" if good.exists() else "the local file")
        self._save_state({"version": prev.get("version") or 0, "hash": prev.get("hash") or "",
                          "status": "rolled_back", "reported_version": st.get("version", 0), "errors": [error],
                          "time": int(self.clock() * 1000)})


def desired_payload(version: int, toml_text: str) -> bytes:
    return msgspec.json.encode(DesiredConfig(version=version, toml=toml_text))
