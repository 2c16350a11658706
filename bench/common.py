"""What every benchmark prints first (the machine it ran on), and what several read from /proc."""
from __future__ import annotations

import os
import platform
import sqlite3
from pathlib import Path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds of a process (and, with ``children``, of its children that have ended)."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        ticks = int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if children else 0)
        return ticks / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def run_s(pid: int) -> float:
    """Seconds a process's threads have run, from the scheduler's own nanosecond account
    (/proc/PID/task/*/schedstat): exact for a nearly idle process, where the tick-sampled
    utime/stime of ``cpu_s`` is off by whole 10 ms ticks. Its ended children are not in it."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                total += int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
            except (OSError, IndexError, ValueError):
                continue                        # a thread that just ended
    except OSError:
        return 0.0
    return total / 1e9


def rss_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pids_named(name: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if open(f"/proc/{d}/comm").read().strip() == name:
                    out.append(int(d))
            except OSError:
                pass
    return out
