"""Fleet commands (ARCHITECTURE §7), device side: ``cmd/<id>`` in, ``cmd/<id>/result`` out.

Every command is journalled (key ``cmd:<id>``) before it runs and its result after (key
``cmd-result:<id>``): a repeated id gets the first result again and never runs twice; a
command whose run a crash or power cut interrupted is not run again (it may have half
happened: a reboot) and says so. A command past its ``expires`` is not run. Quick actions
run on the sync daemon's thread; slow ones (a test notification, a diagnostics bundle) on a
worker thread, so the journal keeps flowing meanwhile."""
from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import platform
import queue
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import msgspec

from appliance import __version__
from appliance import health as box_health
from appliance import vocabulary as v
from appliance.cloud.wire import RESULT, Command, CommandResult, WireError, decode_command, encode, safe_name
from appliance.config import config_hash
from appliance.config.load import redacted
from appliance.config.schema import SECRET_KEYS
from appliance.config.watch import SECTIONS, request_restart
from appliance.ids import uuid7
from appliance.journal import Journal, NewEvent
from appliance.timefmt import iso_ms

from .bundle_delivery import Delivery, DeliveryError

log = logging.getLogger(__name__)

SOURCE = "fleet"
INBOX_MAX = 100
SLOW = ("test_notification", "diagnostics")


def _ms() -> int:
    return int(time.time() * 1000)


