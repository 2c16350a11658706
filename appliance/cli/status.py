"""``appliancectl status``: the whole box on one screen — daemons, clock, disk and SD-card
wear, journal and stages, microphone, radio and remotes, sensors, cloud link, notification
outboxes — and the list of what is wrong, in words a technician can act on. ``--json`` gives
the same document."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import __version__, health, units
from .. import vocabulary as v
from ..config.schema import Config
from ..journal import JOURNAL_NAME, Journal
from ..timefmt import iso_ms
from .ui import Style, printable

DISK_LOW = 0.05
"""Free space below this share of the state directory's file system is a problem."""
STAGE_SILENT_S = 90.0
BACKLOG_OLD_S = 3600.0


def collect(cfg: Config, config_path: str) -> dict:
    """Everything ``status`` shows, as one JSON-able document."""
    state_dir = Path(cfg.device.state_dir)
    path = state_dir / JOURNAL_NAME
    st: dict = {"version": __version__, "config": config_path, "points": list(cfg.points), "journal": str(path)}
    st["daemons"] = units.daemons(config=config_path)
    sysinfo = health.system(cfg)
    st["clock"] = {"synced": sysinfo["time_synced"], "now": iso_ms(int(time.time() * 1000))}
    st["disk"] = sysinfo["disk"]
    st["sd_writes"] = units.write_rate(state_dir)
    st["machine"] = {k: sysinfo[k] for k in ("uptime_s", "load", "temperature_c")}
    if not path.exists():
        st["state"] = "no journal yet (the core has not run)"
    else:
        from .notify import notify_status
        with Journal(path, readonly=True) as j:
            last = j.last_seq()
            now = int(time.time() * 1000)
            latest, oldest = j.max_ts(), j.oldest_ts()
            st["events"] = j.count()
            st["last_event"] = iso_ms(latest) if latest is not None else None
            st["oldest_event"] = iso_ms(oldest) if oldest is not None else None
            st["size_bytes"] = j.size_bytes()
            st["retention"] = {"keep_raw_days": cfg.journal.keep_raw_days, "keep_days": cfg.journal.keep_days}
            for key, typ in (("last_rebuild", v.REBUILD), ("last_pruning", v.PRUNED)):
                ev = j.latest(typ)
                st[key] = {"at": iso_ms(ev.ts), **ev.data} if ev is not None else None
            st["stages"] = [{"name": s["name"], "behind": last - s["cursor"],
                             "last_commit_age_s": round((now - s["updated"]) / 1000, 1), **s["info"]}
                            for s in j.stages()]
            st["by_type"] = j.count_by_type()
            st["notifications"] = {name: {k: d[k] for k in ("kind", "outbox", "dead_letters", "last_success")}
                                   for name, d in notify_status(cfg, j, now).items()}
            st.update(health.box(cfg, j, with_remotes=True))
    st["cloud"] = cloud(cfg, st.get("backlog"))
    st["problems"] = problems(cfg, st)
    return st


