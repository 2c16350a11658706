"""``appliancectl doctor``: every check a technician would make by hand, each with a verdict
and what to do; ``appliancectl logs``: the daemons' logs (journalctl)."""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import stat
import subprocess
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import clock
from ..config.schema import Config, Sms
from ..journal import JOURNAL_NAME, Journal
from .ui import EXIT_IO, EXIT_OK, EXIT_PARTIAL, Style

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MIN_FREE_MB = 200


@dataclass
class Check:
    name: str
    verdict: str
    detail: str
    fix: str = ""


def check_clock() -> Check:
    if clock.kernel_synced():
        return Check("clock", OK, "synchronised (NTP)")
    return Check("clock", FAIL, "not synchronised: events wait to be corrected before they count",
                 "enable time sync: timedatectl set-ntp true (systemd-timesyncd or chrony) and check the network")


def check_disk(cfg: Config) -> Check:
    d = Path(cfg.device.state_dir)
    try:
        st = os.statvfs(d if d.exists() else d.parent)
    except OSError as exc:
        return Check("disk", FAIL, f"{d}: {exc.strerror or exc}", f"create {d} (tmpfiles.d does it on a box)")
    free_mb = st.f_bavail * st.f_frsize / 1e6
    total_mb = st.f_blocks * st.f_frsize / 1e6
    detail = f"{free_mb:,.0f} MB free of {total_mb:,.0f} MB under {d}"
    if free_mb < MIN_FREE_MB or free_mb < 0.02 * total_mb:
        return Check("disk", FAIL, detail + ": nearly full",
                     "free space (old exports, logs) or lower [retention] quota_mb / [journal] keep_days")
    if free_mb < cfg.retention.quota_mb * 0.25:
        return Check("disk", WARN, detail + f": less than a quarter of the audio quota ({cfg.retention.quota_mb:g} MB)",
                     "lower [retention] quota_mb or use a larger SD card")
    return Check("disk", OK, detail)


def check_journal(cfg: Config) -> Check:
    path = Path(cfg.device.state_dir) / JOURNAL_NAME
    if not path.exists():
        return Check("journal", WARN, f"no journal at {path} yet", "start appliance-core (systemctl start appliance-core)")
    try:
        with Journal(path, readonly=True) as j:
            ok, size = j.integrity_ok(), j.size_bytes()
    except Exception as exc:  # noqa: BLE001 - a broken file is exactly what this check reports
        return Check("journal", FAIL, f"{path}: cannot be opened: {exc}", "restore it from a backup; the cloud has the synced part")
    if not ok:
        return Check("journal", FAIL, f"{path}: integrity check failed", "stop the daemons, copy the file aside, restore from a backup")
    return Check("journal", OK, f"{path}: integrity ok, {size / 1e6:.1f} MB")


def check_secrets(cfg: Config, config_path: str) -> Check:
    name = cfg.device.secrets_file
    if not name:
        return Check("secrets", SKIP, "no [device] secrets_file")
    p = Path(name) if Path(name).is_absolute() else Path(config_path).parent / name
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
    except OSError as exc:
        return Check("secrets", FAIL, f"{p}: {exc.strerror or exc}", "create it, readable by the service users only")
    if mode & 0o007:
        return Check("secrets", FAIL, f"{p} is readable by every user (mode {mode:o})", f"chmod o-rwx {p}")
    if mode & 0o020:
        return Check("secrets", WARN, f"{p} is writable by its group (mode {mode:o})", f"chmod g-w {p}")
    return Check("secrets", OK, f"{p}: mode {mode:o}")


def check_gpio(cfg: Config) -> Check:
    if cfg.rf.source not in ("gpio", "gpiod") and not any(s.kind != "ld2410" for s in cfg.sensors.values()):
        return Check("gpio", SKIP, "no GPIO receiver or sensor configured")
    chips = sorted(glob.glob("/dev/gpiochip*"))
    if not chips:
        return Check("gpio", FAIL, "no /dev/gpiochip*: the 433 MHz receiver and the sensors cannot be read",
                     "run on the Raspberry Pi, or set [rf] source to rtl_433 / nrf24 / none")
    if cfg.rf.source == "gpiod" and cfg.rf.chip not in chips:
        return Check("gpio", FAIL, f"[rf] chip {cfg.rf.chip} does not exist (there are {', '.join(chips)})",
                     "set [rf] chip to the chip of the receiver's line (gpioinfo lists them)")
    return Check("gpio", OK, ", ".join(chips))


def check_microphone(cfg: Config) -> Check:
    if cfg.audio.source != "alsa":
        return Check("microphone", SKIP, f"[audio] source is {cfg.audio.source!r}")
    try:
        import alsaaudio
    except ImportError as exc:
        return Check("microphone", FAIL, f"pyalsaaudio missing: {exc}", "reinstall the package")
    try:
        pcm = alsaaudio.PCM(alsaaudio.PCM_CAPTURE, alsaaudio.PCM_NONBLOCK, device=cfg.audio.device)
        pcm.close()
    except alsaaudio.ALSAAudioError as exc:
        return Check("microphone", FAIL, f"cannot open capture device {cfg.audio.device!r}: {exc}",
                     "plug the microphone in; `arecord -l` lists capture devices; set [audio] device")
    return Check("microphone", OK, f"capture device {cfg.audio.device!r} opens")


