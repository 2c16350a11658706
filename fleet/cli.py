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


def _ms(text: str | None, tz: str) -> int | None:
    """--from/--to: a date (YYYY-MM-DD, midnight in --tz) or an ISO time."""
    if not text:
        return None
    from datetime import datetime
    from zoneinfo import ZoneInfo
    try:
        d = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"fleetctl: {text!r} is not a date (YYYY-MM-DD) or an ISO time") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=ZoneInfo(tz))
    return int(d.timestamp() * 1000)


def cmd_report(args: argparse.Namespace) -> int:
    if args.db:
        from .ingest import in_group
        from .report import fleet_metrics
        store = _store(args)
        try:
            devices = None
            if args.store or args.group:
                devices = [d["id"] for d in store.devices() if (not args.store or d["store"] == args.store)
                           and (not args.group or in_group(d["group"], args.group))]
            out = fleet_metrics(store.db, args.by, _ms(args.since, args.tz), _ms(args.until, args.tz), args.tz,
                                ph=store.ph, devices=devices)
        finally:
            store.close()
        if args.json or not sys.stdout.isatty():     # scripts (a pipe) get JSON, as they always did
            print(json.dumps(out, indent=2))
            return EXIT_OK
        from appliance.cli.ui import num, pct, table
        keys = ("contacts", "ratings", "csi", "cdi", "response_rate", "conversion")
        print(table([args.by if args.by != "none" else "", *keys],
                    [[k] + [num(m[x], 0) if x in ("contacts", "ratings") else pct(m[x]) for x in keys]
                     for k, m in out.items()]))
        return EXIT_OK
    if not args.dirs:
        print("give --db (the ingest's database) or replay output folders", file=sys.stderr)
        return EXIT_USAGE
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
                    quotas=quotas, protocol_auto=args.protocol == "auto", shared=args.shared,
                    inbox_mb=args.inbox_mb)
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


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_TIMEOUT = 0, 1, 2, 3, 4
"""Exit codes scripts can rely on: 0 done; 1 the device answered with an error (or refused,
expired); 2 bad usage or input; 3 no such device / CA; 4 no answer in time or broker unreachable."""


def _store(args: argparse.Namespace):
    from .ingest import IngestStore
    return IngestStore(args.db)


def _age(ms: int | None) -> str:
    if not ms:
        return "never"
    import time
    s = max(0, time.time() - ms / 1000)
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s / n:.0f} {unit} ago"
    return f"{s:.0f} s ago"


def _health_line(h: dict | None) -> str:
    if not h:
        return "-"
    parts = []
    backlog = h.get("backlog") if isinstance(h.get("backlog"), dict) else {}
    if backlog:
        parts.append(f"backlog {backlog.get('count', '?')}")
    disk = h.get("disk") if isinstance(h.get("disk"), dict) else {}
    if isinstance(disk.get("free_bytes"), (int, float)):       # as the box's health reports it
        parts.append(f"disk {disk['free_bytes'] / 2**20:.0f} MB free")
    mic = h.get("microphone") if isinstance(h.get("microphone"), dict) else {}
    if mic.get("state"):
        parts.append(f"mic {mic['state']}")
    return ", ".join(p for p in parts if p) or "ok"