def sync_daemon(cfg: Config) -> tuple[dict, bool]:
    """The sync daemon's status file (written when something changes) and whether the
    daemon that wrote it still runs (not a recycled pid)."""
    from ..cloud.sync import STATUS_FILE
    from ..daemon import daemon_alive
    doc: dict = {}
    try:
        doc = json.loads((Path(cfg.device.state_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        pass
    return doc, bool(doc) and daemon_alive(doc.get("pid"), "sync")


def cloud(cfg: Config, backlog: dict | None) -> dict:
    doc, running = sync_daemon(cfg)
    out = {"broker": cfg.sync.broker or None, "daemon_running": running,
           "connected": bool(running and doc.get("connected")),
           "last_error": doc.get("last_error") if running else None,
           "offline_since": iso_ms(int(doc["offline_since"] * 1000)) if running and doc.get("offline_since") else None,
           "last_ack": iso_ms(int(doc["last_ack"] * 1000)) if doc.get("last_ack") else None}
    if backlog is not None:
        out["backlog"] = backlog["count"]
        out["backlog_oldest_age_s"] = backlog["oldest_age_s"]
    return out


def problems(cfg: Config, st: dict) -> list[str]:
    """What is wrong, each with what to do."""
    out = []
    for name, d in st["daemons"].items():
        if name == "sync" and not cfg.sync.broker:
            continue
        if name == "audio" and cfg.audio.source == "none":
            continue
        if name == "rf" and cfg.rf.source == "none" and not cfg.sensors:
            continue
        if d["state"] == "failed":
            out.append(f"daemon {name} failed ({d.get('result') or 'see its log'}): appliancectl logs {name}")
        elif d["state"] in ("starting", "stopping") and d.get("manager") == "systemd":
            out.append(f"daemon {name} is {d['state']} (not READY): appliancectl logs {name}")
        elif d["state"] != "running" and d.get("manager") == "systemd":
            out.append(f"daemon {name} is {d['state']}: systemctl start appliance-{name}")
    if not st["clock"]["synced"]:
        out.append("the clock is not synchronised: events wait for it (timedatectl set-ntp true; check the network)")
    disk = st.get("disk")
    if disk and disk["total_bytes"] and disk["free_bytes"] / disk["total_bytes"] < DISK_LOW:
        out.append(f"the disk is nearly full ({disk['free_bytes'] / 1e6:.0f} MB free): lower [journal] keep_raw_days "
                   "or [audio] retention, or free space")
    for stage in st.get("stages", ()):
        if stage["behind"] and stage["last_commit_age_s"] > STAGE_SILENT_S:
            out.append(f"stage {printable(stage['name'])} is {stage['behind']} events behind and silent for "
                       f"{stage['last_commit_age_s']:.0f} s: is its daemon running?")
    mic = st.get("microphone")
    if mic and mic["state"] != "ok" and cfg.audio.source != "none":
        out.append(f"the microphone is {printable(mic['state'])}"
                   + (f" ({printable(mic['error'])})" if mic.get("error") else "")
                   + ": check the cable and `arecord -l`, then appliancectl doctor")
    radio = st.get("radio")
    if radio and radio["state"] != "ok":
        out.append(f"the radio is {printable(radio['state'])} ({printable(radio.get('error') or '-')}): "
                   "check the receiver's USB cable or SPI wiring")
    for sid, s in (st.get("sensors") or {}).items():
        if s["verdict"] == "error":
            out.append(f"sensor {sid} cannot be read ({printable(s['error'])}): check [sensors.{sid}] pin and wiring")
        elif s["verdict"] in ("silent", "stuck"):
            what = "reports presence" if s["verdict"] == "stuck" else "has not changed"
            out.append(f"sensor {sid} {what} for {s['quiet_s'] / 3600:.1f} h: check it with appliancectl sensor watch")
    c = st["cloud"]
    if cfg.sync.broker:
        if not c["daemon_running"]:
            out.append("the sync daemon is not running: records wait in the journal (systemctl start appliance-sync)")
        elif not c["connected"]:
            out.append(f"not connected to {cfg.sync.broker}"
                       + (f": {printable(c['last_error'])}" if c.get("last_error") else "")
                       + " — appliancectl doctor checks the broker and TLS")
        age = c.get("backlog_oldest_age_s")
        if age is not None and age > BACKLOG_OLD_S:
            out.append(f"{c['backlog']} records have waited {age / 3600:.1f} h for the cloud")
    for name, d in (st.get("notifications") or {}).items():
        if d["dead_letters"]:
            out.append(f"notify {name}: {d['dead_letters']} dead letters (appliancectl notify status)")
    return out


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def render(st: dict, s: Style) -> list[str]:
    ok, bad, warn = (lambda t: s(t, "green")), (lambda t: s(t, "red")), (lambda t: s(t, "yellow"))
    out = [f"{s('Contact Analyzer', 'bold')} {__version__} — {st['config']}; points: {', '.join(st['points']) or 'none'}"]
    parts = []
    for name, d in st["daemons"].items():
        state = d["state"]
        text = (ok if state == "running" else bad if state == "failed" else warn)(state)
        extra = []
        if d.get("uptime_s") is not None:
            extra.append(f"up {_age(d['uptime_s'])}")
        if d.get("rss_mb") is not None:
            extra.append(f"{d['rss_mb']:.0f} MB")
        if d.get("restarts"):
            extra.append(f"{d['restarts']} restarts")
        parts.append(f"{name} {text}" + (f" ({', '.join(extra)})" if extra else ""))
    out.append("  daemons: " + "; ".join(parts))
    for name, d in st["daemons"].items():
        if d.get("status"):
            out.append(f"    {name}: {printable(d['status'])}")
    clock = ok("synchronised") if st["clock"]["synced"] else bad("NOT synchronised")
    disk = st.get("disk")
    disk_text = "-" if not disk else f"{disk['free_bytes'] / 1e9:.1f} of {disk['total_bytes'] / 1e9:.1f} GB free"
    wear = st.get("sd_writes")
    wear_text = f"; writes {wear['per_hour_bytes'] / 1e6:.1f} MB/h since boot ({wear['device']})" if wear else ""
    out.append(f"  clock {clock}; disk {disk_text}{wear_text}")
    if "events" not in st:
        out.append(f"  journal: {st['state']}")
    else:
        out.append(f"  journal: {st['events']} events, {st['size_bytes'] / 1e6:.1f} MB, {st['oldest_event'] or '-'} "
                   f"… {st['last_event'] or '-'}; raw kept {st['retention']['keep_raw_days']:g} d, records "
                   f"{st['retention']['keep_days']:g} d")
        stages = ", ".join(f"{printable(x['name'])} " + (ok("up to date") if not x["behind"] else
                           (warn if x["last_commit_age_s"] < STAGE_SILENT_S else bad)(f"{x['behind']} behind"))
                           for x in st["stages"])
        out.append(f"  stages: {stages or 'none yet'}")
        mic = st.get("microphone")
        if mic:
            level = f", {mic['rms_db']:.0f} dBFS" if mic.get("rms_db") is not None else ""
            out.append(f"  microphone: {(ok if mic['state'] == 'ok' else bad)(printable(mic['state']))} since "
                       f"{mic['since']}{level}" + (f" ({printable(mic['error'])})" if mic.get("error") else ""))
        radio = st.get("radio")
        rf_text = f"last press {st['rf_last_press']}" if st.get("rf_last_press") else "no press yet"
        if radio and radio["state"] != "ok":
            rf_text += "; " + bad(f"radio {printable(radio['state'])} since {radio['since']}")
        if st.get("unknown_remote_presses"):
            rf_text += f"; {st['unknown_remote_presses']} unknown-remote presses"
        out.append(f"  rf: {rf_text}")
        for rid, r in (st.get("remotes") or {}).items():
            heard = r["last_heard"] or warn("not heard recently")
            out.append(f"    remote {rid} ({r['point']}): {heard}")
        for sid, sen in (st.get("sensors") or {}).items():
            if sen["last_change"] is None:
                state = "never heard"
            else:
                state = f"{'present' if sen['present'] else 'clear'} since {sen['last_change']}"
            colour = ok if sen["verdict"] == "ok" else bad if sen["verdict"] == "error" else warn
            out.append(f"  sensor {sid} ({sen['kind']}, {sen['point']}): {colour(sen['verdict'])}, {state}")
        clips = st.get("clips")
        if clips:
            forced = clips["deleted_before_ack"]
            out.append(f"  clips: {clips['made']} made, {clips['deleted']} deleted"
                       + (warn(f", {forced} before the cloud acknowledged them") if forced else ""))
        for name, d in st["notifications"].items():
            dead = bad(f", {d['dead_letters']} dead letters") if d["dead_letters"] else ""
            out.append(f"  notify {name} ({d['kind']}): {d['outbox']} queued, last sent {d['last_success'] or 'never'}"
                       f"{dead}")
        if st.get("unsynced_clock_events"):
            out.append(warn(f"  {st['unsynced_clock_events']} events wait for the clock to synchronise"))
        p = st.get("last_pruning")
        if p:
            out.append(f"  last pruning: {p['at']}, {p['count']} {p['kind']} events older than {p['before']}")
        r = st.get("last_rebuild")
        if r:
            out.append(f"  last rebuild: {r['at']}, records from {r['since'] or 'the start'} derived again "
                       f"({r['deleted']} deleted, {r['derived']} derived)")
    c = st["cloud"]
    if c["broker"]:
        link = ok("connected") if c["connected"] else bad("not connected" if c["daemon_running"] else
                                                           "sync daemon not running")
        since = f" since {c['offline_since']}" if not c["connected"] and c.get("offline_since") else ""
        out.append(f"  cloud {c['broker']}: {link}{since}; backlog {c.get('backlog', '-')} records, oldest "
                   f"{_age(c.get('backlog_oldest_age_s'))}; last ack {c['last_ack'] or '-'}")
    else:
        out.append("  cloud: no [sync] broker configured")
    if "by_type" in st:
        out.append("  events: " + ", ".join(f"{printable(k)} {n}" for k, n in st["by_type"].items()))
    if st["problems"]:
        out.append(bad(f"{len(st['problems'])} problem(s):"))
        out += [f"  - {p}" for p in st["problems"]]
    else:
        out.append(ok("no problems"))
    return out
