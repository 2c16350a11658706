"""``appliancectl update run|status``: the root side of an application update and what a
technician looks at."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import threading

from appliance.config.schema import Config

log = logging.getLogger(__name__)


def cmd_update_run(args: argparse.Namespace, cfg: Config | None) -> int:
    from .update_service import run
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    out = run(cfg, stop=stop)
    if out is None:
        print("update: nothing to do" if not stop.is_set() else "update: stopped; the request is kept")
        return 0
    print(f"update: {out.status} {out.version or ''} {out.detail}".rstrip())
    return 0


def cmd_update_status(args: argparse.Namespace, cfg: Config | None) -> int:
    from pathlib import Path

    from .bundle_delivery import Delivery
    from .update import Releases, load_public_keys
    from .update_service import REQUEST_FILE, updates_dir
    rel = Releases(Path(cfg.update.releases_dir))
    d = Delivery(cfg)
    doc = {"current": rel.current(),
           "releases": sorted(p.name for p in rel.dir.iterdir()) if rel.dir.is_dir() else [],
           "release_keys": len(load_public_keys(Path(cfg.update.keys_dir))) if Path(cfg.update.keys_dir).is_dir()
           else 0,
           "window": cfg.update.window or "any time",
           "last": d.state(), "receiving": d.summary() if d.job else None,
           "request_waiting": (updates_dir(cfg) / REQUEST_FILE).exists()}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"release {doc['current'] or '(none: not installed from the package)'}; installed: "
          f"{', '.join(doc['releases']) or '-'}; {doc['release_keys']} release key(s); window {doc['window']}")
    last = doc["last"]
    if last:
        print(f"last update {last.get('id', '')}: {last.get('phase')} {last.get('version', '')}"
              f" (from {last.get('previous') or '-'})" + (f": {last['error']}" if last.get("error") else ""))
    if doc["receiving"]:
        r = doc["receiving"]
        print(f"receiving {r.get('version') or ''}" + (f": {r['chunks'][0]} of {r['chunks'][1]} chunks"
                                                       if "chunks" in r else ""))
    if doc["request_waiting"]:
        print("a bundle waits for appliance-update.service")
    return 0


def register(sub, add) -> None:
    s = sub.add_parser("update", help="application updates (signed release bundles from the fleet)")
    usub = s.add_subparsers(dest="update_command", required=True, metavar="SUBCOMMAND")
    add(usub, "run", "install the waiting release (root; appliance-update.service runs it)", cmd_update_run)
    x = add(usub, "status", "the running release, the last update, one in progress", cmd_update_status)
    x.add_argument("--json", action="store_true")