def cmd_devices(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        devices = store.devices(tag=args.tag)
    finally:
        store.close()
    if args.json:
        print(json.dumps(devices, indent=2))
        return EXIT_OK
    from appliance.cli.ui import table
    rows = []
    for d in devices:
        c = d["config"] or {}
        u = (d["info"] or {}).get("update") or {}
        rows.append([d["id"], "online" if d["online"] else "offline", _age(d["last_seen"]), d["version"] or "-",
                     f"{u.get('phase')} {u.get('version') or ''}".strip() if u.get("phase") else "-",
                     f"v{c.get('applied_version', 0)} {c.get('status', '-')}" if c else "-",
                     _age(d["health_at"]) if d["health"] else "-", _health_line(d["health"]), d["journal_records"],
                     d["store"] or "-", d["group"] or "-", ",".join(d["tags"])])
    print(table(["device", "state", "last seen", "version", "update", "config", "health", "last health", "records",
                 "store",
                 "group", "tags"],
                rows))
    print(f"{len(devices)} device(s), {sum(d['online'] for d in devices)} online")
    return EXIT_OK


def _place_error(store: str | None, group: str | None) -> str | None:
    from .ingest import place_problem
    for kind, name in (("store", store), ("group", group)):
        problem = None if name is None else place_problem(kind, name)
        if problem:
            return f"{kind} {name!r}: {problem}"
    return None


def cmd_devices_tag(args: argparse.Namespace) -> int:
    if args.store is None and args.group is None:
        print("fleetctl devices tag: give --store S and/or --group G", file=sys.stderr)
        return EXIT_USAGE
    err = _place_error(args.store, args.group)
    if err:
        print(f"fleetctl devices tag: {err}", file=sys.stderr)
        return EXIT_USAGE
    store = _store(args)
    try:
        if args.device not in {d["id"] for d in store.devices()}:
            print(f"fleetctl: no device {args.device!r} in {args.db}", file=sys.stderr)
            return EXIT_NOT_FOUND
        store.place([(args.device, args.store, args.group)])
        d = next(d for d in store.devices() if d["id"] == args.device)
    finally:
        store.close()
    print(json.dumps({"device": d["id"], "store": d["store"], "group": d["group"]}) if args.json else
          f"{d['id']}: store {d['store'] or '-'}, group {d['group'] or '-'}")
    return EXIT_OK


def read_places(path: str) -> list[tuple[str, str | None, str | None]]:
    """``device,store,group`` rows (a header line allowed) or TOML ``[devices.<id>]`` tables
    with ``store`` and ``group``; every row checked before any is applied."""
    text = Path(path).read_text(encoding="utf-8")
    rows: list[tuple[str, str | None, str | None]] = []
    if path.endswith(".toml"):
        import tomllib
        doc = tomllib.loads(text)
        devices = doc.get("devices")
        if not isinstance(devices, dict):
            raise ValueError("a [devices.<id>] table per device, with store = and group =")
        for dev, t in devices.items():
            if not isinstance(t, dict) or set(t) - {"store", "group"} or not all(isinstance(x, str) for x in t.values()):
                raise ValueError(f"devices.{dev}: only store = \"...\" and group = \"...\"")
            rows.append((dev, t.get("store"), t.get("group")))
    else:
        import csv
        for n, row in enumerate(csv.reader(text.splitlines()), 1):
            if not row or (n == 1 and row[0].strip().lower() == "device"):
                continue
            if len(row) != 3:
                raise ValueError(f"line {n}: device,store,group (3 fields, {len(row)} given)")
            dev, st, gr = (x.strip() for x in row)
            rows.append((dev, st or None, gr or None))
    for dev, st, gr in rows:
        err = _place_error(st, gr)
        if err:
            raise ValueError(f"{dev}: {err}")
    return rows


def cmd_devices_import(args: argparse.Namespace) -> int:
    try:
        rows = read_places(args.file)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"fleetctl devices import: {args.file}: {exc} (nothing changed)", file=sys.stderr)
        return EXIT_USAGE
    store = _store(args)
    try:
        known = {d["id"] for d in store.devices()}
        unknown = [dev for dev, _, _ in rows if dev not in known]
        if unknown:
            print(f"fleetctl devices import: not in {args.db}: {', '.join(unknown[:10])} (nothing changed)",
                  file=sys.stderr)
            return EXIT_NOT_FOUND
        store.place(rows)
    finally:
        store.close()
    print(json.dumps({"placed": len(rows)}) if args.json else f"{len(rows)} device(s) placed")
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        found = [d for d in store.devices() if d["id"] == args.device]
    finally:
        store.close()
    if not found:
        print(f"fleetctl: no device {args.device!r} in {args.db}", file=sys.stderr)
        return EXIT_NOT_FOUND
    d = found[0]
    out = {"id": d["id"], "online": d["online"], "last_seen": d["last_seen"], "health_at": d["health_at"],
           "health": d["health"], "config": d["config"]}
    if args.json:
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(f"{d['id']}: {'online' if d['online'] else 'offline'}, last seen {_age(d['last_seen'])}; "
          f"health {_age(d['health_at'])}")
    for k, v in (d["health"] or {}).items():
        print(f"  {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    return EXIT_OK


def _settings(args: argparse.Namespace, who: str = "operator"):
    """Broker settings: --ca-dir DIR (its ca.pem and WHO.pem/.key) or the explicit files."""
    from appliance.cloud.mqtt import BrokerSettings
    ca = cert = key = ""
    if getattr(args, "ca_dir", None):
        d = Path(args.ca_dir)
        ca, cert, key = str(d / "ca.pem"), str(d / f"{who}.pem"), str(d / f"{who}.key")
    return BrokerSettings(args.broker, args.ca_file or ca, args.cert_file or cert, args.key_file or key,
                          args.username or "", broker_password(args),
                          protocol="3.1.1" if getattr(args, "protocol", "auto") == "3.1.1" else "5")


def _targets(args: argparse.Namespace) -> list[str] | None:
    if args.device:
        return [args.device]
    if not args.db:
        print("fleetctl: --all and --tag need --db (the ingest's database: the list of devices)", file=sys.stderr)
        return None
    store = _store(args)
    try:
        return [d["id"] for d in store.devices(tag=args.tag if not args.all else None)]
    finally:
        store.close()


def cmd_config_push(args: argparse.Namespace) -> int:
    from appliance.config import config_from_dict
    from appliance.errors import ConfigError

    from .operator import Operator, OperatorError
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"fleetctl: {args.file}: cannot read: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.no_check:                       # as the box will (without its pinned keys)
        import tomllib
        try:
            config_from_dict(tomllib.loads(text), args.file)
        except tomllib.TOMLDecodeError as exc:
            print(f"{args.file}: not valid TOML: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ConfigError as exc:
            print(exc.report(), file=sys.stderr)
            return EXIT_USAGE
    targets = _targets(args)
    if not targets:
        print("fleetctl: no device to push to", file=sys.stderr)
        return EXIT_NOT_FOUND
    results = []
    try:
        with Operator(_settings(args), args.prefix) as op:
            for dev in targets:
                version = op.push_config(dev, text, args.version)
                r = None
                if args.wait:
                    r = op.reported(dev, timeout_s=args.wait, accept=lambda r, v=version: r.version == v
                                    and r.status in ("applied", "rejected", "rolled_back"))
                    if r is None:           # taken but not yet confirmed, or not heard at all
                        r = op.reported(dev, timeout_s=0.2, accept=lambda r, v=version: r.version == v)
                status = r.status if r else ("sent" if not args.wait else "no answer")
                results.append({"device": dev, "version": version, "status": status,
                                "errors": r.errors if r else []})
    except OperatorError as exc:
        print(f"fleetctl: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['device']}: version {r['version']} {r['status']}")
            for e in r["errors"]:
                print(f"  {e}")
    if any(r["status"] in ("rejected", "rolled_back") for r in results):
        return EXIT_FAILED
    if args.wait and any(r["status"] in ("no answer", "pending") for r in results):
        return EXIT_TIMEOUT
    return EXIT_OK


def cmd_config_get(args: argparse.Namespace) -> int:
    from .operator import Operator, OperatorError
    try:
        with Operator(_settings(args), args.prefix) as op:
            r = op.reported(args.device, timeout_s=args.wait)
            desired = op.desired_version(args.device, timeout_s=1.0)
    except OperatorError as exc:
        print(f"fleetctl: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    if r is None:
        print(f"fleetctl: {args.device} has reported no configuration", file=sys.stderr)
        return EXIT_NOT_FOUND
    import msgspec
    out = {"device": args.device, "desired_version": desired, **msgspec.to_builtins(r)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.device}: desired version {desired}; reported version {r.version} {r.status}, running "
              f"version {r.applied_version} (hash {r.hash or '-'})")
        for e in r.errors:
            print(f"  {e}")
    return EXIT_OK


def _parse_args_kv(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        k, sep, val = item.partition("=")
        if not sep:
            raise SystemExit(f"fleetctl: command arguments are KEY=VALUE, got {item!r}")
        try:
            out[k] = json.loads(val)            # numbers, booleans; anything else stays text
        except ValueError:
            out[k] = val
    return out


def _print_result(device: str, action: str, r, as_json: bool) -> None:
    import msgspec
    if as_json:
        print(json.dumps({"device": device, **msgspec.to_builtins(r)}, indent=2))
    else:
        print(f"{device}: {action} {r.status}" + (f": {r.error}" if r.error else ""))
        for k, v in r.result.items():
            print(f"  {k}: {v}")


def _chunk_progress(quiet: bool):
    if quiet:
        return None
    state = {"shown": -1}

    def show(device: str, n: int, total: int) -> None:
        pct = n * 100 // total
        if pct // 10 != state["shown"] // 10 or n == total:
            state["shown"] = pct
            print(f"  {device}: {n}/{total} chunks sent ({pct} %)", file=sys.stderr, flush=True)
    return show


def _update_bundle(args: argparse.Namespace):
    from provisioning.update import UpdateError

    from .operator import UpdateBundle
    try:
        return UpdateBundle(args.file, url=args.url or "", chunk_size=args.chunk_kb * 1024)
    except (OSError, UpdateError) as exc:
        print(f"fleetctl: {exc}", file=sys.stderr)
        return None


def cmd_cmd(args: argparse.Namespace) -> int:
    from .operator import Operator, OperatorError
    if args.wait is None:
        args.wait = 1800.0 if args.action == "update" else 30.0
    if args.expires is None:
        args.expires = 86400.0 if args.action == "update" else 600.0
    bundle = None
    if args.action == "update":
        if len(args.args) != 1 or "=" in args.args[0]:
            print("fleetctl: cmd DEVICE update FILE (a signed release bundle: fleetctl release bundle)",
                  file=sys.stderr)
            return EXIT_USAGE
        args.file = args.args[0]
        bundle = _update_bundle(args)
        if bundle is None:
            return EXIT_USAGE
        cmd_args = {}
    else:
        cmd_args = _parse_args_kv(args.args)
    try:
        with Operator(_settings(args), args.prefix) as op:
            if bundle is not None:
                print(f"{args.device}: update to {bundle.version} ({bundle.size} bytes, "
                      f"{'from ' + bundle.url if bundle.url else f'{bundle.chunks} chunks over MQTT'})",
                      file=sys.stderr)
                cmd_id = op.send_update(args.device, bundle, args.id, args.expires, _chunk_progress(args.json))
                r = op.result(args.device, cmd_id, args.wait)
            else:
                r = op.command(args.device, args.action, cmd_args, cmd_id=args.id, expires_in_s=args.expires,
                               wait_s=args.wait)
    except OperatorError as exc:
        print(f"fleetctl: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    if r is None:
        print(f"fleetctl: no result from {args.device} within {args.wait:.0f} s (it runs when the box is back "
              f"online, unless it expires first)", file=sys.stderr)
        return EXIT_TIMEOUT
    _print_result(args.device, args.action, r, args.json)
    return EXIT_OK if r.status == "ok" else EXIT_FAILED


def cmd_rollout(args: argparse.Namespace) -> int:
    """A release to every device of a tag (store, group): a canary share first, then the rest
    in waves; it stops by itself when the failures pass the threshold."""
    import math
    import time

    from .operator import Operator, OperatorError
    bundle = _update_bundle(args)
    if bundle is None:
        return EXIT_USAGE
    try:
        canary = float(args.canary.rstrip("%"))
        assert 0 < canary <= 100
    except (ValueError, AssertionError):
        print("fleetctl: --canary: a share of the devices, e.g. 10%", file=sys.stderr)
        return EXIT_USAGE
    args.all, args.device = args.tag is None, None
    targets = sorted(_targets(args) or [])
    if not targets:
        print(f"fleetctl: no device {'with tag ' + repr(args.tag) if args.tag else 'in the fleet'}", file=sys.stderr)
        return EXIT_NOT_FOUND
    n_canary = max(1, math.ceil(len(targets) * canary / 100))
    wave = args.wave or n_canary
    waves = [targets[:n_canary]] + [targets[i:i + wave] for i in range(n_canary, len(targets), wave)]
    say = (lambda *a: None) if args.json else (lambda text: print(text, flush=True))
    say(f"rollout of {bundle.version} to {len(targets)} devices: canary {n_canary}, then waves of {wave}; "
        f"halts when more than {args.max_failures:g} % fail")
    results: list[dict] = []
    halted = ""
    try:
        with Operator(_settings(args), args.prefix) as op:
            for i, devices in enumerate(waves):
                label = "canary" if i == 0 else f"wave {i}"
                sent = {d: op.send_update(d, bundle, None, args.expires, _chunk_progress(args.json or bool(bundle.url)))
                        for d in devices}
                end = time.monotonic() + args.wait
                for d, cmd_id in sent.items():
                    r = op.result(d, cmd_id, max(0.1, end - time.monotonic()))
                    status = r.status if r else "no answer"
                    results.append({"device": d, "wave": label, "status": status,
                                    "version": r.result.get("version") if r else None,
                                    "error": (r.error if r else f"no result within {args.wait:.0f} s")})
                    say(f"  {label}: {d} {status}" + (f": {results[-1]['error']}" if status != "ok" else ""))
                failed = sum(r["status"] != "ok" for r in results)
                share = 100.0 * failed / len(results)
                if share > args.max_failures:
                    halted = (f"halted after the {label}: {failed} of {len(results)} failed ({share:.0f} % > "
                              f"{args.max_failures:g} %); {len(targets) - len(results)} devices not touched")
                    break
    except OperatorError as exc:
        print(f"fleetctl: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    ok = sum(r["status"] == "ok" for r in results)
    summary = {"version": bundle.version, "devices": len(targets), "updated": ok,
               "failed": len(results) - ok, "not_touched": len(targets) - len(results),
               "halted": bool(halted), "reason": halted, "results": results}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(halted or f"done: {ok} of {len(targets)} updated to {bundle.version}, {len(results) - ok} failed")
    return EXIT_FAILED if halted or ok < len(results) else EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    from .release import ReleaseError, bundle, keygen
    try:
        if args.release_command == "keygen":
            key, pub = keygen(Path(args.dir), args.name)
            print(f"{key}: the signing key (keep it off the boxes and the cloud; mode 0600)\n"
                  f"{pub}: the public key for the image's /etc/appliance/release-keys/")
            return EXIT_OK
        if bool(args.deb) == bool(args.wheels):
            print("fleetctl: give --deb FILE or --wheels DIR", file=sys.stderr)
            return EXIT_USAGE
        out, version, n = bundle(Path(args.key), Path(args.out), Path(args.deb) if args.deb else None,
                                 Path(args.wheels) if args.wheels else None, args.version or "")
    except (ReleaseError, OSError) as exc:
        print(f"fleetctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{out}: release {version}, {n} wheels, {out.stat().st_size} bytes, signed")
    return EXIT_OK


def cmd_ca_init(args: argparse.Namespace) -> int:
    from .pki import FleetCA, PkiError
    try:
        ca = FleetCA.init(args.dir, args.host, prefix=args.prefix, port=args.port)
    except PkiError as exc:
        print(f"fleetctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps({"dir": str(ca.dir), "hosts": args.host, "port": args.port,
                          "files": sorted(p.name for p in ca.dir.iterdir())}, indent=2))
        return EXIT_OK
    print(f"fleet CA created in {ca.dir}:")
    print("  ca.pem ca.key (keep the key offline when you can)")
    print(f"  broker.pem/.key for {', '.join(args.host)}; ingest, operator, provision and claim certificates")
    print(f"  mosquitto.conf and acl: include {ca.dir / 'mosquitto.conf'} from /etc/mosquitto/conf.d/")
    print(f"  tokens: add one-time enrolment tokens with: fleetctl ca token {ca.dir}")
    return EXIT_OK


def _open_ca(directory: str):
    """The fleet CA in ``directory``, or None after saying why not."""
    from .pki import FleetCA, PkiError
    try:
        return FleetCA(directory)
    except PkiError as exc:
        print(f"fleetctl: {exc}", file=sys.stderr)
        return None


def cmd_ca_token(args: argparse.Namespace) -> int:
    ca = _open_ca(args.dir)
    if ca is None:
        return EXIT_NOT_FOUND
    tokens = ca.add_tokens(args.count)
    print(json.dumps(tokens) if args.json else "\n".join(tokens))
    return EXIT_OK


def cmd_ca_allow(args: argparse.Namespace) -> int:
    from appliance.cloud.wire import RESERVED_IDS, safe_name

    bad = [d for d in args.devices if not safe_name(d) or d in RESERVED_IDS]
    if bad:
        print(f"fleetctl: not device ids: {', '.join(bad)}", file=sys.stderr)
        return EXIT_USAGE
    ca = _open_ca(args.dir)
    if ca is None:
        return EXIT_NOT_FOUND
    for d in args.devices:
        ca.allow(d)
    print(json.dumps({"allowed": args.devices}) if args.json else
          f"{len(args.devices)} device(s) may enrol with any claim token")
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    ca = _open_ca(args.ca)
    if ca is None:
        return EXIT_NOT_FOUND
    n = ca.revoke(args.device)
    if args.json:
        print(json.dumps({"device": args.device, "revoked_certificates": n, "crl": str(Path(args.ca) / "crl.pem")}))
        return EXIT_OK
    print(f"{args.device} revoked ({n} certificate(s) on the CRL); the provisioning service refuses it from now on.\n"
          f"Reload the broker so it reads {Path(args.ca) / 'crl.pem'} (Mosquitto: restart it).")
    return EXIT_OK


def cmd_provision_serve(args: argparse.Namespace) -> int:
    import logging

    from appliance.daemon import run_loop

    from .provision import ProvisionServer
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ca = _open_ca(args.ca)
    if ca is None:
        return EXIT_NOT_FOUND
    args.ca_dir = args.ca_dir or args.ca
    server = ProvisionServer(_settings(args, "provision"), ca, args.prefix)
    server.start()

    def step() -> None:
        if not server.alive():
            raise RuntimeError("the MQTT network loop has stopped")
    try:
        return run_loop("provision", step, tick_s=0.5, on_stop=server.stop,
                        status=lambda: f"provision: {server.issued} issued, {server.refused} refused")
    except RuntimeError as exc:
        print(f"fleetctl provision serve: {exc}", file=sys.stderr)
        return EXIT_FAILED


def cmd_tag(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        if args.device not in {d["id"] for d in store.devices()}:
            print(f"fleetctl: no device {args.device!r} in {args.db}", file=sys.stderr)
            return EXIT_NOT_FOUND
        store.tag(args.device, args.tags, remove=args.remove)
        tags = next(d["tags"] for d in store.devices() if d["id"] == args.device)
    finally:
        store.close()
    print(json.dumps({"device": args.device, "tags": tags}) if args.json else f"{args.device}: {' '.join(tags) or '(no tags)'}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """The web office over the ingest's database, until SIGTERM/SIGINT."""
    import logging

    import uvicorn

    from .ingest import IngestStore
    from .office.app import Office, create_app
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"fleetctl serve: --listen {args.listen!r}: give HOST:PORT (127.0.0.1:8080)", file=sys.stderr)
        return EXIT_USAGE
    if args.clips and not Path(args.clips).is_dir():
        print(f"fleetctl serve: --clips {args.clips}: not a folder (the ingest's --clips)", file=sys.stderr)
        return EXIT_USAGE
    if bool(args.tls_cert) != bool(args.tls_key):
        print("fleetctl serve: give both --tls-cert and --tls-key, or neither", file=sys.stderr)
        return EXIT_USAGE
    try:
        IngestStore(args.db).close()                # the tables, migrated (the ingest's and the office's)
        office = Office(args.db, args.clips, tz=args.tz, silent_after_min=args.silent_after_min,
                        clip_max_age_days=args.clip_max_age_days)
    except Exception as exc:  # noqa: BLE001 - a bad --db or --tz: say so and stop
        print(f"fleetctl serve: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not office.accounts.list():
        print("fleetctl serve: no users yet: add one with `fleetctl users add NAME --role admin --db ...`",
              file=sys.stderr)
    office.start_retention()
    config = uvicorn.Config(create_app(office), host=host.strip("[]"), port=int(port), log_level="info",
                            access_log=False, ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
                            proxy_headers=bool(args.behind_proxy), forwarded_allow_ips=args.behind_proxy or None,
                            server_header=False)
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        office.stop()
    return EXIT_OK


USER_PASSWORD_ENV = "FLEETCTL_USER_PASSWORD"


def _new_password(args: argparse.Namespace) -> str:
    """From --password-file, $FLEETCTL_USER_PASSWORD, or asked twice on a terminal."""
    if args.password_file:
        return Path(args.password_file).read_text(encoding="utf-8").strip()
    if os.environ.get(USER_PASSWORD_ENV):
        return os.environ[USER_PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise SystemExit(f"fleetctl users: give --password-file FILE or set {USER_PASSWORD_ENV}")
    import getpass
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("fleetctl users: the passwords differ")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    from .ingest import IngestStore
    from .office.accounts import AccountError, Accounts
    from .office.db import Database
    IngestStore(args.db).close()
    db = Database(args.db)
    acc = Accounts(db)
    acc.create()
    try:
        what = args.users_command
        if what == "add":
            acc.add(args.name, _new_password(args), args.role, args.group or [])
            out = {"added": args.name}
        elif what == "set":
            acc.set(args.name, args.role, args.group, None)
            out = {"changed": args.name}
        elif what == "passwd":
            acc.set(args.name, password=_new_password(args))
            out = {"changed": args.name}
        elif what == "remove":
            if not acc.remove(args.name):
                print(f"fleetctl users: no user {args.name!r}", file=sys.stderr)
                return EXIT_NOT_FOUND
            out = {"removed": args.name}
        elif what == "audit":
            rows = acc.audit_log(_ms(args.since, "UTC"), args.user, args.limit)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                from appliance.cli.ui import table
                from appliance.timefmt import iso_ms
                print(table(["time", "user", "action", "device", "clip", "detail", "address"],
                            [[iso_ms(r["at"]), r["user"], r["action"], r["device"] or "-", r["clip"] or "-",
                              r["detail"] or "", r["ip"] or ""] for r in rows]))
            return EXIT_OK
        else:
            users = acc.list()
            if args.json:
                print(json.dumps([{"name": u.name, "role": u.role, "groups": list(u.groups)} for u in users]))
            else:
                from appliance.cli.ui import table
                print(table(["user", "role", "groups"], [[u.name, u.role, ", ".join(u.groups) or
                                                          ("(everything)" if u.role == "admin" else "-")]
                                                         for u in users]))
            return EXIT_OK
    except (AccountError, OSError) as exc:
        print(f"fleetctl users: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        db.close()
    print(json.dumps(out) if args.json else " ".join(f"{k} {v}" for k, v in out.items()))
    return EXIT_OK


def cmd_clips_prune(args: argparse.Namespace) -> int:
    import time

    from .ingest import IngestStore
    from .office.accounts import Accounts
    from .office.db import Database
    from .office.retention import prune_clips
    IngestStore(args.db).close()
    db = Database(args.db)
    try:
        acc = Accounts(db)
        acc.create()
        n = prune_clips(db, acc, args.clips, args.max_age_days, time.time())
    finally:
        db.close()
    print(json.dumps({"deleted": n}) if args.json else f"{n} clip(s) older than {args.max_age_days:g} days deleted")
    return EXIT_OK


def _broker_options(s: argparse.ArgumentParser, required: bool = True) -> None:
    s.add_argument("--broker", required=required, help="mqtt://host:port or mqtts://host:port")
    s.add_argument("--ca-dir", help="the fleet CA folder: its ca.pem and the operator's certificate and key")
    for opt in ("ca-file", "cert-file", "key-file", "username"):
        s.add_argument(f"--{opt}")
    s.add_argument("--password-file", help=f"file holding the broker password (or set {PASSWORD_ENV})")
    s.add_argument("--prefix", default="ca/v1")
    s.add_argument("--json", action="store_true", help="machine-readable output")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fleetctl", description="Contact Analyzer fleet operator CLI",
                                epilog="exit codes: 0 done, 1 the device answered with an error, 2 bad usage or "
                                       "input, 3 not found, 4 no answer in time / broker unreachable")
    p.add_argument("--version", action="version", version=f"fleetctl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("report", help="the service metrics across the fleet (ingest db) or replay folders")
    s.add_argument("dirs", nargs="*", help="replay output folders holding metrics.json")
    s.add_argument("--db", help="the ingest's database: metrics from every device's synced contacts")
    s.add_argument("--by", choices=["device", "point", "owner", "day", "week", "month", "none"], default="device")
    s.add_argument("--from", dest="since", help="from this date (YYYY-MM-DD) or ISO time, inclusive")
    s.add_argument("--to", dest="until", help="up to this date or ISO time, exclusive")
    s.add_argument("--tz", default="UTC", help="time zone of dates and of day/week/month (default UTC)")
    s.add_argument("--store", help="only the devices of this store (fleetctl devices tag)")
    s.add_argument("--group", help="only the devices of this group and the groups under it")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_report)
    s = sub.add_parser("ingest", help="the reference cloud ingest: store journal batches, acknowledge them")
    s.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port")
    s.add_argument("--db", required=True, help="SQLite file or postgresql:// URL of the ingest")
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
    s.add_argument("--inbox-mb", type=float, default=256.0,
                   help="messages received and not yet stored held in memory, at most (default 256); beyond, "
                        "the broker keeps them (give its max_queued_messages room for the fleet's backlog)")
    s.set_defaults(func=cmd_ingest)
    s = sub.add_parser("devices", help="the fleet: online state, versions, config, last health, records; "
                                       "`devices tag` and `devices import` place devices in stores and groups")
    s.add_argument("--db")
    s.add_argument("--tag", help="only devices with this tag, in this store, or in this group (or under it)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_devices)
    dsub = s.add_subparsers(dest="devices_command", metavar="SUBCOMMAND")
    c = dsub.add_parser("tag", help="put a device in a store and a group (groups are paths: division/region)")
    c.add_argument("device")
    c.add_argument("--store", help="the store (shop, station, clinic) the box is in")
    c.add_argument("--group", help="its group of stores, a path such as north/riga (a scope of managers)")
    c.add_argument("--db", default=argparse.SUPPRESS)
    c.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    c.set_defaults(func=cmd_devices_tag)
    c = dsub.add_parser("import", help="place many devices from a CSV (device,store,group) or TOML file")
    c.add_argument("file")
    c.add_argument("--db", default=argparse.SUPPRESS)
    c.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    c.set_defaults(func=cmd_devices_import)
    s = sub.add_parser("health", help="a device's last health report")
    s.add_argument("device")
    s.add_argument("--db", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_health)
    s = sub.add_parser("tag", help="tag devices (for config push --tag and devices --tag)")
    s.add_argument("device")
    s.add_argument("tags", nargs="+")
    s.add_argument("--remove", action="store_true")
    s.add_argument("--db", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_tag)
    s = sub.add_parser("serve", help="the web office: overview, contacts with their audio, devices, for users")
    s.add_argument("--db", required=True, help="the ingest's SQLite file or postgresql:// URL")
    s.add_argument("--clips", help="the ingest's clips folder (its --clips): the audio the office plays")
    s.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    s.add_argument("--tz", default="UTC", help="time zone of the periods and times shown (default UTC)")
    s.add_argument("--silent-after-min", type=float, default=60.0,
                   help="devices not heard from for longer are highlighted (default 60)")
    s.add_argument("--clip-max-age-days", type=float,
                   help="delete clips older than this, hourly, each deletion logged (default: keep)")
    s.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM) ...")
    s.add_argument("--tls-key", help="... and its key; else put a TLS proxy in front")
    s.add_argument("--behind-proxy", metavar="ADDRESS",
                   help="trust X-Forwarded-For/-Proto from this proxy address (for login throttling by address)")
    s.set_defaults(func=cmd_serve)
    s = sub.add_parser("users", help="the web office's users: add, set, passwd, remove, list, audit")
    usub = s.add_subparsers(dest="users_command", metavar="SUBCOMMAND")
    s.add_argument("--db", default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_users)
    for name, text in (("add", "a new user (password from --password-file, $" + USER_PASSWORD_ENV + " or asked)"),
                       ("set", "change a user's role or groups (logs them out)"),
                       ("passwd", "set a user's password (logs them out)"), ("remove", "delete a user"),
                       ("list", "the users, roles and groups"),
                       ("audit", "the audit log: every clip played, downloaded or deleted")):
        c = usub.add_parser(name, help=text)
        if name not in ("list", "audit"):
            c.add_argument("name")
        if name in ("add", "set"):
            c.add_argument("--role", choices=["admin", "manager", "viewer"], required=name == "add")
            c.add_argument("--group", action="append",
                           help="a group of stores this user sees (repeatable; a group covers those under it)")
        if name in ("add", "passwd"):
            c.add_argument("--password-file")
        if name == "audit":
            c.add_argument("--user")
            c.add_argument("--from", dest="since", help="from this date or ISO time")
            c.add_argument("--limit", type=int, default=200)
        c.add_argument("--db", default=argparse.SUPPRESS)
        c.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    s = sub.add_parser("clips", help="the cloud's clips")
    ksub = s.add_subparsers(dest="clips_command", required=True, metavar="SUBCOMMAND")
    c = ksub.add_parser("prune", help="delete clips older than --max-age-days (each deletion in the audit log)")
    c.add_argument("--db", required=True)
    c.add_argument("--clips", required=True)
    c.add_argument("--max-age-days", type=float, required=True)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_clips_prune)
    s = sub.add_parser("config", help="remote configuration: push a TOML file, get what a device runs")
    csub = s.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    c = csub.add_parser("push", help="send a config (retained config/desired) to one device, a tag or all")
    c.add_argument("device", nargs="?")
    c.add_argument("file")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--all", action="store_true", help="every device the ingest knows (needs --db)")
    g.add_argument("--tag", help="devices with this tag, in this store or in this group (needs --db)")
    c.add_argument("--db")
    c.add_argument("--version", type=int, help="default: one more than the device's current desired version")
    c.add_argument("--wait", type=float, default=0, help="wait this many seconds for each device's report")
    c.add_argument("--no-check", action="store_true", help="do not validate the file here first")
    _broker_options(c)
    c.set_defaults(func=cmd_config_push)
    c = csub.add_parser("get", help="what a device reported: version, status, hash, errors")
    c.add_argument("device")
    c.add_argument("--wait", type=float, default=3.0)
    _broker_options(c)
    c.set_defaults(func=cmd_config_get)
    s = sub.add_parser("cmd", help="run a command on a device and wait for its result")
    s.add_argument("device")
    s.add_argument("action", choices=["restart", "reboot", "resync", "set_owner", "test_notification", "diagnostics",
                                      "update"])
    s.add_argument("args", nargs="*", metavar="KEY=VALUE",
                   help="daemon=core | from_seq=1 | point=till1 staff=anna | destination=managers; "
                        "update: the bundle FILE")
    s.add_argument("--id", help="command id (default: a new one); the same id never runs twice")
    s.add_argument("--expires", type=float, help="seconds until it must not run any more (default 600; update: a "
                                                 "day, time to wait for the maintenance window)")
    s.add_argument("--wait", type=float, help="seconds to wait for the result (default 30; update: 1800)")
    s.add_argument("--url", help="update: the box fetches the bundle from this http(s) URL instead of MQTT chunks")
    s.add_argument("--chunk-kb", type=int, default=256, help="update: chunk size over MQTT (default 256 KiB)")
    _broker_options(s)
    s.set_defaults(func=cmd_cmd)
    s = sub.add_parser("rollout", help="update every device of a tag: a canary share first, then waves; stops by "
                                       "itself when failures pass a threshold")
    s.add_argument("file", help="a signed release bundle (fleetctl release bundle)")
    s.add_argument("--canary", default="10%", help="share of the devices updated first (default 10%%)")
    s.add_argument("--tag", help="a tag, store or group (default: every device)")
    s.add_argument("--db", required=True, help="the ingest's database (the list of devices)")
    s.add_argument("--wave", type=int, default=0, help="devices per wave after the canary (default: the canary's)")
    s.add_argument("--max-failures", type=float, default=0.0,
                   help="halt when more than this percentage of the updated devices failed (default 0: any failure)")
    s.add_argument("--expires", type=float, default=86400,
                   help="seconds a box may wait for its maintenance window (default a day)")
    s.add_argument("--wait", type=float, default=1800, help="seconds to wait for each wave's results (default 1800)")
    s.add_argument("--url", help="the boxes fetch the bundle from this http(s) URL instead of MQTT chunks")
    s.add_argument("--chunk-kb", type=int, default=256)
    _broker_options(s)
    s.set_defaults(func=cmd_rollout)
    s = sub.add_parser("release", help="release bundles for updates: a signing key, a signed bundle")
    rsub = s.add_subparsers(dest="release_command", required=True, metavar="SUBCOMMAND")
    c = rsub.add_parser("keygen", help="a new Ed25519 release key pair (DIR/NAME.key 0600, DIR/NAME.pub)")
    c.add_argument("--dir", required=True)
    c.add_argument("--name", default="release")
    c.set_defaults(func=cmd_release)
    c = rsub.add_parser("bundle", help="sign a bundle of the Debian package's wheels (or a folder of wheels)")
    c.add_argument("--key", required=True, help="the private release key (fleetctl release keygen)")
    c.add_argument("--deb", help="dist/contact-analyzer_<version>_<arch>.deb")
    c.add_argument("--wheels", help="or a folder of wheels (the project's and every dependency's)")
    c.add_argument("--version", help="the release's version (default: the package's or the project wheel's)")
    c.add_argument("-o", "--out", required=True)
    c.set_defaults(func=cmd_release)
    s = sub.add_parser("provision", help="the provisioning service")
    psub = s.add_subparsers(dest="provision_command", required=True, metavar="SUBCOMMAND")
    c = psub.add_parser("serve", help="sign boxes' certificate requests with the fleet CA")
    c.add_argument("--ca", required=True, help="the fleet CA folder (fleetctl ca init)")
    _broker_options(c)
    c.set_defaults(func=cmd_provision_serve)
    s = sub.add_parser("revoke", help="refuse a device from now on (provisioning and the broker's CRL)")
    s.add_argument("device")
    s.add_argument("--ca", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_revoke)
    s = sub.add_parser("ca", help="the fleet CA")
    asub = s.add_subparsers(dest="ca_command", required=True, metavar="SUBCOMMAND")
    c = asub.add_parser("init", help="create the fleet CA, service certificates and Mosquitto config and ACL")
    c.add_argument("dir")
    c.add_argument("--host", action="append", required=True, help="the broker's host name or address (repeatable)")
    c.add_argument("--port", type=int, default=8883)
    c.add_argument("--prefix", default="ca/v1")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_ca_init)
    c = asub.add_parser("token", help="new one-time enrolment tokens")
    c.add_argument("dir")
    c.add_argument("-n", "--count", type=int, default=1)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_ca_token)
    c = asub.add_parser("allow", help="let these device ids enrol with any claim token")
    c.add_argument("dir")
    c.add_argument("devices", nargs="+")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_ca_allow)
    args = p.parse_args(argv)
    if args.command in ("devices", "users") and not args.db:
        p.error(f"{args.command}: give --db (the ingest's database)")
    if getattr(args, "config_command", None) == "push" and not (args.device or args.all or args.tag):
        p.error("config push: give a DEVICE, --all or --tag T")
    if getattr(args, "config_command", None) == "push" and args.device and (args.all or args.tag):
        p.error("config push: a DEVICE or --all or --tag, not both")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
