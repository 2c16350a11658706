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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fleetctl", description="Contact Analyzer fleet operator CLI")
    p.add_argument("--version", action="version", version=f"fleetctl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("report", help="metrics across boxes from their replay/export folders")
    s.add_argument("dirs", nargs="+", help="folders holding metrics.json")
    s.set_defaults(func=cmd_report)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
