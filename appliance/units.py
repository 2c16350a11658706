"""The four daemons as the machine sees them, for ``appliancectl status`` and the ``health``
topic: from systemd when it runs the box (state, READY/watchdog, restarts, the daemon's own
``STATUS=`` line, why it last stopped), else from the process table (a technician running a
daemon by hand, the demo, the tests). Plus the SD card's write rate since boot."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

DAEMONS = ("core", "rf", "audio", "sync")
UNIT = "appliance-{}.service"
SHOW = ("Id", "ActiveState", "SubState", "MainPID", "NRestarts", "Result", "StatusText",
        "ActiveEnterTimestampMonotonic", "WatchdogUSec", "ExecMainStatus")


def systemd_running() -> bool:
    """systemd is the init system (sd_booted's test)."""
    return Path("/run/systemd/system").is_dir()


def daemons(proc: Path = Path("/proc"), config: str | None = None, systemd: bool | None = None) -> dict[str, dict]:
    """Each daemon's state: ``state`` (running, starting, stopping, stopped, failed),
    ``pid``, ``uptime_s``, ``rss_mb``, and from systemd ``restarts``, ``status`` (its last
    STATUS= line), ``watchdog`` and ``result`` (why it last stopped). Found in the process
    table, only the daemons of ``config`` (when given) count: a test or a demo on the same
    machine runs daemons of its own."""
    if (systemd_running() if systemd is None else systemd) and shutil.which("systemctl"):
        out = _from_systemd()
        if out:
            return out
    return _from_processes(proc, config)


def _from_systemd() -> dict[str, dict]:
    try:
        r = subprocess.run(["systemctl", "show", "--property=" + ",".join(SHOW),
                            *(UNIT.format(d) for d in DAEMONS)], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return {}
    if r.returncode != 0:
        return {}
    out = {}
    for block in r.stdout.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        name = props.get("Id", "").removeprefix("appliance-").removesuffix(".service")
        if name not in DAEMONS:
            continue
        active, sub = props.get("ActiveState", ""), props.get("SubState", "")
        state = {"active": "running", "activating": "starting", "deactivating": "stopping",
                 "failed": "failed"}.get(active, "stopped")
        pid = int(props.get("MainPID") or 0) or None
        since = int(props.get("ActiveEnterTimestampMonotonic") or 0) / 1e6
        d = {"state": state, "sub": sub, "manager": "systemd", "pid": pid,
             "uptime_s": round(time.monotonic() - since, 1) if state == "running" and since else None,
             "restarts": int(props.get("NRestarts") or 0), "status": props.get("StatusText") or None,
             "watchdog": props.get("WatchdogUSec", "0") not in ("0", "infinity", ""),
             "result": props.get("Result") or None, "rss_mb": _rss_mb(Path("/proc"), pid) if pid else None}
        out[name] = d
    return out


def _config_of(entry: Path, args: list[str]) -> str | None:
    """The config file a daemon process was started with (``--config``/``-c``, else its
    ``APPLIANCE_CONFIG``), resolved against its working directory; None if unknown."""
    path = None
    for i, a in enumerate(args):
        if a in ("-c", "--config") and i + 1 < len(args):
            path = args[i + 1]
        elif a.startswith("--config="):
            path = a.split("=", 1)[1]
    if path is None:
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            return None
        path = next((e[len(b"APPLIANCE_CONFIG="):].decode(errors="replace") for e in env
                     if e.startswith(b"APPLIANCE_CONFIG=")), None)
        if path is None:
            from .config import DEFAULT_PATH
            return str(DEFAULT_PATH)
    try:
        return os.path.realpath(os.path.join(os.readlink(entry / "cwd"), path))
    except OSError:
        return os.path.realpath(path)


def _from_processes(proc: Path, config: str | None = None) -> dict[str, dict]:
    """Processes whose command line is ``... appliancectl|appliance.cli.main ... run <daemon>``."""
    out: dict[str, dict] = {d: {"state": "stopped", "manager": "process", "pid": None} for d in DAEMONS}
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        uptime = float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError):
        ticks, uptime = 100, None
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if not any(a.endswith("appliancectl") or a == "appliance.cli.main" for a in args) or "run" not in args:
            continue
        i = args.index("run")
        name = args[i + 1] if i + 1 < len(args) else ""
        if name not in DAEMONS or out[name]["pid"] is not None:
            continue
        if config is not None and _config_of(entry, args) not in (None, os.path.realpath(config)):
            continue                            # another box's daemon (a test, the demo)
        pid = int(entry.name)
        d = out[name]
        d.update(state="running", pid=pid, rss_mb=_rss_mb(proc, pid))
        try:
            start = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
            d["uptime_s"] = round(uptime - start, 1) if uptime is not None else None
        except (OSError, ValueError, IndexError):
            d["uptime_s"] = None
    return out


def _rss_mb(proc: Path, pid: int) -> float | None:
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def write_rate(path: str | Path, sys_dev: Path = Path("/sys/dev/block"), proc: Path = Path("/proc")) -> dict | None:
    """Bytes written to the block device holding ``path`` since boot and per hour on average
    (SD-card wear); None when the path is not on a block device (a container's overlay)."""
    try:
        st = os.stat(path)
        major, minor = os.major(st.st_dev), os.minor(st.st_dev)
        fields = (sys_dev / f"{major}:{minor}" / "stat").read_text().split()
        uptime = float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError):
        return None
    if len(fields) < 7 or uptime <= 0:
        return None
    written = int(fields[6]) * 512                      # sectors written, always 512-byte units
    dev = (sys_dev / f"{major}:{minor}").resolve().name
    return {"device": dev, "written_bytes": written, "per_hour_bytes": round(written / uptime * 3600)}
