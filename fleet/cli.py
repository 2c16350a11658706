"""``fleetctl``: the fleet operator's CLI.

This build has ``report``: the ARCHITECTURE §5 metrics across several boxes' replay or
export outputs (``contacts.jsonl`` folders). The MQTT ingest and ``devices`` come with
the cloud-sync work (issue 5).
"""
from __future__ import annotations

import argparse
import json
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


def cmd_ingest(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from appliance.cloud.mqtt import BrokerSettings

    from .ingest import Ingest, IngestStore
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    store = IngestStore(args.db)
    settings = BrokerSettings(args.broker, args.ca_file or "", args.cert_file or "", args.key_file or "",
                              args.username or "", args.password or "")
    ingest = Ingest(settings, store, args.prefix, args.client_id, clips_dir=args.clips)
    ingest.start()
    try:
        stop.wait()
    finally:
        ingest.stop()
        store.close()
    return 0


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
    s.add_argument("--client-id", default="ingest-1")
    for opt in ("ca-file", "cert-file", "key-file", "username", "password"):
        s.add_argument(f"--{opt}")
    s.set_defaults(func=cmd_ingest)
    s = sub.add_parser("devices", help="the fleet: online state and records per device")
    s.add_argument("--db", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_devices)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
