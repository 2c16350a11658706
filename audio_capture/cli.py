"""``appliancectl audio level | test``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .level import LevelMeter, noise_floor_db
from .sources.base import AudioError


def _bar(db: float | None, width: int = 40) -> str:
    if db is None:
        return " " * width
    filled = max(0, min(width, round((db + 80) / 80 * width)))
    return "█" * filled + "·" * (width - filled)


def cmd_level(args: argparse.Namespace, cfg) -> int:
    """A live meter: from the running daemon's level file, or the microphone itself."""
    from appliance.health import LEVEL_FILE

    from .sources import open_source
    deadline = time.monotonic() + args.timeout if args.timeout else None
    level_file = Path(cfg.audio.spool_dir) / LEVEL_FILE
    try:
        if level_file.exists() and time.time() - level_file.stat().st_mtime < 3:
            print("from the running appliance-audio daemon; Ctrl-C to stop", file=sys.stderr)
            last = None
            while not deadline or time.monotonic() < deadline:
                try:
                    doc = json.loads(level_file.read_text())
                except ValueError:              # caught mid-write: the next read has it
                    time.sleep(0.05)
                    continue
                if doc["time"] != last:
                    last = doc["time"]
                    print(f"{_bar(doc['rms_db'])} rms {doc['rms_db']} dBFS  peak {doc['peak_db']} dBFS  "
                          f"[{doc['state']}]", flush=True)
                time.sleep(0.25)
            return 0
        src = open_source(cfg, args.wav)
    except AudioError as exc:
        print(f"audio: {exc}", file=sys.stderr)
        return 3
    meter = LevelMeter(src.rate)
    with src:
        while not deadline or time.monotonic() < deadline:
            chunk = src.read()
            if chunk is None:
                break
            for lv in meter.feed(chunk.data):
                print(f"{_bar(lv.rms_db)} rms {lv.rms_db:6.1f} dBFS  peak {lv.peak_db:6.1f} dBFS  [{meter.state}]",
                      flush=True)
    return 0


def cmd_test(args: argparse.Namespace, cfg) -> int:
    """Record a few seconds; report the level, the noise floor and a verdict."""
    from .sources import open_source
    try:
        src = open_source(cfg, args.wav)
    except AudioError as exc:
        print(f"audio: {exc}", file=sys.stderr)
        return 3
    meter = LevelMeter(src.rate, silent_s=1)
    levels = []
    got = 0
    with src:
        while got < args.seconds * src.rate:
            try:
                chunk = src.read()
            except AudioError as exc:
                print(f"audio: {exc}", file=sys.stderr)
                return 3
            if chunk is None:
                break
            got += len(chunk.data) // 2
            levels += meter.feed(chunk.data)
    if not levels:
        print("audio: no audio came from the microphone", file=sys.stderr)
        return 3
    rms = max(lv.rms_db for lv in levels)
    peak = max(lv.peak_db for lv in levels)
    floor = noise_floor_db(levels)
    verdict = {"silent": "SILENT: the microphone gives nothing (unplugged, muted, or dead)",
               "clipping": "CLIPPING: too loud; lower the gain"}.get(meter.state, "ok")
    result = {"seconds": round(got / src.rate, 2), "rate": src.rate, "rms_db": rms, "peak_db": peak,
              "noise_floor_db": floor, "state": meter.state if meter.state != "ok" else "ok"}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"recorded {result['seconds']} s at {src.rate} Hz from {src.name}")
        print(f"  level       {rms:6.1f} dBFS (loudest second)")
        print(f"  peak        {peak:6.1f} dBFS")
        print(f"  noise floor {floor:6.1f} dBFS")
        print(f"  verdict     {verdict}")
    return 0 if meter.state == "ok" else 1


def register(sub, add) -> None:
    s = sub.add_parser("audio", help="the microphone: live level, a recording test")
    asub = s.add_subparsers(dest="audio_command", required=True, metavar="SUBCOMMAND")
    lv = add(asub, "level", "a live level meter (over SSH)", cmd_level)
    lv.add_argument("--timeout", type=float, default=0, help="stop after this many seconds")
    lv.add_argument("--wav", help="meter this WAV file (played in real time) instead")
    t = add(asub, "test", "record a few seconds, report level and noise floor", cmd_test)
    t.add_argument("--seconds", type=float, default=5.0)
    t.add_argument("--wav", help="test on this WAV file instead of the microphone")
    t.add_argument("--json", action="store_true")
