"""First boot of a box (``appliance-firstboot.service``, before the daemons): what the
technician put on the SD card's boot partition (FAT, readable from any PC) is checked, moved
into place with its owner and mode, and removed from the FAT partition; the host name becomes
the box's id; enrolment starts.

On the boot partition (all optional):

    appliance.toml          → /etc/appliance/appliance.toml        root:appliance 0640
    secrets.toml            → /etc/appliance/secrets.toml          root:root 0600
    claim-token.txt         → [provisioning] claim_token in the secrets file
    *.nmconnection          → /etc/NetworkManager/system-connections/  root:root 0600 (Wi-Fi)

Everything is checked before anything is applied: a bad file is reported (in the journal and
in ``appliance-firstboot-error.txt`` on the boot partition, where the technician looks) and
nothing changes. Applying is restart-safe: each file is written beside its target, fsynced and
renamed; the FAT copies are removed only after all are in place, so a power cut part-way means
the whole step runs again at the next boot.

    python -m image_build.firstboot [--boot /boot/firmware] [--root /]
"""
from __future__ import annotations

import argparse
import configparser
import grp
import json
import logging
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("firstboot")

ERROR_FILE = "appliance-firstboot-error.txt"
SERIAL_FILES = ("sys/firmware/devicetree/base/serial-number", "proc/device-tree/serial-number")
TOKEN = re.compile(r"^[A-Za-z0-9_.~+/=-]{8,512}$")
MAX_FILE = 1 << 20


class FirstBootError(Exception):
    """What is wrong with the boot partition's files: each problem, one per line."""


@dataclass
class Placed:
    source: list[Path]          # the FAT files it came from (removed once all are in place)
    target: Path
    data: bytes
    mode: int
    group: str


def _read(path: Path, problems: list[str]) -> bytes | None:
    try:
        if path.is_symlink() or not path.is_file():
            problems.append(f"{path.name}: not a regular file")
            return None
        data = path.read_bytes()
    except OSError as exc:
        problems.append(f"{path.name}: cannot read: {exc.strerror or exc}")
        return None
    if len(data) > MAX_FILE:
        problems.append(f"{path.name}: {len(data)} bytes, more than {MAX_FILE}")
        return None
    return data


def _toml(name: str, data: bytes, problems: list[str]) -> dict | None:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        problems.append(f"{name}: not valid TOML: {exc}")
        return None


