"""The box's health, one definition for ``appliancectl status`` and the ``health`` topic
(ARCHITECTURE §7): the journal says what happened (microphone state changes, RF presses,
clips made and deleted, what the cloud has not acknowledged); the system says how the
machine is (uptime, load, temperature, disk, clock); the audio daemon's level file adds
the live level when it is fresh."""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

from . import __version__
from . import vocabulary as v
from .clock import kernel_synced
from .config.schema import Config
from .journal import Journal
from .timefmt import iso_ms

LEVEL_FILE = "level.json"
"""Written by the audio daemon in its (RAM-backed) spool every second."""
LEVEL_FRESH_S = 5.0
SYNC_STAGE = "sync"


def microphone(cfg: Config, journal: Journal, now_s: float | None = None) -> dict | None:
    """The microphone's state from its last journalled change, with the live level when
    the audio daemon is running."""
    ev = journal.latest(v.MIC_STATE)
    if ev is None:
        return None
    st = v.read(ev, v.MicState)
    out = {"state": st.state, "since": iso_ms(ev.ts), "error": st.error}
    level = read_level(cfg)
    now_s = time.time() if now_s is None else now_s
    if level and now_s - level.get("time", 0) < LEVEL_FRESH_S:
        out["rms_db"], out["peak_db"] = level.get("rms_db"), level.get("peak_db")
    return out


def read_level(cfg: Config) -> dict | None:
    """The audio daemon's live level file; it is rewritten in place, so a read that caught a
    write half done is tried once more."""
    for _ in range(2):
        try:
            doc = json.loads((Path(cfg.audio.spool_dir) / LEVEL_FILE).read_text())
        except OSError:
            return None
        except ValueError:
            continue
        return doc if isinstance(doc, dict) else None
    return None


def rf(journal: Journal) -> dict:
    """When the radio last heard a press, and how many presses came from unknown remotes."""
    last = journal.last_rf_ts()
    if last is None:
        return {}
    counted = int(journal.total(v.UNKNOWN_REMOTES, "presses"))
    out = {"rf_last_seen": last, "rf_last_press": iso_ms(last),
           "unknown_remote_presses": journal.count(v.UNKNOWN_REMOTE) + counted}
    radio = journal.latest(v.RADIO_STATE)
    if radio is not None:
        st = v.read(radio, v.RadioState)
        out["radio"] = {"state": st.state, "since": iso_ms(radio.ts), "error": st.error, "restarts": st.restarts}
    return out


def sensors(cfg: Config, journal: Journal, now_ms: int | None = None) -> dict:
    """Each GPIO presence sensor's last change (read by appliance-rf) and its verdict: ``ok``;
    ``silent`` (no change for longer than its ``silent_after_s``: a cable off, a dead sensor —
    or a closed shop); ``stuck`` (reporting presence for longer than that); ``error`` (the rf
    daemon could not open it); ``never heard``."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    out = {}
    for sid, s in cfg.sensors.items():
        ev = journal.latest_where(v.SENSOR, "sensor", sid)
        state = journal.latest_where(v.SENSOR_STATE, "sensor", sid)
        error = state.data.get("error") if state is not None and state.data.get("state") == "error" else None
        present = ev.data.get("present") if ev else None
        quiet_s = (now_ms - ev.ts) / 1000 if ev else None
        if error:
            verdict = "error"
        elif ev is None:
            verdict = "never heard"
        elif quiet_s > s.silent_after_s:
            verdict = "stuck" if present else "silent"
        else:
            verdict = "ok"
        out[sid] = {"point": s.point, "kind": s.kind, "present": present,
                    "last_change": iso_ms(ev.ts) if ev else None, "verdict": verdict,
                    "quiet_s": None if quiet_s is None else round(quiet_s), "error": error}
    return out


REMOTE_LOOKBACK = 200_000
"""``status`` looks for each remote's last press among this many latest events (bounded
time on a journal of years)."""


def remotes(cfg: Config, journal: Journal) -> dict:
    """When each configured remote was last heard (None: not among the latest events)."""
    if not cfg.remotes:
        return {}
    last = journal.last_seq()
    rows = journal.db.execute("SELECT json_extract(data, '$.remote'), MAX(ts) FROM events WHERE seq > ? "
                              "AND source = 'rf' GROUP BY 1", (last - REMOTE_LOOKBACK,)).fetchall()
    heard = {r: ts for r, ts in rows if r}
    return {rid: {"point": r.point, "last_heard": iso_ms(heard[rid]) if rid in heard else None}
            for rid, r in cfg.remotes.items()}


def clips(journal: Journal) -> dict | None:
    made = journal.count(v.CLIP)
    if not made:
        return None
    return {"made": made, "deleted": journal.count(v.CLIP_DELETED),
            "deleted_before_ack": journal.count_where(v.CLIP_DELETED, "acked", 0)}


def backlog(journal: Journal, now_ms: int | None = None) -> dict:
    """Journal records the cloud ingest has not acknowledged (the sync stage's cursor)."""
    b = journal.backlog(SYNC_STAGE)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    age = round((now_ms - b.oldest_ts) / 1000, 1) if b.oldest_ts is not None else None
    return {"count": b.count, "bytes": b.bytes, "oldest_age_s": age, "acked_upto": b.cursor, "last_seq": b.last_seq}


def box(cfg: Config, journal: Journal, with_remotes: bool = False) -> dict:
    """What the journal tells about the hardware and the cloud link (``with_remotes``: each
    remote's last press too — a scan of the latest events, for ``status`` on demand, not for
    the health topic every minute)."""
    out: dict = {"backlog": backlog(journal), "unsynced_clock_events": journal.unsynced_clock_events(),
                 "microphone": microphone(cfg, journal), "rf_last_seen": None, **rf(journal)}
    if cfg.sensors:
        out["sensors"] = sensors(cfg, journal)
    if with_remotes and cfg.remotes:
        out["remotes"] = remotes(cfg, journal)
    made = clips(journal)
    if made is not None:
        out["clips"] = made
    return out


def system(cfg: Config) -> dict:
    """The machine: uptime, load, temperature, disk of the state directory, clock, versions."""
    doc: dict = {}
    try:
        doc["uptime_s"] = float(open("/proc/uptime").read().split()[0])
    except (OSError, ValueError):
        doc["uptime_s"] = None
    doc["load"] = list(os.getloadavg())
    try:
        doc["temperature_c"] = int(open("/sys/class/thermal/thermal_zone0/temp").read()) / 1000
    except (OSError, ValueError):
        doc["temperature_c"] = None
    try:
        du = shutil.disk_usage(cfg.device.state_dir)
        doc["disk"] = {"free_bytes": du.free, "total_bytes": du.total}
    except OSError:
        doc["disk"] = None
    doc["time_synced"] = kernel_synced()
    doc["versions"] = {"appliance": __version__, "python": platform.python_version()}
    return doc


def report(cfg: Config, journal: Journal, device: str) -> dict:
    """The ``health`` topic's payload."""
    return {"device": device, "time": int(time.time() * 1000), **system(cfg), **box(cfg, journal)}