class Commands:
    def __init__(self, cfg, journal: Journal, device: str, clock=_ms):
        self.cfg = cfg
        self.journal = journal
        self.device = device
        self.clock = clock
        self.lock = threading.Lock()
        self.inbox: collections.deque = collections.deque()
        self.dropped = 0
        self.done: queue.Queue = queue.Queue()          # results of slow actions (worker thread)
        self.outbox: list[tuple[str, bytes]] = []        # (topic suffix, result payload) to publish
        self.reply: dict[str, object] = {}               # id -> how to answer, when not on cmd/<id>/result
        self.ran = 0
        self.rejected = 0                               # malformed commands, contained and answered
        self.updates = Delivery(cfg, clock)             # the update command: a bundle, then appliance-update
        self.tidied_at = 0.0

    # --- paho's thread ------------------------------------------------------------------------

    def receive(self, cmd_id: str, payload: bytes) -> None:
        with self.lock:
            if len(self.inbox) >= INBOX_MAX:
                self.dropped += 1
                log.warning("commands: more than %d waiting; dropped one (%s)", INBOX_MAX, cmd_id[:64])
                return
            self.inbox.append((cmd_id, payload))

    # --- the sync daemon's thread ---------------------------------------------------------

    def step(self, stage) -> list[tuple[str, bytes]]:
        """Handle what arrived and what finished; returns (topic suffix, payload) to publish."""
        while True:
            with self.lock:
                if not self.inbox:
                    break
                cmd_id, payload = self.inbox.popleft()
            try:
                self.handle(stage, cmd_id, payload)
            except Exception as exc:  # noqa: BLE001 - one command fails alone
                log.exception("commands: %s failed", cmd_id[:64])
                self._finish(cmd_id, "error", error=f"internal error: {type(exc).__name__}")
        while True:
            try:
                cmd_id, status, result, error = self.done.get_nowait()
            except queue.Empty:
                break
            self._finish(cmd_id, status, result, error)
        try:
            ended = self.updates.step(stage.connected.is_set())
        except OSError as exc:                  # a full disk: the update waits, the journal flows
            log.warning("update: %s", exc)
            ended = None
        except Exception as exc:  # noqa: BLE001 - a bad update ends alone, never the sync daemon
            log.exception("update: failed")
            ended = self.updates.abandon(f"internal error: {type(exc).__name__}")
        if ended is not None:
            self._finish(*ended)
        if time.monotonic() - self.tidied_at > 3600:
            self.tidied_at = time.monotonic()
            self.updates.tidy()
        out, self.outbox = self.outbox, []
        return out

    def handle(self, stage, cmd_id: str, payload: bytes) -> None:
        if not safe_name(cmd_id):
            self.rejected += 1
            log.warning("commands: ignored a command with a bad id")
            return
        try:
            cmd = decode_command(payload)
        except WireError as exc:
            self.rejected += 1
            log.warning("commands: rejected %s: %s", cmd_id, exc)
            self._publish(CommandResult(id=cmd_id, status="rejected", error=str(exc)[:1000], time=self.clock()))
            return
        if cmd.id != cmd_id:
            self.rejected += 1
            self._publish(CommandResult(id=cmd_id, status="rejected", error="the payload's id is not the topic's",
                                        time=self.clock()))
            return
        if not self.cfg.provisioning.commands:
            self._publish(CommandResult(id=cmd_id, status="rejected", time=self.clock(),
                                        error="commands are off on this box ([provisioning] commands = false)"))
            return
        prior = self.journal.by_key(f"cmd-result:{cmd.id}")
        if prior is not None:                    # run once: the same answer again
            d = v.read(prior, v.CommandDone)
            self._publish(CommandResult(id=d.id, status=d.status, result=d.result, error=d.error, time=prior.ts))
            return
        if self.updates.job is not None and self.updates.job["id"] == cmd.id:
            return                               # the same update again: it is under way
        if self.journal.by_key(f"cmd:{cmd.id}") is not None:
            self._finish(cmd.id, "error", error="interrupted by a restart of the box; not run again")
            return
        now = self.clock()
        self.journal.append(v.CommandReceived(id=cmd.id, action=cmd.action, args=cmd.args, expires=cmd.expires)
                            .as_event(now, None, SOURCE, f"cmd:{cmd.id}"))
        if cmd.expires and now > cmd.expires:
            self._finish(cmd.id, "expired", error=f"expired at {iso_ms(cmd.expires)}; not run")
            return
        self.ran += 1
        log.info("commands: %s %s %s", cmd.id, cmd.action, json.dumps(cmd.args)[:200])
        if cmd.action == "update":              # answered when appliance-update.service is done
            try:
                self.updates.start(cmd.id, cmd.args, cmd.expires)
            except (DeliveryError, OSError) as exc:
                self._finish(cmd.id, "error", error=str(exc))
            return
        if cmd.action in SLOW:
            threading.Thread(target=self._slow, args=(cmd,), name=f"cmd-{cmd.action}", daemon=True).start()
            return
        try:
            status, result, error = "ok", self._run(stage, cmd), ""
        except CommandError as exc:
            status, result, error = "error", {}, str(exc)
        self._finish(cmd.id, status, result, error)
        if cmd.action == "reboot" and status == "ok":
            self._reboot()

    def _finish(self, cmd_id: str, status: str, result: dict | None = None, error: str = "") -> None:
        now = self.clock()
        self.journal.append(v.CommandDone(id=cmd_id, status=status, result=result or {}, error=error[:1000])
                            .as_event(now, None, SOURCE, f"cmd-result:{cmd_id}"))
        self._publish(CommandResult(id=cmd_id, status=status, result=result or {}, error=error[:1000], time=now))

    def _publish(self, r: CommandResult) -> None:
        answer = self.reply.pop(r.id, None)
        self.outbox.append(answer(r) if answer else (f"cmd/{r.id}/{RESULT}", encode(r)))

    # --- actions --------------------------------------------------------------------------

    def _run(self, stage, cmd: Command) -> dict:
        a = cmd.args
        if cmd.action == "restart":
            daemon = a.get("daemon")
            if daemon not in SECTIONS:
                raise CommandError(f"args.daemon: one of {', '.join(SECTIONS)}")
            request_restart(self.cfg.device.state_dir, daemon)
            return {"daemon": daemon}
        if cmd.action == "reboot":
            if not self.cfg.provisioning.reboot_command:
                raise CommandError("no [provisioning] reboot_command on this box")
            return {"command": self.cfg.provisioning.reboot_command}
        if cmd.action == "resync":
            seq = a.get("from_seq")
            if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < 2**53:
                raise CommandError("args.from_seq: a journal sequence number (an integer ≥ 1)")
            return {"from_seq": stage.resend_from(seq), "last_seq": self.journal.last_seq()}
        if cmd.action == "set_owner":
            point, staff = a.get("point"), a.get("staff")
            if point not in self.cfg.points:
                raise CommandError(f"args.point: no point {str(point)[:64]!r} (points: {', '.join(self.cfg.points)})")
            if not isinstance(staff, str) or not 1 <= len(staff) <= 64:
                raise CommandError("args.staff: the owner's name (1–64 characters)")
            now = self.clock()
            self.journal.append(NewEvent(v.STAFF, now, msgspec.to_builtins(v.StaffChange(staff=staff)), point,
                                         SOURCE, f"cmd-staff:{cmd.id}"))
            return {"point": point, "staff": staff, "since": iso_ms(now)}
        raise CommandError(f"unknown action {cmd.action!r}")

    def _reboot(self) -> None:
        try:
            subprocess.Popen(self.cfg.provisioning.reboot_command, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            log.error("commands: the reboot command could not start: %s", exc)

    def _slow(self, cmd: Command) -> None:
        try:
            if cmd.action == "test_notification":
                result = self._test_notification(cmd.args)
            else:
                result = self._diagnostics(cmd)
            self.done.put((cmd.id, "ok", result, ""))
        except CommandError as exc:
            self.done.put((cmd.id, "error", {}, str(exc)))
        except Exception as exc:  # noqa: BLE001 - the worker reports, never dies silently
            log.exception("commands: %s failed", cmd.action)
            self.done.put((cmd.id, "error", {}, f"internal error: {type(exc).__name__}"))

    def _test_notification(self, a: dict) -> dict:
        from appliance.notify.destinations import DeliveryError, open_destination
        from appliance.routing import test_message
        name = a.get("destination")
        if name not in self.cfg.notifications:
            raise CommandError(f"args.destination: no destination {str(name)[:64]!r} "
                               f"(configured: {', '.join(self.cfg.notifications) or 'none'})")
        t0 = time.monotonic()
        try:
            open_destination(self.cfg.notifications[name]).send(test_message(name, self.device, self.clock()), None)
        except DeliveryError as exc:
            raise CommandError(f"{name}: not delivered: {exc}") from None
        return {"destination": name, "seconds": round(time.monotonic() - t0, 3)}

    def _diagnostics(self, cmd: Command) -> dict:
        """A bundle (tar.gz: versions, config hash, redacted config, health, journal stats,
        the last log lines with secrets scrubbed) written as a clip: uploaded like one."""
        jr = Journal.in_dir(self.cfg.device.state_dir, readonly=True)   # this thread's own connection
        try:
            doc = {"device": self.device, "time": iso_ms(self.clock()), "command": cmd.id,
                   "versions": {"appliance": __version__, "python": platform.python_version(),
                                "platform": platform.platform()},
                   "config_hash": config_hash(self.cfg), "config": redacted(self.cfg),
                   "health": box_health.report(self.cfg, jr, self.device),
                   "journal": {"last_seq": jr.last_seq(), "size_bytes": jr.size_bytes(),
                               "by_type": jr.count_by_type(), "stages": jr.stages()}}
        finally:
            jr.close()
        logs = scrub(recent_logs(self.cfg.provisioning.diagnostics_log_lines), secret_values(self.cfg))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, data in (("diagnostics.json", json.dumps(doc, indent=1, default=str).encode()),
                               ("log.txt", logs.encode())):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, io.BytesIO(data))
        data = buf.getvalue()
        now = self.clock()
        clip_id = uuid7(now)
        file = f"diagnostics-{clip_id}.tar.gz"
        clips = Path(self.cfg.device.state_dir) / "clips"
        clips.mkdir(parents=True, exist_ok=True)
        from appliance.files import write_atomic
        write_atomic(clips / file, data)
        digest = hashlib.sha256(data).hexdigest()
        jw = Journal.in_dir(self.cfg.device.state_dir)
        try:
            jw.append(v.Clip(clip=clip_id, kind="diagnostics", file=file, start=iso_ms(now), end=iso_ms(now),
                             duration_s=0.0, format="tar.gz", size=len(data), sha256=digest)
                      .as_event(now, None, SOURCE, f"cmd-clip:{cmd.id}"))
        finally:
            jw.close()
        return {"clip": clip_id, "file": file, "size": len(data), "sha256": digest}


class CommandError(Exception):
    """A command that cannot run as given (the message says what to fix)."""


def recent_logs(lines: int) -> str:
    if lines <= 0:
        return ""
    exe = shutil.which("journalctl")
    if exe is None:
        return "(journalctl is not available on this machine)\n"
    try:
        r = subprocess.run([exe, "--no-pager", "-o", "short-iso", "-n", str(lines), "-u", "appliance-*"],
                           capture_output=True, text=True, timeout=20)
        return r.stdout or r.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(journalctl failed: {exc})\n"


def secret_values(cfg) -> list[str]:
    found: list[str] = []

    def walk(x, key=""):
        if isinstance(x, dict):
            for k, val in x.items():
                walk(val, str(k))
        elif isinstance(x, list):
            for val in x:
                walk(val)
        elif isinstance(x, str) and len(x) >= 4 and key in SECRET_KEYS:
            found.append(x)
    walk(msgspec.to_builtins(cfg))
    return found


def scrub(text: str, secrets: list[str]) -> str:
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, "***")
    return text
