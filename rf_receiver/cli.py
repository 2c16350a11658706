"""``appliancectl rf decode | listen | learn``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .press import ENDED, PressDetector
from .pulses import PulseError, read_pulse_file
from .receiver import Receiver


def decode_train(pulses: list[tuple[int, int]], min_frames: int, long_us: int, declared=()) -> list:
    """One recording, decoder state fresh: its presses, in order."""
    rx = Receiver(declared=declared)
    det = PressDetector(min_frames, long_us)
    ended = []
    for f in rx.decode_pulses(pulses):
        ended += [p for e, p in det.frame(f) if e == ENDED]
    ended += [p for e, p in det.finish() if e == ENDED]
    return sorted(ended, key=lambda p: p.start_us)


def press_json(p, line: int | None = None) -> dict:
    d = {} if line is None else {"line": line}
    d.update(protocol=p.protocol, code=p.code, bits=p.bits, remote=p.remote, button=p.button,
             frames=p.frames, press=p.kind, start_us=p.start_us, unit_us=round(p.unit_us, 1))
    return d


def cmd_decode(args: argparse.Namespace, cfg) -> int:
    src = sys.stdin.buffer if args.pulses == "-" else None
    try:
        f = src or open(args.pulses, "rb")
    except OSError as exc:
        print(f"{args.pulses}: cannot read: {exc.strerror}", file=sys.stderr)
        return 3
    declared = []
    if cfg is not None:                     # remotes declared in a config (-c) take part too
        from .decoders.declared import from_config
        declared = from_config(cfg.rf.decoders)
    bad = 0
    with f:
        for n, pulses in read_pulse_file(f):
            if isinstance(pulses, PulseError):
                print(f"{args.pulses}:{n}: {pulses}", file=sys.stderr)
                bad += 1
                continue
            for p in decode_train(pulses, args.min_frames, round(args.long_press_s * 1e6), declared):
                print(json.dumps(press_json(p, n)), flush=True)
    return 1 if bad else 0


def _loop(args: argparse.Namespace, cfg, on_press) -> int:
    from .service import RfService
    from .sources import open_source
    from .sources.base import SourceError
    try:
        source = open_source(cfg, args.pulses, realtime=not args.fast if args.pulses else True)
    except SourceError as exc:
        print(f"rf: {exc}", file=sys.stderr)
        return 3
    deadline = time.monotonic() + args.timeout if args.timeout else None
    service = RfService.from_config(cfg, source, lambda e, p, ref: on_press(cfg, e, p))
    print(f"listening on {source.name}; Ctrl-C to stop", file=sys.stderr)
    try:
        with source:
            service.run(lambda: bool(deadline and time.monotonic() > deadline) or getattr(args, "_done", False),
                        0.01)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_listen(args: argparse.Namespace, cfg) -> int:
    def on_press(cfg, event, p):
        if event != ENDED:
            return
        r = cfg.remotes.get(p.remote)
        m = r.buttons.get(p.button) if r and p.button is not None else None
        d = press_json(p)
        d["known"] = m is not None
        if m is not None:
            d["point"] = r.point
            d["meaning"] = type(m).__name__.replace("Button", "").lower()
        print(json.dumps(d), flush=True)
    return _loop(args, cfg, on_press)


LEARN_PRESSES = 2
"""A button is learned from its second separate press: a code heard once may be a stray."""


def quality(p) -> str:
    """How well a press was heard, for the technician placing the receiver."""
    return f"{p.frames} frames, unit {p.unit_us:.0f} µs, timing error {p.error * 100:.0f} %"


def cmd_learn(args: argparse.Namespace, cfg) -> int:
    """Print each remote/button heard, with its press count and signal quality; with
    --meaning, write the first new one heard in two separate presses into the config."""
    presses: dict = {}
    learned: list = []

    def on_press(cfg, event, p):
        if event != ENDED:                  # the whole press: all its frames and its timing
            return
        key = (p.remote, p.button)
        n = presses[key] = presses.get(key, 0) + 1
        r = cfg.remotes.get(p.remote)
        known = r is not None and p.button in r.buttons
        status = "already configured" if known else "NEW"
        print(f"{status:18} remote {p.remote} button {p.button}  ({p.protocol}, press {n}: {quality(p)})",
              flush=True)
        if known or not args.meaning or learned:
            return
        if n < LEARN_PRESSES:
            print(f"{'':18} heard once: press the same button again to learn it", flush=True)
            return
        path = learn_into_config(Path(args.config_file), p.remote, p.button, args.point, args.meaning, args.value)
        print(f"written to {path}: [remotes.{p.remote}] button {p.button} = {args.meaning}"
              + (f" {args.value}" if args.value is not None else ""), flush=True)
        learned.append(key)
        args._done = True
    if args.meaning and not args.point:
        print("--meaning needs --point", file=sys.stderr)
        return 2
    args.config_file = args.config_path     # the file the command was started with (main sets it)
    rc = _loop(args, cfg, on_press)
    if rc == 0 and args.meaning and not learned:
        once = [k for k, n in presses.items() if n < LEARN_PRESSES]
        print("nothing learned: " + ("a button heard only once is not learned (press it twice, apart)" if once
                                     else "no new remote button was heard"), file=sys.stderr)
        return 1
    return rc


def learn_into_config(path: Path, remote: str, button: int, point: str, meaning: str,
                      value: str | None) -> Path:
    """Add a button to [remotes.<id>] in the TOML file, keeping its comments and layout;
    the result must validate before it replaces the file."""
    import tomlkit

    from appliance.config import parse_config
    from appliance.files import write_atomic
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    remotes = doc.setdefault("remotes", tomlkit.table(is_super_table=True))
    r = remotes.get(remote)
    if r is None:
        r = tomlkit.table()
        r["point"] = point
        r["buttons"] = tomlkit.inline_table()
        remotes[remote] = r
    entry = tomlkit.inline_table()
    entry["meaning"] = meaning
    if meaning == "rating":
        entry["value"] = int(value)
    elif meaning == "presence":
        entry["state"] = value
    elif meaning in ("staff", "answer") and value:
        entry["staff"] = value
    elif meaning == "call" and value:
        entry["location"] = value
    r["buttons"][str(button)] = entry
    text = tomlkit.dumps(doc)
    parse_config(text, source=str(path), base_dir=path.parent)   # raises ConfigError: file untouched
    write_atomic(path, text)
    return path


def register(sub, add) -> None:
    """Add `rf decode|listen|learn` to appliancectl's parser."""
    s = sub.add_parser("rf", help="433 MHz remotes: decode recordings, listen, learn")
    rsub = s.add_subparsers(dest="rf_command", required=True, metavar="SUBCOMMAND")
    d = add(rsub, "decode", "decode pulse trains (JSON lines) into presses", cmd_decode, config="optional")
    d.add_argument("--pulses", required=True, help='pulse file, one {"pulses": [[level, µs], ...]} per line; - = stdin')
    d.add_argument("--min-frames", type=int, default=2, help="matching frames for a press (default 2)")
    d.add_argument("--long-press-s", type=float, default=3.0, help="held this long: a long press (default 3)")
    for name, helptext, func in (("listen", "print presses live from the configured source", cmd_listen),
                                 ("learn", "show new remotes and buttons; --meaning writes one into the config",
                                  cmd_learn)):
        x = add(rsub, name, helptext, func)
        x.add_argument("--pulses", help="replay this pulse file instead of the configured source")
        x.add_argument("--fast", action="store_true", help="with --pulses: as fast as possible")
        x.add_argument("--timeout", type=float, default=0, help="stop after this many seconds")
        if name == "learn":
            x.add_argument("--point", help="point of the new button")
            x.add_argument("--meaning", choices=["rating", "presence", "call", "staff", "answer"],
                           help="write the first new button heard in two separate presses with this meaning")
            x.add_argument("--value", help="rating value, presence state (arrived/left/dwell), staff name (staff, "
                                           "answer) or a call button's location")