def check_radars(cfg: Config) -> list[Check]:
    """Each LD2410 radar's serial port exists."""
    out = []
    for sid, s in cfg.sensors.items():
        if s.kind == "ld2410":
            if Path(s.port).exists():
                out.append(Check(f"radar {sid}", OK, s.port))
            else:
                out.append(Check(f"radar {sid}", FAIL, f"{s.port} does not exist",
                                 "enable the UART (raspi-config: serial port on, console off) or plug the "
                                 "USB adapter in; set [sensors." + sid + "] port"))
    return out


def check_modems(cfg: Config) -> list[Check]:
    out = []
    for name, n in cfg.notifications.items():
        if isinstance(n, Sms):
            if Path(n.device).exists():
                out.append(Check(f"modem {name}", OK, n.device))
            else:
                out.append(Check(f"modem {name}", FAIL, f"{n.device} does not exist",
                                 "plug the USB GSM modem in; `ls /dev/serial/by-id/` names it"))
    return out


def check_broker(cfg: Config, settings, timeout_s: float = 5.0) -> Check:
    """Connect as the sync daemon would (TLS verified, its certificate)."""
    if not cfg.sync.broker:
        return Check("broker", SKIP, "no [sync] broker")
    from ..cloud.mqtt import make_client
    got: dict = {}
    done = threading.Event()

    def on_connect(c, u, f, rc, p):
        got["rc"] = rc
        done.set()
    try:
        c, host, port = make_client(settings, f"doctor-{os.getpid()}")
    except (ValueError, OSError) as exc:
        return Check("broker", FAIL, str(exc), "fix [sync] broker / ca_file / cert_file / key_file")
    c.on_connect = on_connect
    c.on_connect_fail = lambda *a: done.set()
    try:
        c.connect(host, port, keepalive=10)
    except Exception as exc:  # noqa: BLE001 - ssl and socket errors of every kind are the verdict
        return Check("broker", FAIL, f"{host}:{port}: {exc}",
                     "check the network, the broker's address and port, and the TLS files (ca_file, cert_file)")
    c.loop_start()
    done.wait(timeout_s)
    c.loop_stop()
    c.disconnect()
    rc = got.get("rc")
    if rc is None:
        return Check("broker", FAIL, f"{host}:{port}: no answer within {timeout_s:.0f} s",
                     "is it an MQTT broker? is a firewall dropping the traffic?")
    if rc.is_failure:
        return Check("broker", FAIL, f"{host}:{port} refused: {rc}",
                     "check this box's credentials or certificate (appliancectl sync status)")
    return Check("broker", OK, f"{host}:{port} accepts this box (MQTT {settings.protocol}"
                 f"{', TLS' if settings.url.startswith('mqtts') else ''})")


def run_checks(cfg: Config, config_path: str, broker_settings, extra: list[Check] = ()) -> list[Check]:
    checks = [Check("config", OK, f"{config_path}: valid; {len(cfg.points)} point(s), {len(cfg.remotes)} "
                                  f"remote(s), {len(cfg.sensors)} sensor(s), {len(cfg.notifications)} destination(s)"),
              check_secrets(cfg, config_path), check_clock(), check_disk(cfg), check_journal(cfg),
              check_gpio(cfg), check_microphone(cfg), *check_radars(cfg), *check_modems(cfg), check_broker(cfg, broker_settings)]
    return checks + list(extra)


def report(checks: list[Check], as_json: bool) -> int:
    bad = [c for c in checks if c.verdict in (WARN, FAIL)]
    if as_json:
        print(json.dumps({"ok": not bad, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        s = Style()
        marks = {OK: s("ok  ", "green"), WARN: s("warn", "yellow"), FAIL: s("FAIL", "red"), SKIP: s("--  ", "dim")}
        for c in checks:
            print(f"{marks[c.verdict]} {c.name:12} {c.detail}")
            if c.fix and c.verdict in (WARN, FAIL):
                print(f"     {'':12} → {c.fix}")
        print(s("all checks passed", "green") if not bad else
              s(f"{len(bad)} check(s) need attention", "red" if any(c.verdict == FAIL for c in bad) else "yellow"))
    return EXIT_OK if not bad else EXIT_PARTIAL


UNITS = {"core": "appliance-core", "rf": "appliance-rf", "audio": "appliance-audio", "sync": "appliance-sync"}


def cmd_logs(args: argparse.Namespace, cfg: Config | None) -> int:
    exe = shutil.which("journalctl")
    if exe is None:
        print("logs: journalctl is not available here (the daemons log to standard error outside systemd)")
        return EXIT_IO
    units = [UNITS[args.daemon]] if args.daemon else list(UNITS.values())
    cmd = [exe, "--no-pager", "-o", "short-iso", "-n", str(args.lines)] + [f"--unit={u}" for u in units]
    if args.follow:
        cmd.append("--follow")
    if args.since:
        cmd += ["--since", args.since]
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return EXIT_OK
