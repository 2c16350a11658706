"""``appliancectl notify test|status``, ``calls [--open]``, ``calls answer``, ``alerts
[--open]`` and ``alerts ack``."""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from .. import vocabulary as v
from ..config.schema import Config
from ..ids import device_id
from ..journal import JOURNAL_NAME, Journal, NewEvent
from ..timefmt import iso_ms
from .ui import EXIT_BAD_INPUT, EXIT_IO, EXIT_OK, Style, printable, table


def _journal(cfg: Config, readonly: bool = True) -> Journal | None:
    path = Path(cfg.device.state_dir) / JOURNAL_NAME
    if not path.exists():
        return None
    return Journal(path, readonly=readonly)


def cmd_notify_test(args: argparse.Namespace, cfg: Config) -> int:
    from ..notify.destinations import DeliveryError, open_destination
    from ..routing import test_message
    if args.name not in cfg.notifications:
        print(f"notify test: no destination {args.name!r} (configured: {', '.join(cfg.notifications) or 'none'})")
        return EXIT_BAD_INPUT
    msg = test_message(args.name, device_id(cfg), int(time.time() * 1000))
    t0 = time.monotonic()
    try:
        open_destination(cfg.notifications[args.name]).send(msg, None)
    except DeliveryError as exc:
        print(f"{args.name}: not delivered: {exc}")
        return EXIT_IO
    print(f"{args.name}: delivered in {time.monotonic() - t0:.2f} s")
    return EXIT_OK


def cmd_notify_retry(args: argparse.Namespace, cfg: Config) -> int:
    if args.name not in cfg.notifications:
        print(f"notify retry: no destination {args.name!r} (configured: {', '.join(cfg.notifications) or 'none'})")
        return EXIT_BAD_INPUT
    now = int(time.time() * 1000)
    with Journal.in_dir(cfg.device.state_dir) as j:
        with j.transaction() as db:
            n = db.execute("UPDATE outbox SET dead = 0, attempts = 0, due = ? WHERE destination = ? AND dead = 1",
                           (now, args.name)).rowcount
    print(f"{args.name}: {n} dead letter(s) queued again; appliance-core sends them now")
    return EXIT_OK


def notify_status(cfg: Config, j: Journal | None, now_ms: int) -> dict:
    out = {}
    for name, n in cfg.notifications.items():
        st: dict = {"kind": type(n).__struct_config__.tag, "outbox": 0, "oldest_s": None, "dead_letters": 0, "last_success": None,
                    "last_error": None, "dead": []}
        if j is not None:
            pending = j.db.execute("SELECT COUNT(*), MIN(created) FROM outbox WHERE destination = ? AND dead = 0",
                                   (name,)).fetchone()
            st["outbox"] = pending[0]
            st["oldest_s"] = round((now_ms - pending[1]) / 1000, 1) if pending[1] is not None else None
            dead = j.db.execute("SELECT key, attempts, last_error, due FROM outbox WHERE destination = ? AND dead = 1 "
                                "ORDER BY due DESC", (name,)).fetchall()
            st["dead_letters"] = len(dead)
            st["dead"] = [{"key": k, "attempts": a, "error": e, "at": iso_ms(d)} for k, a, e, d in dead[:10]]
            row = j.db.execute("SELECT ts FROM events WHERE type = ? AND json_extract(data, '$.destination') = ? "
                               "ORDER BY seq DESC LIMIT 1", (v.NOTIFICATION_SENT, name)).fetchone()
            st["last_success"] = iso_ms(row[0]) if row else None
            row = j.db.execute("SELECT last_error FROM outbox WHERE destination = ? AND last_error IS NOT NULL "
                               "ORDER BY due DESC LIMIT 1", (name,)).fetchone()
            st["last_error"] = row[0] if row else None
        out[name] = st
    return out


