"""Windowed alerts, silence alerts and scheduled reports (ARCHITECTURE §2, §5).

The core daemon runs :func:`evaluate` every half minute. For each destination's rules it
reads the figures of the window that ends now — instant rating presses for the share of
negative ratings, the records index for the indices (one formula: ``appliance.metrics``) — and
journals ``alert_opened`` when a rule's figure crosses its threshold, ``alert_closed`` when it
recovers. Whether an alert is open is read back from the journal, so a restart changes
nothing. A silence rule opens an alert when a point, a remote or the microphone stayed quiet
for longer than ``after_s`` inside its daily hours. A report rule journals ``report_due`` for
the period that just ended, once (its key). The decisions are pure functions of the figures
and the time (:func:`crossed`, :func:`quiet`, :func:`last_report`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time as dtime, timedelta
from zoneinfo import ZoneInfo

from . import records
from . import vocabulary as v
from .config.schema import Config, ReportRule, SilenceRule, WindowRule
from .ids import derived_id
from .journal import Journal
from .timefmt import iso_ms

log = logging.getLogger(__name__)

REPORT_LATE_MS = 6 * 3_600_000
"""A report missed (the box was off at its time) is still sent this long after."""
INPUT_TYPES = (v.PRESENCE, v.SENSOR, v.RATING, v.SALE, v.STAFF, v.CALL, v.ANSWER)
"""What counts as a point's or a remote's activity."""


# --- pure decisions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Figure:
    value: float | None             # None: too few ratings / contacts to judge
    count: int


def crossed(rule: WindowRule, fig: Figure) -> bool:
    """Is the figure on the bad side of the rule's threshold (with enough to judge)?"""
    if fig.value is None or fig.count < rule.min_count:
        return False
    if rule.above is not None:
        return fig.value >= rule.above
    return fig.value < rule.below


def describe(rule: WindowRule, fig: Figure) -> str:
    side = f"≥ {rule.above:g}" if rule.above is not None else f"< {rule.below:g}"
    value = "-" if fig.value is None else f"{fig.value:.2f}"
    unit = "ratings" if rule.metric == "negative_share" else "contacts"
    return f"{rule.metric} {value} {side} over {rule.over_s / 60:g} min ({fig.count} {unit})"


def in_hours(rule: SilenceRule, local: datetime) -> bool:
    hm = local.strftime("%H:%M")
    if rule.start <= rule.end:
        return rule.start <= hm < rule.end
    return hm >= rule.start or hm < rule.end        # over midnight


def quiet(rule: SilenceRule, now_ms: int, last_activity_ms: int | None, tz: str) -> bool:
    """Quiet for longer than ``after_s``, the whole quiet span inside today's hours."""
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(now_ms / 1000, zone)
    if not in_hours(rule, local):
        return False
    h, m = map(int, rule.start.split(":"))
    opened = local.replace(hour=h, minute=m, second=0, microsecond=0)
    if opened > local:
        opened -= timedelta(days=1)
    since = max(int(opened.timestamp() * 1000), last_activity_ms or 0)
    return now_ms - since > rule.after_s * 1000


def last_report(rule: ReportRule, now_ms: int, tz: str) -> tuple[int, int]:
    """[start, end) of the latest scheduled report due at or before now: the hour that just
    ended; the day until ``at``; the week (Monday to Monday) at ``at`` on Mondays."""
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(now_ms / 1000, zone)
    if rule.every == "hour":
        end = local.replace(minute=0, second=0, microsecond=0)
        return _ms(end - timedelta(hours=1)), _ms(end)
    h, m = map(int, rule.at.split(":"))
    day = local.date()
    due = datetime.combine(day, dtime(h, m), zone)
    if rule.every == "day":
        if due > local:
            day -= timedelta(days=1)
            due = datetime.combine(day, dtime(h, m), zone)
        return _ms(datetime.combine(day, dtime(0), zone)), _ms(due)
    monday = day - timedelta(days=day.weekday())
    if datetime.combine(monday, dtime(h, m), zone) > local:
        monday -= timedelta(days=7)
    return _ms(datetime.combine(monday - timedelta(days=7), dtime(0), zone)), _ms(datetime.combine(monday, dtime(0),
                                                                                                  zone))


def _ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


# --- figures from the journal ------------------------------------------------------------------

def figure(cfg: Config, journal: Journal, rule: WindowRule, points: list[str], now_ms: int) -> Figure:
    lo = now_ms - round(rule.over_s * 1000)
    if rule.metric == "negative_share":
        rows = journal.db.execute("SELECT point, data FROM events WHERE ts >= ? AND ts <= ? AND type = ?",
                                  (lo, now_ms, v.RATING_PRESSED)).fetchall()
        n = neg = 0
        for point, data in rows:
            if points and point not in points:
                continue
            r = v.check(v.RATING_PRESSED, data.encode())
            if not r.misuse:
                n += 1
                neg += r.cls == "negative"
        return Figure(neg / n if n else None, n)
    where = f"point IN ({','.join('?' * len(points))})" if points else ""
    tallies, _ = records.tally_scans(journal.db, [records.Scan([(lo, now_ms + 1)], where=where, args=tuple(points))])
    res = tallies.get("total")
    if res is None:
        return Figure(None, 0)
    m = res.result()
    return Figure(m[rule.metric], m["contacts"])


