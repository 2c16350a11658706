"""``appliancectl``: the technician's and the systemd units' one front door.

Exit codes: 0 ok; 1 done, but some input lines were rejected (replay); 2 bad usage,
bad config or bad input (nothing was written); 3 the journal or a file could not be used.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from .. import __version__
from ..config import DEFAULT_PATH, load_config
from ..config.schema import Config
from ..errors import ApplianceError, ConfigError, JournalError
from ..logs import setup as setup_logging
from .report import GROUPINGS
from .ui import EXIT_BAD_INPUT, EXIT_IO, EXIT_OK, EXIT_PARTIAL, Style, json_line, printable  # noqa: F401


def config_path(args: argparse.Namespace) -> str:
    """-c/--config, else $APPLIANCE_CONFIG, else the default path."""
    return getattr(args, "config", None) or os.environ.get("APPLIANCE_CONFIG") or DEFAULT_PATH


def _journal(cfg: Config, readonly: bool = False):
    from ..journal import Journal
    return Journal.in_dir(cfg.device.state_dir, readonly=readonly)


# --- commands --------------------------------------------------------------------------

def cmd_config_check(args: argparse.Namespace, cfg: Config | None) -> int:
    path = args.file or args.config_path
    cfg = load_config(path)
    n_buttons = sum(len(r.buttons) for r in cfg.remotes.values())
    print(f"{path}: ok — {len(cfg.points)} point(s), {len(cfg.remotes)} remote(s) "
          f"with {n_buttons} button(s), {len(cfg.sensors)} sensor(s), "
          f"{len(cfg.notifications)} notification sink(s); state in {cfg.device.state_dir}")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace, cfg: Config | None) -> int:
    from ..replay import replay_file, write_outputs
    t0 = time.perf_counter()
    try:
        inputs: list = []
        records, errors, n = replay_file(cfg, args.events, inputs)
    except OSError as exc:
        print(f"{args.events}: cannot read: {exc.strerror}", file=sys.stderr)
        return EXIT_IO
    clips = None
    if args.audio:
        if not args.audio_start:
            print("--audio needs --audio-start (the ISO time of the recording's first sample)", file=sys.stderr)
            return EXIT_BAD_INPUT
        from audio_capture.replay import write_clips, write_press_index   # dispatched to audio_capture
        from audio_capture.sources.base import AudioError
        from ..timefmt import parse_ts
        try:
            start = parse_ts(args.audio_start)
        except ValueError as exc:
            print(f"--audio-start: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        try:
            clips, presses = write_clips(cfg, records, inputs, args.audio, start, Path(args.out), args.audio_format)
        except AudioError as exc:
            print(f"--audio: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        write_press_index(Path(args.out), presses)
    metrics = write_outputs(cfg, records, args.out, clips)
    dt = time.perf_counter() - t0
    if errors:
        print(errors.report(args.events), file=sys.stderr)
        print(f"{len(errors)} line(s) rejected; the other {n} events were replayed", file=sys.stderr)
    o = metrics["overall"]
    print(f"replayed {n} events in {dt:.2f} s: {o['contacts']} contacts, {o['ratings']} ratings "
          f"({o['orphan_ratings']} orphan, {o['misuse']} misuse), {o['receipts']} receipts "
          f"-> {args.out}/contacts.jsonl, {args.out}/metrics.json")
    return EXIT_PARTIAL if errors else EXIT_OK


def progress_bar(what: str):
    """A progress callback(done, total) drawing on stderr when it is a terminal."""
    tty = sys.stderr.isatty()

    def draw(done: int, total: int) -> None:
        if tty:
            end = "\n" if done >= total else ""
            print(f"\r{what}: {100 * done // max(total, 1):3d} %", end=end, file=sys.stderr, flush=True)
    return draw


def cmd_journal_import(args: argparse.Namespace, cfg: Config | None) -> int:
    from ..events import FileCheck, file_events
    try:
        check = FileCheck(args.file, cfg, progress=progress_bar("checking"))
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return EXIT_IO
    if check.bad:
        print(check.errors.report(args.file), file=sys.stderr)
        more = check.bad - len(check.errors)
        if more:
            print(f"... and {more} more", file=sys.stderr)
        print(f"{check.bad} bad line(s): nothing imported", file=sys.stderr)
        return EXIT_BAD_INPUT
    bar = progress_bar("importing")
    counted = 0

    def events():
        nonlocal counted
        for ev in file_events(args.file, cfg, check.digest):
            counted += 1
            if counted % 20_000 == 0:
                bar(counted, check.events)
            yield ev
    with _journal(cfg) as j:
        new, dup = j.append_stream(events())
    bar(check.events, check.events)
    print(f"imported {new} event(s) into {j.path}" + (f" ({dup} already there, skipped)" if dup else ""))
    return EXIT_OK


def cmd_run(args: argparse.Namespace, cfg: Config | None) -> int:
    """A daemon, with a watcher that restarts it (exit 0; systemd starts it again) when its
    part of the configuration changed or a restart was requested."""
    import threading

    from ..config.watch import ConfigWatch
    import signal
    stop = threading.Event()
    watch = ConfigWatch(args.config_path, cfg, args.daemon, stop)
    watch.start()
    signal.signal(signal.SIGHUP, lambda *_: watch.reload())     # systemctl reload appliance-<daemon>
    if args.daemon == "core":
        from ..core_daemon import run
        return run(cfg, stop)
    if args.daemon == "rf":
        from rf_receiver.daemon import run as run_rf   # the front door dispatches to rf_receiver
        return run_rf(cfg, stop, pulses_file=args.pulses)
    if args.daemon == "sync":
        from provisioning.agent import run as run_sync   # ... to provisioning (sync + fleet agent)
        return run_sync(cfg, stop, config_path=args.config_path)
    if args.daemon == "audio":
        from audio_capture.daemon import run as run_audio   # ... and to audio_capture
        return run_audio(cfg, stop, wav=args.wav)
    raise AssertionError(args.daemon)   # argparse allows only the four


def _not_derived(j) -> int:
    """Input events the core has not taken yet (a report shows what it derived)."""
    from .. import vocabulary as v
    return j.count_after(j.cursor("core"), v.CORE_INPUT_TYPES)


def _period(args: argparse.Namespace, cfg: Config) -> tuple[int | None, int | None]:
    """--from/--to as UTC ms; a BadBound names what is wrong."""
    from .report import parse_bound
    try:
        return parse_bound(args.from_, cfg.time.timezone), parse_bound(getattr(args, "to", None), cfg.time.timezone)
    except ValueError as exc:
        raise BadBound(str(exc)) from None


class BadBound(ApplianceError, ValueError):
    """A --from or --to that is not a date or a time."""


def cmd_report(args: argparse.Namespace, cfg: Config | None) -> int:
    from .report import grouped_journal, render
    lo, hi = _period(args, cfg)
    with _journal(cfg, readonly=True) as j:
        groups = grouped_journal(cfg, j, args.by, lo, hi)
        behind = _not_derived(j)
    print(render(groups, args.by, args.format, Style()))
    if behind:
        print(f"note: {behind} input event(s) are not derived yet and not in this report "
              "(is appliance-core running? `appliancectl rebuild` derives them now)", file=sys.stderr)
    return EXIT_OK


def cmd_rebuild(args: argparse.Namespace, cfg: Config | None) -> int:
    from ..clock import clock_from_env
    from ..rebuild import CoreRunning, RawPruned, rebuild
    since, _ = _period(args, cfg)
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            print(f"\rderiving: {100 * done // max(total, 1):3d} % ({done:,} / {total:,} events)", end="",
                  file=sys.stderr, flush=True)
    with _journal(cfg) as j:
        try:
            out = rebuild(cfg, j, since, clock_from_env().now_ms(), progress)
        except (CoreRunning, RawPruned) as exc:
            print(f"rebuild: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    if tty:
        print(file=sys.stderr)
    print(f"rebuilt the core's records{' from ' + out['from'] if out['from'] else ''}: {out['deleted']} removed, "
          f"{out['derived']} derived")
    return EXIT_OK


def cmd_export_ratings(args: argparse.Namespace, cfg: Config | None) -> int:
    from .report import RATING_LOG_HEADER, rating_log_rows
    if not args.csv:
        print("choose a format: --csv", file=sys.stderr)
        return EXIT_BAD_INPUT
    import csv
    lo, hi = _period(args, cfg)
    n = 0
    with _journal(cfg, readonly=True) as j, contextlib.ExitStack() as stack:
        if args.out:
            from ..files import atomic_write
            out = stack.enter_context(atomic_write(Path(args.out)))
        else:
            out = sys.stdout
        w = csv.writer(out, lineterminator="\n")
        w.writerow(RATING_LOG_HEADER)
        for row in rating_log_rows(j, lo, hi):       # streamed: bounded memory for any journal
            w.writerow(row)
            n += 1
    if args.out:
        print(f"wrote {n} ratings to {args.out}", file=sys.stderr)
    return EXIT_OK


def format_event(ev, style: Style) -> str:
    from .. import vocabulary as v
    from ..timefmt import iso_ms
    colours = {v.RATING: "yellow", v.SALE: "green", v.PRESENCE: "cyan", v.SENSOR: "cyan",
               v.STAFF: "magenta", v.CALL: "red", v.CONTACT: "bold"}
    d = dict(ev.data)
    detail = " ".join(f"{k}={v}" for k, v in d.items() if v is not None and k not in ("opened", "closed"))
    if ev.type == v.CONTACT:
        c = v.read(ev, v.ContactSettled)
        detail = f"{c.duration_s} s owner={c.owner} rating={c.rating} sales={len(c.sales)} [{', '.join(c.tags)}]"
    return (f"{style(ev.seq, 'grey'):>6} {iso_ms(ev.ts)[11:23]} {printable(ev.point or '-'):8} "
            f"{style(printable(ev.type), colours.get(ev.type, 'dim')):14} {printable(detail)}")


def cmd_tail(args: argparse.Namespace, cfg: Config | None) -> int:
    from ..journal import JOURNAL_NAME, Journal
    style = Style()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    path = Path(cfg.device.state_dir) / JOURNAL_NAME
    while not path.exists():
        if not args.follow or (deadline and time.monotonic() > deadline):
            print(f"no journal at {path}", file=sys.stderr)
            return EXIT_IO
        time.sleep(0.2)
    shown = 0
    with Journal(path, readonly=True) as j:
        after = max(0, j.last_seq() - args.lines)
        while True:
            rows = j.read(after, 500)
            for ev in rows:
                print(json_line(ev.as_dict()) if args.json else format_event(ev, style), flush=True)
                after = ev.seq
                shown += 1
                if args.count and shown >= args.count:
                    return EXIT_OK
            if len(rows) == 500:                  # more is there already: no waiting
                continue
            if not args.follow or (deadline and time.monotonic() > deadline):
                return EXIT_OK
            time.sleep(0.2)


def cmd_sensor_watch(args: argparse.Namespace, cfg: Config | None) -> int:
    """For installation: each GPIO sensor's changes as appliance-rf journals them (with the
    distance an ultrasonic sensor measured), and the contacts the core makes of them."""
    from .. import vocabulary as v
    from ..journal import JOURNAL_NAME, Journal
    from ..timefmt import iso_ms
    if not cfg.sensors:
        print("sensor watch: no [sensors.*] in the config", file=sys.stderr)
        return EXIT_BAD_INPUT
    points = {s.point for s in cfg.sensors.values()}
    path = Path(cfg.device.state_dir) / JOURNAL_NAME
    if not path.exists():
        print(f"no journal at {path}", file=sys.stderr)
        return EXIT_IO
    style = Style()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    print(f"watching {', '.join(f'{sid} ({s.kind}, GPIO{s.pin}, {s.point})' for sid, s in cfg.sensors.items())}; "
          f"walk past each one (Ctrl-C ends)", flush=True)
    shown = 0
    types = (v.SENSOR, v.CONTACT_OPENED, v.CONTACT)
    with Journal(path, readonly=True) as j:
        after = j.last_seq()
        while True:
            for ev in j.read(after, 500, types):
                after = ev.seq
                if ev.point not in points:
                    continue
                t = iso_ms(ev.ts)[11:23]
                if ev.type == v.SENSOR:
                    what = style("present", "green") if ev.data.get("present") else style("clear", "grey")
                    dist = f" at {ev.data['distance_m']:.2f} m" if isinstance(ev.data.get("distance_m"), float) else ""
                    line = f"{t} {ev.point:12} sensor {ev.data.get('sensor', '?')}: {what}{dist}"
                elif ev.type == v.CONTACT_OPENED:
                    line = f"{t} {ev.point:12} {style('contact opened', 'bold')}"
                else:
                    line = f"{t} {ev.point:12} {style('contact', 'bold')} of {ev.data.get('duration_s', 0):.1f} s counted"
                print(line, flush=True)
                shown += 1
                if args.count and shown >= args.count:
                    return EXIT_OK
            if deadline and time.monotonic() > deadline:
                return EXIT_OK
            time.sleep(0.1)


def cmd_status(args: argparse.Namespace, cfg: Config | None) -> int:
    from . import status
    st = status.collect(cfg, args.config_path)
    if args.json:
        print(json.dumps(st, indent=2))
        return EXIT_OK
    print("\n".join(status.render(st, Style())))
    return EXIT_OK


def cmd_sync_status(args: argparse.Namespace, cfg: Config | None) -> int:
    from .. import health
    from ..journal import JOURNAL_NAME, Journal
    from ..timefmt import iso_ms
    path = Path(cfg.device.state_dir) / JOURNAL_NAME
    if not path.exists():
        print(f"no journal at {path}", file=sys.stderr)
        return EXIT_IO
    with Journal(path, readonly=True) as j:
        b = health.backlog(j)
    from .status import sync_daemon
    daemon, fresh = sync_daemon(cfg)
    st = {"broker": cfg.sync.broker or None, "daemon_running": fresh,
          "connected": bool(fresh and daemon.get("connected")), "backlog": b["count"],
          "backlog_bytes": b["bytes"], "backlog_oldest_age_s": b["oldest_age_s"], "acked_upto": b["acked_upto"],
          "last_seq": b["last_seq"],
          "last_ack": iso_ms(int(daemon["last_ack"] * 1000)) if daemon.get("last_ack") else None,
          "uploaded_clip_bytes": daemon.get("uploaded_clip_bytes", 0),
          "rejected_messages": daemon.get("rejected_messages", 0), **_fleet_status(cfg)}
    if args.json:
        print(json.dumps(st, indent=2))
        return EXIT_OK
    s = Style()
    conn = s("connected", "green") if st["connected"] else s("not connected" if fresh else "daemon not running", "red")
    print(f"sync to {st['broker'] or '(no [sync] broker configured)'}: {conn}")
    print(f"  backlog: {st['backlog']} records ({st['backlog_bytes'] / 1000:.1f} kB), oldest "
          f"{st['backlog_oldest_age_s'] if st['backlog_oldest_age_s'] is not None else '-'} s")
    print(f"  acknowledged up to seq {st['acked_upto']} of {st['last_seq']}; last ack {st['last_ack'] or '-'}")
    c = st["certificate"]
    print(f"  certificate: {c['file']}, expires {c['expires']} ({c['days_left']:.0f} days)" if c else
          "  certificate: " + ("[sync] cert_file" if cfg.sync.cert_file else "none of its own (not enrolled)"))
    r = st["remote_config"]
    if r:
        print(f"  remote config: version {r.get('version', 0)} {r.get('status', '-')}"
              + "".join(f"\n    {e}" for e in r.get("errors", [])))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, cfg: Config | None) -> int:
    from provisioning.enrol import device_settings         # the front door may use provisioning
    from provisioning.identity import Identity, identity_dir

    from .doctor import OK, WARN, Check, report, run_checks
    ident = Identity(identity_dir(cfg))
    extra = []
    fleet = _fleet_status(cfg)
    c = fleet["certificate"]
    if c is not None:
        soon = c["days_left"] < cfg.provisioning.renew_before_days
        extra.append(Check("certificate", WARN if soon else OK, f"{c['file']}: {c['days_left']:.0f} days left",
                           "the box renews it by itself while connected; check the provisioning service" if soon else ""))
    r = fleet["remote_config"]
    if r is not None and r.get("status") in ("rejected", "rolled_back"):
        extra.append(Check("remote config", WARN, f"version {r.get('reported_version')} {r['status']}: "
                           + "; ".join(r.get("errors", []))[:300], "fix the configuration pushed from the fleet"))
    return report(run_checks(cfg, args.config_path, device_settings(cfg, ident), extra), args.json)


def cmd_logs(args: argparse.Namespace, cfg: Config | None) -> int:
    from .doctor import cmd_logs as logs
    return logs(args, cfg)


def _fleet_status(cfg: Config) -> dict:
    """The box's own certificate (enrolment) and the fleet's remote configuration, for ``sync status``."""
    import datetime as dt

    from provisioning.identity import Identity, identity_dir   # the front door may use provisioning

    from ..config.remote import STATE_FILE
    ident = Identity(identity_dir(cfg))
    cert = ident.certificate()
    out: dict = {"certificate": None, "remote_config": None}
    if cert is not None:
        left = (cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).total_seconds() / 86400
        out["certificate"] = {"file": str(ident.cert_path), "expires": cert.not_valid_after_utc.isoformat(),
                              "days_left": round(left, 1)}
    try:
        st = json.loads((Path(cfg.device.state_dir) / STATE_FILE).read_text())
        out["remote_config"] = {k: st.get(k) for k in ("version", "status", "errors", "reported_version")
                                if k in st}
    except (OSError, ValueError):
        pass
    return out


def cmd_demo(args: argparse.Namespace, cfg: Config | None) -> int:
    if args.speed is not None:
        from .demo import run_demo
        return run_demo(speed=args.speed, keep=args.keep, state_dir=args.state_dir)
    from .box_demo import run_box_demo
    return run_box_demo(keep=args.keep, state_dir=args.state_dir)


# --- parser ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="appliancectl", description="Contact Analyzer appliance control")
    p.add_argument("--version", action="version", version=f"appliancectl {__version__}")
    p.add_argument("-c", "--config", help=f"config file (default $APPLIANCE_CONFIG or {DEFAULT_PATH})")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    # -c/--config is also taken after the command: `appliancectl replay --config C ...`
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=argparse.SUPPRESS, help="config file")

    def add(subs, name: str, help: str, func, config: str = "required") -> argparse.ArgumentParser:
        """A command ``func(args, cfg)``; ``config``: "required" (loaded before it runs),
        "optional" (loaded when -c/--config is given) or "none" (the command reads no config
        or reads a file of its own)."""
        leaf = subs.add_parser(name, help=help, parents=[common], description=help)
        leaf.set_defaults(func=func, needs_config=config)
        return leaf

    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = add(sub, "demo", "run the whole appliance on simulated hardware, live (about two minutes)", cmd_demo,
            config="none")
    s.add_argument("--speed", type=float,
                   help="instead, a whole day at two points, this many times faster (1000: ~35 s); only the "
                        "core runs, the hardware's events are written to the journal")
    s.add_argument("--state-dir", help="keep the demo's journal here (default: a temporary folder)")
    s.add_argument("--keep", action="store_true", help="keep the temporary folder")

    s = add(sub, "replay", "run the core pipeline offline over an events file", cmd_replay)
    s.add_argument("--events", required=True, help="events, JSON lines")
    s.add_argument("--out", required=True, help="output folder for contacts.jsonl and metrics.json")
    s.add_argument("--audio", help="a WAV recording (16-bit mono) of the same time: clips go to OUT/clips/")
    s.add_argument("--audio-start", help="ISO 8601 time of the recording's first sample")
    s.add_argument("--audio-format", choices=["opus", "wav", "flac"], help="clip format (default [audio] format)")

    s = sub.add_parser("journal", help="the live journal")
    jsub = s.add_subparsers(dest="journal_command", required=True, metavar="SUBCOMMAND")
    j = add(jsub, "import", "append an events file (all lines valid, or nothing)", cmd_journal_import)
    j.add_argument("file")

    s = add(sub, "run", "run a daemon in the foreground (as systemd does)", cmd_run)
    s.add_argument("daemon", choices=["core", "rf", "audio", "sync"])
    s.add_argument("--pulses", help="rf: replay this pulse file (real time) instead of the configured source")
    s.add_argument("--wav", help="audio: capture this WAV file (real time, looped) instead of the microphone")

    s = add(sub, "report", "service metrics from the live journal", cmd_report)
    s.add_argument("--from", dest="from_", help="first day or time (ISO; days in the configured zone)")
    s.add_argument("--to", help="end day or time, exclusive")
    s.add_argument("--by", choices=GROUPINGS, default="point")
    s.add_argument("--format", choices=["table", "json", "csv"], default="table")

    s = add(sub, "rebuild", "derive the core's records again (after a config change; appliance-core stopped)",
            cmd_rebuild)
    s.add_argument("--from", dest="from_", help="first day (or ISO time) to derive again; default: all")

    s = add(sub, "tail", "show journal events as they land", cmd_tail)
    s.add_argument("-n", "--lines", type=int, default=10, help="show this many earlier events first")
    s.add_argument("--no-follow", dest="follow", action="store_false", help="print and exit")
    s.add_argument("--json", action="store_true", help="one JSON object per line")
    s.add_argument("--count", type=int, default=0, help="exit after this many events")
    s.add_argument("--timeout", type=float, default=0, help="exit after this many seconds")

    s = add(sub, "status", "journal, stages and daemons at a glance", cmd_status)
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("sensor", help="GPIO presence sensors")
    ssub = s.add_subparsers(dest="sensor_command", required=True, metavar="SUBCOMMAND")
    x = add(ssub, "watch", "each sensor's changes as they happen, and the contacts made of them (installation)",
            cmd_sensor_watch)
    x.add_argument("--timeout", type=float, default=0, help="exit after this many seconds")
    x.add_argument("--count", type=int, default=0, help="exit after this many lines")

    s = add(sub, "doctor", "check the box: config, secrets, clock, disk, journal, devices, broker", cmd_doctor)
    s.add_argument("--json", action="store_true")

    s = add(sub, "logs", "the daemons' logs (journalctl)", cmd_logs, config="none")
    s.add_argument("daemon", nargs="?", choices=["core", "rf", "audio", "sync"], help="one daemon (default: all four)")
    s.add_argument("-n", "--lines", type=int, default=50)
    s.add_argument("-f", "--follow", action="store_true")
    s.add_argument("--since", help="e.g. '1 hour ago', 'today', '2026-12-01 08:00'")

    s = sub.add_parser("config", help="configuration")
    csub = s.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    c = add(csub, "check", "validate a config file and list every error", cmd_config_check, config="none")
    c.add_argument("file", nargs="?")

    s = sub.add_parser("export", help="export data from the journal")
    esub = s.add_subparsers(dest="export_command", required=True, metavar="WHAT")
    e = add(esub, "ratings", "the rating log", cmd_export_ratings)
    e.add_argument("--csv", action="store_true", help="CSV: datetime, remote, button, point, owner, ...")
    e.add_argument("--out", help="write to this file instead of standard output")
    e.add_argument("--from", dest="from_", help="first day or time (ISO; days in the configured zone)")
    e.add_argument("--to", help="end day or time, exclusive")

    s = sub.add_parser("sync", help="cloud sync")
    ssub = s.add_subparsers(dest="sync_command", required=True, metavar="SUBCOMMAND")
    x = add(ssub, "status", "connection, backlog (records not yet acknowledged by the ingest), last ack",
            cmd_sync_status)
    x.add_argument("--json", action="store_true")

    from .notify import register as register_notify
    register_notify(sub, add)
    from audio_capture.cli import register as register_audio
    from rf_receiver.cli import register as register_rf   # rf_receiver's commands, dispatched here
    register_rf(sub, add)
    register_audio(sub, add)
    from provisioning.cli import register as register_update
    register_update(sub, add)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    if args.command == "run":
        level = min(level, logging.INFO)
    setup_logging(level, f"appliance-{args.daemon}" if args.command == "run" else "appliancectl")
    args.config_path = config_path(args)
    try:
        cfg = None
        if args.needs_config == "required" or (args.needs_config == "optional" and getattr(args, "config", None)):
            cfg = load_config(args.config_path)     # once, for every command
        return args.func(args, cfg)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_BAD_INPUT
    except JournalError as exc:
        print(f"journal: {exc}", file=sys.stderr)
        return EXIT_IO
    except BadBound as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