def cmd_notify_status(args: argparse.Namespace, cfg: Config) -> int:
    j = _journal(cfg)
    try:
        st = notify_status(cfg, j, int(time.time() * 1000))
    finally:
        if j is not None:
            j.close()
    if args.json:
        print(json.dumps(st, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not st:
        print("no destinations configured ([notifications.<name>] in the config)")
        return EXIT_OK
    s = Style()
    rows = [[name, d["kind"], d["outbox"], "-" if d["oldest_s"] is None else f"{d['oldest_s']:.0f} s",
             d["last_success"] or "never", s(str(d["dead_letters"]), "red") if d["dead_letters"] else "0",
             printable(d["last_error"] or "")[:60]] for name, d in st.items()]
    print(table(["destination", "kind", "outbox", "oldest", "last success", "dead", "last error"], rows, s))
    for name, d in st.items():
        for dl in d["dead"]:
            print(f"  {name}: dead letter {dl['key']} after {dl['attempts']} attempts: {printable(dl['error'])}")
    return EXIT_OK


def calls(j: Journal, since_ms: int) -> list[dict]:
    """Calls opened since ``since_ms`` and what became of them."""
    out: dict[str, dict] = {}
    for type_, point, ts, data in j.db.execute(
            "SELECT type, point, ts, data FROM events WHERE ts >= ? AND type IN (?, ?, ?)",
            (since_ms - 86_400_000, v.CALL_OPENED, v.CALL_ESCALATED, v.CALL_SETTLED)):
        d = json.loads(data)
        cid = d.get("call")
        if type_ == v.CALL_OPENED and ts >= since_ms:
            out[cid] = {"call": cid, "point": point, "opened": iso_ms(ts), "owner": d.get("owner"),
                        "complaint": d.get("complaint", False), "escalated": d.get("complaint", False),
                        "answered_s": None, "open": True, "name": d.get("name", ""), "location": d.get("location", "")}
        elif cid in out and type_ == v.CALL_ESCALATED:
            out[cid]["escalated"] = True
        elif cid in out and type_ == v.CALL_SETTLED:
            out[cid].update(open=False, answered_s=d.get("answered_s"))
    return sorted(out.values(), key=lambda c: c["opened"])


def _read(cfg: Config, query):
    """``query(journal)`` on the journal read-only; None (and a word) when there is none yet."""
    j = _journal(cfg)
    if j is None:
        print("no journal yet (appliance-core has not run)")
        return None
    with j:
        return query(j)


def cmd_calls(args: argparse.Namespace, cfg: Config) -> int:
    found = _read(cfg, lambda j: calls(j, int(time.time() * 1000) - round(args.days * 86_400_000)))
    if found is None:
        return EXIT_OK
    if args.open:
        found = [c for c in found if c["open"]]
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return EXIT_OK
    s = Style()
    rows = [[c["opened"], c["point"], printable(c["location"] or c["name"]), c["owner"] or "",
             s("open", "red") if c["open"] else f"answered in {c['answered_s']:.0f} s",
             ("complaint " if c["complaint"] else "") + ("escalated" if c["escalated"] else "")] for c in found]
    print(table(["opened", "point", "where", "owner", "state", ""], rows, s) if rows else "no calls")
    return EXIT_OK


def cmd_calls_answer(args: argparse.Namespace, cfg: Config) -> int:
    if args.point not in cfg.points:
        print(f"calls answer: no point {args.point!r} (points: {', '.join(cfg.points) or 'none'})")
        return EXIT_BAD_INPUT
    data = {"staff": args.staff} if args.staff else {}
    with Journal.in_dir(cfg.device.state_dir) as j:
        j.append(NewEvent(v.ANSWER, int(time.time() * 1000), data, args.point, "cli",
                          key=f"cli:answer:{args.point}:{time.time_ns()}:{os.getpid()}"))
    print(f"{args.point}: the open call is closed (if there is one) as soon as appliance-core takes this")
    return EXIT_OK


def alert_list(j: Journal) -> list[dict]:
    out: dict[str, dict] = {}
    for type_, ts, data in j.db.execute("SELECT type, ts, data FROM events WHERE type IN (?, ?, ?) ORDER BY seq",
                                        (v.ALERT_OPENED, v.ALERT_CLOSED, v.ALERT_ACKED)):
        d = json.loads(data)
        a = d["alert"]
        if type_ == v.ALERT_OPENED:
            out[a] = {"alert": a, "destination": d["destination"], "rule": d["rule"], "what": d["what"],
                      "opened": iso_ms(ts), "closed": None, "acked": None, "comment": ""}
        elif a in out and type_ == v.ALERT_CLOSED:
            out[a]["closed"] = iso_ms(ts)
        elif a in out:
            out[a].update(acked=iso_ms(ts), comment=d.get("comment", ""), by=d.get("by", ""))
    return list(out.values())


def cmd_alerts(args: argparse.Namespace, cfg: Config) -> int:
    found = _read(cfg, alert_list)
    if found is None:
        return EXIT_OK
    if args.open:
        found = [a for a in found if a["closed"] is None]
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return EXIT_OK
    rows = [[a["alert"], a["opened"], a["destination"], printable(a["what"]), "open" if a["closed"] is None
             else f"closed {a['closed']}", "acked: " + printable(a["comment"]) if a["acked"] else ""] for a in found]
    print(table(["alert", "opened", "destination", "what", "state", ""], rows, Style()) if rows else "no alerts")
    return EXIT_OK


def cmd_alerts_ack(args: argparse.Namespace, cfg: Config) -> int:
    with Journal.in_dir(cfg.device.state_dir) as j:
        if args.alert not in {a["alert"] for a in alert_list(j)}:
            print(f"alerts ack: no alert {args.alert!r} (appliancectl alerts lists them)")
            return EXIT_BAD_INPUT
        j.append(v.AlertAcked(alert=args.alert, comment=args.comment[:500], by=args.by[:64])
                 .as_event(int(time.time() * 1000), None, "cli"))
    print(f"alert {args.alert} acknowledged")
    return EXIT_OK


def register(sub, add) -> None:
    s = sub.add_parser("notify", help="notification destinations")
    nsub = s.add_subparsers(dest="notify_command", required=True, metavar="SUBCOMMAND")
    x = add(nsub, "test", "send a real test message to one destination (exit 0: it got through)", cmd_notify_test)
    x.add_argument("name")
    x = add(nsub, "status", "per destination: outbox, last success, last error, dead letters", cmd_notify_status)
    x.add_argument("--json", action="store_true")
    x = add(nsub, "retry", "queue a destination's dead letters again (after fixing what failed)", cmd_notify_retry)
    x.add_argument("name")

    s = add(sub, "calls", "staff calls: open, answered, escalated, complaints", cmd_calls)
    s.add_argument("--open", action="store_true", help="only the calls nobody answered yet")
    s.add_argument("--days", type=float, default=1.0, help="calls opened in the last this many days (default 1)")
    s.add_argument("--json", action="store_true")
    csub = s.add_subparsers(dest="calls_command", metavar="SUBCOMMAND")
    x = add(csub, "answer", "close the open call at a point (as a staff fob does)", cmd_calls_answer)
    x.add_argument("point")
    x.add_argument("--staff", help="who answered")

    s = add(sub, "alerts", "windowed and silence alerts: open, closed, acknowledged", cmd_alerts)
    s.add_argument("--open", action="store_true")
    s.add_argument("--json", action="store_true")
    asub = s.add_subparsers(dest="alerts_command", metavar="SUBCOMMAND")
    x = add(asub, "ack", "acknowledge an alert with a comment", cmd_alerts_ack)
    x.add_argument("alert")
    x.add_argument("--comment", default="")
    x.add_argument("--by", default="")