def last_activity(journal: Journal, rule: SilenceRule, since_ms: int) -> int | None:
    """The time of the latest activity of the rule's point / remote / microphone after
    ``since_ms`` (None: none), or, for the microphone, when it last stopped hearing."""
    if rule.what == "point":
        row = journal.db.execute(f"SELECT MAX(ts) FROM events WHERE ts >= ? AND point = ? AND type IN "
                                 f"({','.join('?' * len(INPUT_TYPES))})", (since_ms, rule.id, *INPUT_TYPES)).fetchone()
        return row[0]
    if rule.what == "remote":
        row = journal.db.execute(f"SELECT MAX(ts) FROM events WHERE ts >= ? AND type IN "
                                 f"({','.join('?' * len(INPUT_TYPES))}) AND json_extract(data, '$.remote') = ?",
                                 (since_ms, *INPUT_TYPES, rule.id.lower())).fetchone()
        return row[0]
    ev = journal.latest(v.MIC_STATE)
    if ev is None or v.read(ev, v.MicState).state not in ("silent", "lost"):
        return 1 << 62                      # hearing (or never said otherwise): never quiet
    return ev.ts


# --- the job -------------------------------------------------------------------------------------

def open_alerts(journal: Journal, destination: str) -> dict[str, str]:
    """rule -> alert id of the destination's alerts that are open (read from the journal)."""
    state: dict[str, str] = {}
    rows = journal.db.execute("SELECT type, data FROM events WHERE type IN (?, ?) AND json_extract(data, "
                              "'$.destination') = ? ORDER BY seq", (v.ALERT_OPENED, v.ALERT_CLOSED, destination))
    for type_, data in rows:
        a = v.check(type_, data.encode())
        if type_ == v.ALERT_OPENED:
            state[a.rule] = a.alert
        else:
            state.pop(a.rule, None)
    return state


def evaluate(cfg: Config, journal: Journal, now_ms: int) -> int:
    """Open and close the alerts and queue the reports that are due. Returns events written."""
    written = 0
    for name, n in cfg.notifications.items():
        if not (n.windows or n.silence or n.reports):
            continue
        open_ = open_alerts(journal, name)
        pts = list(n.points)
        for i, w in enumerate(n.windows):
            fig = figure(cfg, journal, w, pts, now_ms)
            written += _toggle(journal, name, f"windows[{i}]", crossed(w, fig), describe(w, fig), fig.value,
                               open_, now_ms, pts[0] if len(pts) == 1 else None)
        for i, s in enumerate(n.silence):
            last = last_activity(journal, s, now_ms - round(s.after_s * 1000) - 86_400_000)
            what = f"{s.what} {s.id}".strip() + f" quiet for more than {s.after_s / 60:g} min"
            written += _toggle(journal, name, f"silence[{i}]", quiet(s, now_ms, last, cfg.time.timezone), what, None,
                               open_, now_ms, s.id if s.what == "point" else None)
        for i, r in enumerate(n.reports):
            start, end = last_report(r, now_ms, cfg.time.timezone)
            if now_ms - end > REPORT_LATE_MS:
                continue                    # long down: a missed report is not sent the next day
            seq = journal.append(v.ReportDue(destination=name, every=r.every, start=iso_ms(start), end=iso_ms(end),
                                             chart=r.chart).as_event(end, None, "core", f"report:{name}:{i}:{end}"))
            written += seq is not None
    return written


def _toggle(journal: Journal, dest: str, rule: str, bad: bool, what: str, value: float | None,
            open_: dict[str, str], now_ms: int, point: str | None) -> int:
    if bad and rule not in open_:
        alert = derived_id(now_ms, "alert", dest, rule, now_ms)
        journal.append(v.AlertOpened(alert=alert, destination=dest, rule=rule, what=what, value=value)
                       .as_event(now_ms, point, "core", f"alert:{alert}"))
        log.warning("alert %s (%s %s): %s", alert, dest, rule, what)
        return 1
    if not bad and rule in open_:
        alert = open_[rule]
        journal.append(v.AlertClosed(alert=alert, destination=dest, rule=rule, what=what)
                       .as_event(now_ms, point, "core", f"alert_closed:{alert}"))
        log.info("alert %s (%s %s) closed: %s", alert, dest, rule, what)
        return 1
    return 0
