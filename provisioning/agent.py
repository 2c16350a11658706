"""The sync daemon with the fleet agent (``appliancectl run sync``): enrolment by claim
before the first connection, then on the same MQTT connection as the journal: remote
configuration (``config/desired`` → ``config/reported``), commands (``cmd/<id>`` →
``cmd/<id>/result``) and certificate renewal (``csr`` → ``cert``)."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from appliance.cloud.sync import Extension, SyncStage
from appliance.cloud.wire import CERT, CMD, CONFIG_DESIRED, CONFIG_REPORTED, CSR, CsrRequest, WireError, decode_cert, encode
from appliance.config.schema import Config
from appliance.ids import settle_device_id
from appliance.journal import Journal

from .bundle_delivery import TOPIC as UPDATE_TOPIC
from .commands import Commands
from .enrol import claim_configured, device_settings, enrol
from .identity import Identity, IdentityError, identity_dir
from .remote_config import RemoteConfig

log = logging.getLogger(__name__)

RENEW_CHECK_S = 60.0              # how often the certificate's expiry is looked at
RENEW_RETRY_S = 600.0
INFO_PROGRESS_S = 10.0            # an update's chunk count in the retained info at most this often


class Agent(Extension):
    topics = (CONFIG_DESIRED, f"{CMD}/+", CERT, f"{UPDATE_TOPIC}/+/+")

    def __init__(self, cfg: Config, journal: Journal, device: str, config_path: str | Path | None,
                 identity: Identity | None = None):
        self.cfg = cfg
        self.device = device
        self.remote = RemoteConfig(cfg, config_path) if config_path else None
        self.commands = Commands(cfg, journal, device)
        self.identity = identity
        self.renew_asked_at = -1e18
        self.renew_checked_at = -1e18
        self.lock = threading.Lock()
        self.new_cert: bytes | None = None
        self.renewed = 0
        self.update_seen: dict | None = None
        self.update_busy = False
        self.info_at = 0.0

    # --- paho's thread ------------------------------------------------------------------------

    def on_connected(self, stage: SyncStage) -> None:
        if self.remote is not None:
            self.remote.dirty = True             # say what runs, on every connection

    def on_message(self, stage: SyncStage, suffix: str, payload: bytes) -> None:
        if suffix == CONFIG_DESIRED:
            if self.remote is not None:
                self.remote.receive(payload)
        elif suffix.startswith(f"{CMD}/") and suffix.count("/") == 1:
            self.commands.receive(suffix.split("/", 1)[1], payload)
        elif suffix == CERT:
            with self.lock:
                self.new_cert = payload
        elif suffix.startswith(f"{UPDATE_TOPIC}/") and suffix.count("/") == 2:
            _, sha, part = suffix.split("/")
            try:
                self.commands.updates.receive_chunk(sha, part, payload)
            except (ValueError, OSError) as exc:        # one bad chunk fails alone
                stage.rejected += 1
                log.warning("update: a chunk on %s refused: %s", suffix[:120], exc)

    def info(self) -> dict:
        return {"update": self.commands.updates.summary()}

    # --- the stage's thread ---------------------------------------------------------------

    def step(self, stage: SyncStage) -> None:
        connected = stage.connected.is_set()
        if self.remote is not None:
            report = self.remote.step(connected)
            if report is not None:
                stage.publish(CONFIG_REPORTED, report, retain=True)
        for suffix, payload in self.commands.step(stage):
            stage.publish(suffix, payload)
        busy = self.commands.updates.job is not None
        if connected and (busy or self.update_busy):      # only while an update is under way or just ended:
            self.update_busy = busy                        # an idle box reads no update state each tick
            self._publish_update(stage)
        if self.identity is not None and not self.cfg.sync.cert_file:
            self._renewal(stage, connected)

    def _publish_update(self, stage: SyncStage) -> None:
        """An update's progress in the retained info: a new phase at once, chunk counts every 10 s."""
        update = self.commands.updates.summary()
        if update == self.update_seen:
            return
        seen = self.update_seen or {}
        phase_changed = (update.get("phase"), update.get("id")) != (seen.get("phase"), seen.get("id"))
        if phase_changed or time.monotonic() - self.info_at >= INFO_PROGRESS_S:
            self.update_seen, self.info_at = update, time.monotonic()
            stage.publish_info()

    def _renewal(self, stage: SyncStage, connected: bool) -> None:
        with self.lock:
            answer, self.new_cert = self.new_cert, None
        if answer is not None:
            self._install(stage, answer)
            return
        now = time.monotonic()
        if not connected or now - self.renew_checked_at < RENEW_CHECK_S:
            return
        self.renew_checked_at = now
        left = self.identity.expires_in_s()
        if left is None or left > self.cfg.provisioning.renew_before_days * 86400:
            return
        if now - self.renew_asked_at < RENEW_RETRY_S:
            return
        self.renew_asked_at = now
        log.info("identity: the certificate expires in %.1f days; asking for a new one", left / 86400)
        stage.publish(CSR, encode(CsrRequest(device=self.device, csr=self.identity.csr(self.device))))

    def _install(self, stage: SyncStage, payload: bytes) -> None:
        try:
            resp = decode_cert(payload)
            if resp.error:
                log.error("identity: renewal refused: %s", resp.error)
                return
            self.identity.install(self.device, resp.cert, resp.ca)
        except (WireError, IdentityError) as exc:
            log.error("identity: a bad renewal answer: %s", exc)
            return
        self.renewed += 1
        log.info("identity: renewed; reconnecting with the new certificate (the journal's place is kept)")
        stage.reconnect_with(device_settings(self.cfg, self.identity))


def build(cfg: Config, journal: Journal, config_path: str | Path | None,
          stop: threading.Event | None = None) -> SyncStage | None:
    """The sync stage with its agent; enrols first when a claim is configured and the box
    has no certificate yet (None if stopped meanwhile)."""
    from appliance.cloud.sync import STAGE
    device = settle_device_id(cfg, synced_before=journal.cursor(STAGE) > 0)
    identity = Identity(identity_dir(cfg))
    if claim_configured(cfg) and not cfg.sync.cert_file and not identity.enrolled():
        log.info("enrolment: %s has no certificate yet; claiming one", device)
        if not enrol(cfg, device, identity, stop or threading.Event()):
            return None
    agent = Agent(cfg, journal, device, config_path, identity if claim_configured(cfg) else None)
    extensions: list = [agent]
    if cfg.home_assistant.enabled:
        from .home_assistant import HomeAssistant
        extensions.append(HomeAssistant(cfg, journal, device, agent.commands))
    return SyncStage(cfg, journal, device, settings=device_settings(cfg, identity), extensions=extensions)


def run(cfg: Config, stop: threading.Event | None = None, config_path: str | Path | None = None) -> int:
    """``appliancectl run sync``."""
    from appliance.cloud.sync import loop
    if not cfg.sync.broker:             # a box without a cloud: idle and READY, not restarted every few seconds
        from appliance.daemon import run_loop
        log.warning("sync: [sync] broker is empty: nothing to sync to (idle until the configuration names one)")
        return run_loop("sync", lambda: False, tick_s=5.0, stop=stop, ready_status="sync: no broker configured",
                        status=lambda: "sync: no [sync] broker configured: the journal stays on the box")
    stop = stop or threading.Event()
    journal = Journal.in_dir(cfg.device.state_dir)
    stage = build(cfg, journal, config_path, stop)
    if stage is None:
        journal.close()
        return 0
    return loop(stage, journal, stop)
