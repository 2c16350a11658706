"""``fleetctl``: the fleet operator's CLI: ``ingest`` (the reference cloud ingest over
MQTT), ``devices`` (the fleet's online state), ``report`` (the §5 metrics across boxes, from
the ingest's database or from replay output folders)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from appliance import __version__


def cmd_report(args: argparse.Namespace) -> int:
    if args.db:
        from .report import fleet_metrics
        from .ingest import IngestStore
        store = IngestStore(args.db)
        out = fleet_metrics(store.db, args.by)
        store.close()
        print(json.dumps(out, indent=2))
        return 0
    if not args.dirs:
        print("give --db (the ingest's database) or replay output folders", file=sys.stderr)
        return 2
    return report_dirs(args)


def report_dirs(args: argparse.Namespace) -> int:
    """Sum counts across boxes from their metrics.json files; recompute the ratios."""
    totals: dict[str, float] = {}
    counts = ("contacts", "ratings", "top", "negative", "orphan_ratings", "misuse", "receipts")
    rated = 0.0
    for d in args.dirs:
        path = Path(d) / "metrics.json"
        try:
            m = json.loads(path.read_text())["overall"]
        except (OSError, ValueError, KeyError) as exc:
            print(f"{path}: cannot use: {exc}", file=sys.stderr)
            return 2
        for k in counts:
            totals[k] = totals.get(k, 0) + m[k]
        if m["response_rate"] is not None:
            rated += m["response_rate"] * m["contacts"]
    n = totals.get("contacts", 0)

    def ratio(x: float) -> float | None:
        return x / n if n else None
    out = {k: int(v) for k, v in totals.items()}
    out.update(response_rate=ratio(round(rated)), csi=ratio(totals.get("top", 0)),
               cdi=ratio(totals.get("negative", 0)),
               cci=ratio(totals.get("ratings", 0) - totals.get("top", 0)),
               eli=ratio(totals.get("top", 0) - totals.get("negative", 0)),
               conversion=ratio(totals.get("receipts", 0)), devices=len(args.dirs))
    print(json.dumps(out, indent=2))
    return 0


PASSWORD_ENV = "FLEETCTL_MQTT_PASSWORD"


def broker_password(args: argparse.Namespace) -> str:
    """From --password-file or $FLEETCTL_MQTT_PASSWORD: never from the command line, where
    every user of the machine sees it in ``ps``."""
    if args.password_file:
        try:
            return Path(args.password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SystemExit(f"fleetctl: --password-file {args.password_file}: cannot read: {exc}") from None
    return os.environ.get(PASSWORD_ENV, "")


def cmd_ingest(args: argparse.Namespace) -> int:
    import logging

    from appliance.cloud.mqtt import BrokerSettings
    from appliance.daemon import run_loop

    from .ingest import Ingest, IngestStore, Quotas
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.password is not None:
        print(f"fleetctl: --password is not taken (a password on the command line shows in ps): "
              f"set {PASSWORD_ENV} or use --password-file FILE", file=sys.stderr)
        return 2
    store = IngestStore(args.db)
    settings = BrokerSettings(args.broker, args.ca_file or "", args.cert_file or "", args.key_file or "",
                              args.username or "", broker_password(args),
                              protocol="3.1.1" if args.protocol == "3.1.1" else "5")
    quotas = Quotas(args.quota_records_per_min, int(args.quota_mb_per_min * 1024 * 1024),
                    args.quota_clips_per_hour, int(args.quota_clip_mb * 1024 * 1024))
    ingest = Ingest(settings, store, args.prefix, args.client_id, group=args.group, clips_dir=args.clips,
                    quotas=quotas, protocol_auto=args.protocol == "auto", shared=args.shared)
    ingest.start()
    step = ingest.step                  # protocol fallback; a dead network loop restarted (or exit: be restarted)

    def close() -> None:
        ingest.stop()
        store.close()
    try:
        return run_loop("ingest", step, tick_s=0.5, on_stop=close,
                        status=lambda: f"ingest: {ingest.stored} records stored, {ingest.rejected} rejected")
    except RuntimeError as exc:
        print(f"fleetctl ingest: {exc}", file=sys.stderr)
        return 1


def cmd_devices(args: argparse.Namespace) -> int:
    from .ingest import IngestStore
    store = IngestStore(args.db)
    devices = store.devices()
    if args.json:
        print(json.dumps(devices, indent=2))
    else:
        for d in devices:
            print(f"{d['id']:24} {'online ' if d['online'] else 'offline'} last seen {d['last_seen']} "
                  f"{d['journal_records']} records")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fleetctl", description="Contact Analyzer fleet operator CLI")
    p.add_argument("--version", action="version", version=f"fleetctl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("report", help="ARCHITECTURE §5 metrics across the fleet (ingest db) or replay folders")
    s.add_argument("dirs", nargs="*", help="replay output folders holding metrics.json")
    s.add_argument("--db", help="the ingest's database: metrics from every device's synced contacts")
    s.add_argument("--by", choices=["device", "point", "none"], default="device")
    s.set_defaults(func=cmd_report)
    s = sub.add_parser("ingest", help="the reference cloud ingest: store journal batches, acknowledge them")
    s.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port")
    s.add_argument("--db", required=True, help="SQLite file of the ingest")
    s.add_argument("--clips", help="folder for reassembled clips")
    s.add_argument("--prefix", default="ca/v1")
    s.add_argument("--client-id", default="ingest-1", help="unique per worker (default ingest-1)")
    s.add_argument("--group", default="ingest", help="workers of one group share the devices (default ingest)")
    s.add_argument("--protocol", choices=["auto", "5", "3.1.1"], default="auto",
                   help="MQTT version; auto tries 5 and falls back to 3.1.1 (default auto)")
    s.add_argument("--shared", choices=["auto", "yes", "no"], default="auto",
                   help="share the subscription among workers ($share/GROUP/...): auto = where the broker "
                        "offers it (MQTT 5), else one worker (default auto)")
    for opt in ("ca-file", "cert-file", "key-file", "username"):
        s.add_argument(f"--{opt}")
    s.add_argument("--password-file", help=f"file holding the broker password (or set {PASSWORD_ENV})")
    s.add_argument("--password", help=argparse.SUPPRESS)      # refused: it would show in ps
    s.add_argument("--quota-records-per-min", type=int, default=60_000, help="per box (default 60000)")
    s.add_argument("--quota-mb-per-min", type=float, default=64.0, help="per box, records and clips (default 64)")
    s.add_argument("--quota-clips-per-hour", type=int, default=3600, help="per box (default 3600)")
    s.add_argument("--quota-clip-mb", type=float, default=64.0, help="largest clip accepted (default 64)")
    s.set_defaults(func=cmd_ingest)
    s = sub.add_parser("devices", help="the fleet: online state and records per device")
    s.add_argument("--db", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_devices)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