def _toml_text(doc: dict) -> str:
    """A TOML document of tables of strings, numbers and booleans (a secrets file's shape)."""
    lines: list[str] = []

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        raise FirstBootError(f"secrets: a {type(v).__name__} value cannot be merged")
    for k, v in doc.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {value(v)}")
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            for kk, vv in v.items():
                if isinstance(vv, dict):
                    raise FirstBootError(f"secrets: [{k}.{kk}] nested tables cannot be merged")
                lines.append(f"{kk} = {value(vv)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def plan(boot: Path, root: Path) -> list[Placed]:
    """What to put where, every file checked; FirstBootError lists every problem."""
    problems: list[str] = []
    out: list[Placed] = []
    etc = root / "etc" / "appliance"
    secrets_doc: dict | None = None
    secrets_data: bytes | None = None       # the file as given (kept as it is, comments and all)
    sources: list[Path] = []
    sec = boot / "secrets.toml"
    if sec.exists():
        secrets_data = _read(sec, problems)
        if secrets_data is not None:
            secrets_doc = _toml(sec.name, secrets_data, problems)
            sources.append(sec)
    tok = boot / "claim-token.txt"
    if tok.exists():
        data = _read(tok, problems)
        if data is not None:
            token = data.decode("utf-8", "replace").strip()
            if not TOKEN.match(token):
                problems.append("claim-token.txt: not a claim token (8-512 letters, digits and _ . ~ + / = -)")
            else:
                existing = etc / "secrets.toml"
                if secrets_doc is None and existing.exists():
                    secrets_doc = _toml("the installed secrets.toml", existing.read_bytes(), problems)
                secrets_doc = dict(secrets_doc or {})
                prov = dict(secrets_doc.get("provisioning") or {})
                prov["claim_token"] = token
                secrets_doc["provisioning"] = prov
                sources.append(tok)
    if secrets_doc is not None and sources:
        try:
            data = _toml_text(secrets_doc).encode("utf-8") if tok in sources else secrets_data
            out.append(Placed(sources, etc / "secrets.toml", data, 0o600, "root"))
        except FirstBootError as exc:
            problems.append(str(exc))
    conf = boot / "appliance.toml"
    if conf.exists():
        data = _read(conf, problems)
        doc = _toml(conf.name, data, problems) if data is not None else None
        if doc is not None:
            problems.extend(_config_problems(doc, secrets_doc, root))
            out.insert(0, Placed([conf], etc / "appliance.toml", data, 0o640, "appliance"))
    for nm in sorted(boot.glob("*.nmconnection")):
        data = _read(nm, problems)
        if data is None:
            continue
        cp = configparser.ConfigParser(interpolation=None)
        try:
            cp.read_string(data.decode("utf-8"))
        except (UnicodeDecodeError, configparser.Error) as exc:
            problems.append(f"{nm.name}: not a NetworkManager keyfile: {str(exc).splitlines()[0]}")
            continue
        if not (cp.has_option("connection", "id") and cp.has_option("connection", "type")):
            problems.append(f"{nm.name}: a NetworkManager keyfile needs [connection] id= and type=")
            continue
        if not re.fullmatch(r"[A-Za-z0-9_. -]{1,64}\.nmconnection", nm.name):
            problems.append(f"{nm.name}: name it with letters, digits, _ . - and spaces only")
            continue
        out.append(Placed([nm], root / "etc" / "NetworkManager" / "system-connections" / nm.name, data, 0o600,
                          "root"))
    if problems:
        raise FirstBootError("\n".join(problems))
    return out


def _config_problems(doc: dict, secrets: dict | None, root: Path) -> list[str]:
    """The configuration checked by the box's own schema, with the secrets it will have (the
    boot partition's, else the installed file's)."""
    from appliance.config.load import config_from_dict, deep_merge
    from appliance.errors import ConfigError
    doc = {k: dict(v) if isinstance(v, dict) else v for k, v in doc.items()}
    if secrets is None:
        installed = root / "etc" / "appliance" / "secrets.toml"
        try:
            secrets = tomllib.loads(installed.read_text("utf-8")) if installed.exists() else {}
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            secrets = {}
    try:
        config_from_dict(deep_merge(doc, secrets or {}), "appliance.toml")
    except ConfigError as exc:
        return [f"appliance.toml: {e}" for e in exc.errors]
    return []


def hardware_id(root: Path) -> str | None:
    """As the box names itself (``appliance.ids.hardware_id``): the Pi's serial, else machine-id."""
    for rel in SERIAL_FILES:
        try:
            serial = (root / rel).read_bytes().rstrip(b"\0\n ").decode("ascii").lower()
        except (OSError, UnicodeDecodeError):
            continue
        if re.fullmatch(r"[0-9a-f]{8,32}", serial):
            return serial
    try:
        mid = (root / "etc" / "machine-id").read_text().strip()
        return mid[:12] or None
    except OSError:
        return None


def _write(p: Placed, gid: int) -> None:
    p.target.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.target.with_name(f".{p.target.name}.firstboot")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, p.mode)
    try:
        os.write(fd, p.data)
        os.fchown(fd, 0, gid)
        os.fchmod(fd, p.mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p.target)
    dfd = os.open(p.target.parent, os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def set_hostname(root: Path, name: str, live: bool) -> None:
    (root / "etc" / "hostname").write_text(name + "\n")
    hosts = root / "etc" / "hosts"
    lines = hosts.read_text().splitlines() if hosts.exists() else ["127.0.0.1\tlocalhost"]
    lines = [ln for ln in lines if not ln.startswith("127.0.1.1")] + [f"127.0.1.1\t{name}"]
    hosts.write_text("\n".join(lines) + "\n")
    if live:
        subprocess.run(["hostname", name], check=False, capture_output=True)


def run(boot: Path, root: Path, systemctl: str = "systemctl", group_override: str | None = None,
        live: bool = True) -> list[Path]:
    """The whole first boot; returns the targets written. Raises FirstBootError (nothing
    applied) with every problem."""
    try:
        placed = plan(boot, root)
    except FirstBootError as exc:
        try:
            (boot / ERROR_FILE).write_text("Contact Analyzer could not take these files (nothing was changed):\n"
                                           f"{exc}\n")
        except OSError:
            pass
        raise
    gids = {}
    for p in placed:                    # every owner known before anything is written
        name = group_override if group_override is not None else p.group
        try:
            gids[id(p)] = grp.getgrnam(name).gr_gid
        except KeyError:
            raise FirstBootError(f"group {name!r} does not exist (is the contact-analyzer package installed?)") \
                from None
    for p in placed:
        _write(p, gids[id(p)])
    for p in placed:
        for src in p.source:
            src.unlink(missing_ok=True)
    (boot / ERROR_FILE).unlink(missing_ok=True)
    try:
        fd = os.open(boot, os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass
    hw = hardware_id(root)
    if hw:
        set_hostname(root, "ca-" + hw, live)
    # enrolment: appliance-sync enrols at its first start when a claim is configured
    subprocess.run([systemctl, "--no-block", "start", "appliance.target"], check=False, capture_output=True)
    return [p.target for p in placed]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="appliance-firstboot", description=__doc__.split("\n\n")[0])
    ap.add_argument("--boot", default="/boot/firmware", help="the boot partition (default /boot/firmware)")
    ap.add_argument("--root", default="/", help="the root file system (default /)")
    ap.add_argument("--systemctl", default="systemctl")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        done = run(Path(args.boot), Path(args.root), args.systemctl, live=args.root == "/")
    except FirstBootError as exc:
        print(f"appliance-firstboot: nothing changed:\n{exc}", file=sys.stderr)
        return 1
    for t in done:
        print(f"appliance-firstboot: {t}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
