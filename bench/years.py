"""Benchmark: years on an SD card — reports in bounded time and memory, a journal that does
not grow for ever.

    python bench/years.py [--days 730] [--points 4] [--contacts 400] [--json]

Generates ``--days`` of ``--points`` busy points (``--contacts`` a day each, half of them
rated, most with a receipt: about 4 million raw events for the defaults), imports them with
``appliancectl journal import``, derives them with ``appliancectl rebuild`` (the live core's
stage), then runs, each as its own process as a technician would, and records wall time and
peak RSS (the child's own ``ru_maxrss``):

  report for a day, a month by day, the whole range by month, by owner; export ratings for a
  month — each beside the floor measured in the same run on the same file: a bare SQLite
  indexed count over the same period's rows (in a process of its own: ``python -c``);

then import and pruning throughput and the journal's size before and after retention.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine  # noqa: E402

START = datetime(2025, 1, 6, tzinfo=timezone.utc)       # set in main(): the range ends yesterday
CONFIG = """
[device]
state_dir = "{state}"
[time]
timezone = "Europe/Berlin"
[journal]
keep_raw_days = 90
keep_days = 800
{points}
"""


SCALE = 'rating_scale = { 1 = "negative", 2 = "negative", 3 = "neutral", 4 = "neutral", 5 = "top" }'


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def generate(path: Path, days: int, points: int, contacts: int, seed: int = 1) -> int:
    rnd = random.Random(seed)
    n = 0
    receipt = 0
    with open(path, "w") as f:
        for day in range(days):
            base = START + timedelta(days=day, hours=7)
            lines = []
            for p in range(points):
                pid = f"till{p + 1}"
                staff = rnd.choice(["anna", "boris", "carl", "dana"])
                lines.append((base, json.dumps({"ts": iso(base), "type": "staff", "point": pid, "staff": staff})))
                t = base
                step = timedelta(seconds=12 * 3600 / contacts)
                for _ in range(contacts):
                    dur = timedelta(seconds=rnd.randint(20, 150))
                    lines.append((t, json.dumps({"ts": iso(t), "type": "presence", "point": pid,
                                                 "state": "arrived"})))
                    if rnd.random() < 0.5:
                        rt = t + dur * rnd.random()
                        lines.append((rt, json.dumps({"ts": iso(rt), "type": "rating", "point": pid,
                                                      "value": rnd.choice([1, 2, 3, 4, 5, 5, 5])})))
                    if rnd.random() < 0.9:
                        receipt += 1
                        st = t + dur * rnd.random()
                        lines.append((st, json.dumps({"ts": iso(st), "type": "sale", "point": pid,
                                                      "receipt": f"R{receipt}", "amount": 12.5})))
                    lines.append((t + dur, json.dumps({"ts": iso(t + dur), "type": "presence", "point": pid,
                                                       "state": "left"})))
                    t += step
            lines.sort(key=lambda x: x[0])
            for _, line in lines:
                f.write(line + "\n")
            n += len(lines)
    return n


def run(cmd: list[str]) -> dict:
    """A child process: wall time, its peak RSS and its output."""
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1)
        os.dup2(w, 2)
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, *cmd])
    os.close(w)
    out = b""
    while data := os.read(r, 1 << 16):
        out += data[-65536:] if len(out) > 1 << 20 else data
    os.close(r)
    _, status, usage = os.wait4(pid, 0)
    return {"s": round(time.perf_counter() - t0, 3), "rss_mb": round(usage.ru_maxrss / 1024, 1),
            "rc": os.waitstatus_to_exitcode(status), "out": out.decode(errors="replace")}


FLOOR = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(sum(db.execute("SELECT COUNT(*) FROM records WHERE kind = ? AND t >= ? AND t < ?",
                     (k, int(sys.argv[2]), int(sys.argv[3]))).fetchone()[0] for k in range(4)))
"""


def ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp() * 1000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--contacts", type=int, default=400, help="contacts a day per point")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    global START
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    START = today - timedelta(days=args.days)
    tmp = Path(tempfile.mkdtemp(prefix="bench-years-"))
    out: dict = {"machine": machine(), "days": args.days, "points": args.points}
    try:
        state = tmp / "state"
        cfg = tmp / "appliance.toml"
        cfg.write_text(CONFIG.format(state=state, points="\n".join(f"[points.till{p + 1}]\npos = true\n" + SCALE
                                                                  for p in range(args.points))))
        events = tmp / "year.jsonl"
        t0 = time.perf_counter()
        out["raw_events"] = generate(events, args.days, args.points, args.contacts)
        out["generate_s"] = round(time.perf_counter() - t0, 1)
        ctl = ["-m", "appliance.cli.main", "--config", str(cfg)]
        imp = run([*ctl, "journal", "import", str(events)])
        assert imp["rc"] == 0, imp["out"]
        out["import"] = {"s": imp["s"], "rss_mb": imp["rss_mb"], "events_per_s": round(out["raw_events"] / imp["s"])}
        der = run([*ctl, "rebuild"])
        assert der["rc"] == 0, der["out"]
        out["derive"] = {"s": der["s"], "rss_mb": der["rss_mb"], "events_per_s": round(out["raw_events"] / der["s"])}
        db = state / "journal.db"
        out["journal_mb_before_retention"] = round(sum(p.stat().st_size for p in state.glob("journal.db*")) / 1e6, 1)
        last = START + timedelta(days=args.days)
        month_start = (last - timedelta(days=45)).replace(day=1)
        month_end = (month_start + timedelta(days=32)).replace(day=1)
        day = (last - timedelta(days=10)).strftime("%Y-%m-%d")
        day_end = (last - timedelta(days=9)).strftime("%Y-%m-%d")
        m0, m1 = month_start.strftime("%Y-%m-%d"), month_end.strftime("%Y-%m-%d")
        cases = [("report, a day", ["report", "--from", day, "--to", day_end, "--format", "json"], day, day_end),
                 ("report, a month by day", ["report", "--from", m0, "--to", m1, "--by", "day", "--format", "json"],
                  m0, m1),
                 ("report, all by month", ["report", "--by", "month", "--format", "json"], "2000-01-01", "2100-01-01"),
                 ("report, all by owner", ["report", "--by", "owner", "--format", "json"], "2000-01-01", "2100-01-01"),
                 ("export ratings, a month", ["export", "ratings", "--csv", "--from", m0, "--to", m1], m0, m1)]
        out["reports"] = []
        for name, cmd, lo, hi in cases:
            r = run([*ctl, *cmd])
            assert r["rc"] == 0, r["out"][-500:]
            f = run(["-c", FLOOR, str(db), str(ms(lo)), str(ms(hi))])
            out["reports"].append({"what": name, "s": r["s"], "rss_mb": r["rss_mb"], "floor_s": f["s"],
                                   "floor_rows": int(f["out"].strip() or 0), "ratio": round(r["s"] / f["s"], 1)})
        prune = run(["-c", "import sys, time\nfrom appliance.config import load_config\nfrom appliance.journal import "
                     "Journal\nfrom appliance.pruning import prune\ncfg = load_config(sys.argv[1])\nwith Journal.in_dir("
                     "cfg.device.state_dir) as j:\n    c = prune(cfg, j, int(sys.argv[2]), pause_s=0)\n    print(sum(c.values()))",
                     str(cfg), str(int(last.timestamp() * 1000))])
        assert prune["rc"] == 0, prune["out"]
        pruned = int(prune["out"].strip().splitlines()[-1])
        out["prune"] = {"s": prune["s"], "events": pruned, "events_per_s": round(pruned / prune["s"]),
                        "rss_mb": prune["rss_mb"]}
        out["journal_mb_after_retention"] = round(sum(p.stat().st_size for p in state.glob("journal.db*")) / 1e6, 1)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"machine: {out['machine']}")
    print(f"{args.days} days of {args.points} points: {out['raw_events']:,} raw events (generated in "
          f"{out['generate_s']} s)")
    print(f"import:  {out['import']['s']:7.1f} s  {out['import']['events_per_s']:>9,} events/s  peak "
          f"{out['import']['rss_mb']} MB")
    print(f"derive:  {out['derive']['s']:7.1f} s  {out['derive']['events_per_s']:>9,} events/s  peak "
          f"{out['derive']['rss_mb']} MB  (appliancectl rebuild: the core stage)")
    print(f"{'':28} {'ours':>8} {'peak':>8} {'floor':>8} {'rows':>9} {'ratio':>6}   (aim ≤ 10×, ≤ 40 MB)")
    for r in out["reports"]:
        print(f"{r['what']:28} {r['s']:7.2f}s {r['rss_mb']:6.1f}MB {r['floor_s']:7.2f}s {r['floor_rows']:>9,} "
              f"{r['ratio']:5.1f}×")
    print(f"pruning: {out['prune']['events']:,} events in {out['prune']['s']:.1f} s "
          f"({out['prune']['events_per_s']:,}/s, peak {out['prune']['rss_mb']} MB)")
    print(f"journal: {out['journal_mb_before_retention']} MB before retention, "
          f"{out['journal_mb_after_retention']} MB after (keep_raw_days 90, keep_days 800)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
