"""Routing and delivery through the journal: a day through the live core reaches each real
destination on loopback with exactly what its rules select; failures are retried with
backoff, nothing is lost or sent twice after a success, dead letters after N; a clip is
waited for, then the message goes without it; staff calls notify, escalate and are answered
at the right times; windowed alerts open and close by themselves; reports are sent once."""
from __future__ import annotations

import hashlib
import json
import random

import pytest

from appliance import alerts
from appliance import vocabulary as v
from appliance.config import parse_config
from appliance.core import CoreStage
from appliance.events import load_file
from appliance.journal import Journal, NewEvent
from appliance.notify.delivery import Courier, RouteStage, backoff_s
from appliance.notify.report import extender
from appliance.replay import replay_file
from appliance.timefmt import iso_ms, parse_ts
from tests.conftest import clip_event, write_events
from tests.notify_servers import HttpRecorder, Modem, SmtpServer, free_port
from tests.pki import CA

T0 = parse_ts("2026-11-20T08:00:00Z")
BASE = """
[device]
id = "box-7"
state_dir = "{state}"
[time]
timezone = "Europe/Berlin"
[audio]
source = "alsa"                 # a microphone: messages wait for their tracks
[points.till1]
pos = true
rating_scale = {{ 1 = "negative", 2 = "negative", 3 = "neutral", 4 = "neutral", 5 = "top" }}
[points.till2]
rating_scale = {{ 1 = "negative", 2 = "top" }}
[[points.till2.shifts]]
staff = "carl"
start = "00:00"
end = "23:59"
"""


def day(seed: int, hours: int = 10) -> list[dict]:
    rnd = random.Random(seed)
    out, receipt = [], 0
    for point, values in (("till1", [1, 2, 3, 4, 5, 5]), ("till2", [1, 2, 2])):
        t = T0
        if point == "till1":
            out.append({"ts": iso_ms(t - 60_000), "type": "staff", "point": point, "staff": "anna"})
        while t < T0 + hours * 3_600_000:
            if point == "till1" and rnd.random() < 0.05:
                out.append({"ts": iso_ms(t), "type": "staff", "point": point, "staff": rnd.choice(["anna", "boris"])})
            dur = rnd.randint(20_000, 300_000)
            out.append({"ts": iso_ms(t), "type": "presence", "point": point, "state": "arrived"})
            for _ in range(rnd.choice([0, 1, 1, 2])):
                out.append({"ts": iso_ms(t + rnd.randint(0, dur + 25_000)), "type": "rating", "point": point,
                            "value": rnd.choice(values)})
            if point == "till1" and rnd.random() < 0.6:
                receipt += 1
                out.append({"ts": iso_ms(t + rnd.randint(0, dur)), "type": "sale", "point": point,
                            "receipt": f"R{receipt}", "amount": 12.5})
            out.append({"ts": iso_ms(t + dur), "type": "presence", "point": point, "state": "left"})
            if rnd.random() < 0.08:
                out.append({"ts": iso_ms(t + 1000), "type": "call", "point": point,
                            "press": rnd.choice(["short", "short", "long"])})
                if rnd.random() < 0.6:
                    out.append({"ts": iso_ms(t + rnd.randint(5_000, 240_000)), "type": "answer", "point": point})
            t += dur + rnd.randint(0, 600_000)
    out.sort(key=lambda e: e["ts"])
    return out


def drive(cfg, j: Journal, routes: list[RouteStage], couriers: list[Courier], now: int, rounds: int = 400) -> None:
    core = CoreStage(cfg, j, reorder_ms=0)
    while j.cursor("core") < j.last_seq() or core.state.held:
        core.step(now)
    for _ in range(rounds):
        for r in routes:
            r.step()
        busy = sum(c.step(j) for c in couriers)
        pending = j.db.execute("SELECT COUNT(*) FROM outbox WHERE dead = 0").fetchone()[0]
        if not busy and not pending:
            return
        import time
        time.sleep(0.02)
    left = j.db.execute("SELECT destination, COUNT(*), MAX(attempts), MAX(last_error) FROM outbox GROUP BY 1").fetchall()
    raise AssertionError(f"the outboxes did not drain: {left}")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = CA(tmp_path_factory.mktemp("pki"))
    return ca, *ca.issue("127.0.0.1", server=True)


def test_a_routed_day_reaches_each_destination_with_exactly_what_its_rules_select(tmp_path, pki):
    ca, cert, key = pki
    web, tg, smtp, modem = HttpRecorder(), HttpRecorder(), SmtpServer(cert, key), Modem()
    try:
        cfg = parse_config(BASE.format(state=tmp_path) + f"""
[notifications.crm]
kind = "webhook"
url = "{web.url}/hook"
secret = "hook-secret"
on = ["negative"]
clip_wait_s = 0.5
[notifications.shift]
kind = "telegram"
token = "42:XYZ"
chat_id = "7"
api_base = "{tg.url}"
on = []
ratings = ["negative"]
points = ["till1"]
attach = "press"
clip_wait_s = 0.2
[notifications.qa]
kind = "email"
host = "127.0.0.1"
port = {smtp.port}
username = "box"
password = "s3cret"
ca_file = "{ca.path}"
sender = "box@shop.example"
to = ["qa@shop.example"]
on = ["unproductive"]
owners = ["anna"]
attach = "none"
[notifications.log]
kind = "csv"
directory = "{tmp_path / 'log'}"
calls = true
[notifications.duty]
kind = "sms"
device = "{modem.device}"
to = ["+4915100000001"]
escalations = true
""")
        (tmp_path / "clips").mkdir()
        src = write_events(tmp_path / "day.jsonl", day(5))
        records, errors, _ = replay_file(cfg, str(src))
        assert not errors
        with Journal(tmp_path / "journal.db") as j:
            routes = [RouteStage(cfg, j, name, "box-7", extender(cfg, j)) for name in cfg.notifications]
            couriers = [Courier(cfg, j.path, name, seed=1) for name in cfg.notifications]
            evs, errs = load_file(str(src), cfg)
            assert not errs
            j.append_many(evs)
            # the audio daemon cut the track of every negative contact at till2
            negative2 = [c for k, c in records if k == "contact" and "negative" in c.tags and c.point == "till2"]
            core = CoreStage(cfg, j, reorder_ms=0)
            while j.cursor("core") < j.last_seq() or core.state.held:
                core.step(parse_ts("2026-11-21T00:00:00Z"))
            ids = {(c["point"], c["opened"]): c["contact"] for c in (e.data for e in j.iter_all([v.CONTACT]))}
            for c in negative2:
                cid = ids[(c.point, iso_ms(c.opened))]
                data = f"audio of {cid}".encode()
                (tmp_path / "clips" / f"{cid}.ogg").write_bytes(data)
                j.append(clip_event(cid, data, c.closed + 3000, c.point))
            drive(cfg, j, routes, couriers, parse_ts("2026-11-21T00:00:00Z"))
            dead = j.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            sent = j.count(v.NOTIFICATION_SENT)
        contacts = [c for k, c in records if k == "contact"]
        presses = [r for k, r in records if k == "rating" and r.status != "misuse"]
        # webhook: every negative contact, with its clip where one was cut
        got = {(r.json()["contact"]["point"], r.json()["contact"]["opened"]) for r in web.requests}
        want = {(c.point, iso_ms(c.opened)) for c in contacts if "negative" in c.tags}
        assert got == want and len(web.requests) == len(want) and want
        clipped = [r.json()["contact"] for r in web.requests if "clip" in r.json()["contact"]]
        assert len(clipped) == len(negative2) and all(c["point"] == "till2" for c in clipped)
        assert all(c["clip"]["sha256"] == hashlib.sha256(f"audio of {c['id']}".encode()).hexdigest() for c in clipped)
        # telegram: negative presses at till1 the moment they happened, without audio (no track was cut)
        tg_got = sorted(json.loads(r.body)["text"].split("\n")[1] for r in tg.requests)
        tg_want = sorted(f"time: {iso_ms(r.t)}" for r in presses if r.point == "till1" and r.cls == "negative")
        assert tg_got == tg_want and tg_want
        assert all(r.path == "/bot42:XYZ/sendMessage" and "(audio not available)" in r.json()["text"]
                   for r in tg.requests)
        # e-mail: unproductive contacts of anna only
        subjects = sorted(m["Subject"] for _, _, m in smtp.messages)
        want_mail = [c for c in contacts if "unproductive" in c.tags and c.owner == "anna"]
        assert len(subjects) == len(want_mail) and want_mail
        # CSV: every press but misuse, and every call opened (complaints are escalations)
        lines = (tmp_path / "log" / "2026-11-20.csv").read_text().splitlines()[1:]
        assert sorted(ln.split(",")[0] for ln in lines if ",rating," in ln) == sorted(iso_ms(r.t) for r in presses)
        calls = [e for e in day(5) if e["type"] == "call"]
        opened = _calls_opened(calls, day(5))
        assert sum(",call," in ln for ln in lines) == sum(1 for c in opened if not c["opened_as_complaint"])
        # SMS: complaints and escalations only
        assert len(modem.sent) == sum(1 for c in opened if c["complaint"] or c["escalated"]) > 0, [t.split("\n")[:2] for _, t in modem.sent]
        assert dead == 0 and sent == len(web.requests) + len(tg.requests) + len(smtp.messages) + len(lines) + len(
            modem.sent)
    finally:
        web.close(), tg.close(), smtp.close(), modem.close()


def _calls_opened(calls: list[dict], events: list[dict]) -> list[dict]:
    """An independent count of the calls: a call opens when none is open at its point; an
    answer closes it; a complaint is escalated at once; an open call 120 s old escalates."""
    out, open_ = [], {}
    for e in events:
        p = e["point"]
        t = parse_ts(e["ts"])
        c = open_.get(p)
        if c and not c["escalated"] and t >= c["t"] + 120_000:
            c["escalated"] = True
        if e["type"] == "call":
            if c is None:
                c = open_[p] = {"t": t, "complaint": e["press"] == "long", "escalated": e["press"] == "long",
                                "opened_as_complaint": e["press"] == "long"}
                out.append(c)
            elif e["press"] == "long" and not c["complaint"]:
                c["complaint"] = True
                c["escalated"] = True
        elif e["type"] == "answer" and c is not None:
            del open_[p]
    for c in open_.values():
        c["escalated"] = True                               # the day ended long after
    return out


def _one_destination(tmp_path, extra: str, name: str = "hook"):
    cfg = parse_config(BASE.format(state=tmp_path) + extra)
    j = Journal(tmp_path / "journal.db")
    return cfg, j, RouteStage(cfg, j, name, "box-7")


def _negative_press(j: Journal, t: int, point: str = "till1") -> None:
    j.append(NewEvent("rating", t, {"value": 1, "class": "negative"}, point, "test"))


class FakeClock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_failures_are_retried_with_backoff_and_never_sent_twice_after_success(tmp_path):
    srv = HttpRecorder(plan=[500, "hang", 503])
    srv.hang_s = 1.0
    try:
        cfg, j, route = _one_destination(tmp_path, f"""
[notifications.hook]
kind = "webhook"
url = "{srv.url}/h"
ratings = ["negative"]
retry_s = 1.0
timeout_s = 0.3
max_attempts = 10
""")
        clock = FakeClock(1_800_000_000.0)
        courier = Courier(cfg, j.path, "hook", clock=clock, seed=3)
        route.clock = clock
        _negative_press(j, T0)
        core = CoreStage(cfg, j, reorder_ms=0)
        core.step(T0 + 1000)
        assert route.step() == 1
        due = []
        for _ in range(6):
            courier.step(j)
            row = j.db.execute("SELECT attempts, due FROM outbox").fetchone()
            if row is None:
                break
            due.append(row)
            clock.t = row[1] / 1000                      # the next attempt is due: time jumps there
        # 500, timeout, 503: three failures, each next attempt later by ~1, 2, 4 s (±25 %)
        gaps = [(b[1] - a[1]) / 1000 for a, b in zip(due, due[1:], strict=False)]
        assert [a for a, _ in due] == [1, 2, 3] and 1.5 <= gaps[0] <= 2.5 and 3 <= gaps[1] <= 5
        assert len(srv.ok()) == 1 and srv.statuses == [500, 503, 200]
        for _ in range(5):                               # nothing left, nothing again
            route.step()
            courier.step(j)
        assert len(srv.requests) == 3 and j.count(v.NOTIFICATION_SENT) == 1
        [sent] = [v.read(e, v.NotificationSent) for e in j.iter_all([v.NOTIFICATION_SENT])]
        assert sent.attempts == 4
        assert {r.headers["Idempotency-Key"] for r in srv.requests} == {sent.key}
        j.close()
    finally:
        srv.close()


def test_dead_letters_after_max_attempts_and_the_rest_goes_on(tmp_path):
    port = free_port()                                    # nobody listens: refused
    cfg, j, route = _one_destination(tmp_path, f"""
[notifications.hook]
kind = "webhook"
url = "http://127.0.0.1:{port}/h"
ratings = ["negative"]
retry_s = 0.01
max_attempts = 3
""")
    courier = Courier(cfg, j.path, "hook", seed=1)
    for i in range(3):
        _negative_press(j, T0 + i * 1000)
    CoreStage(cfg, j, reorder_ms=0).step(T0 + 10_000)
    route.step()
    import time
    for _ in range(50):
        courier.step(j)
        if j.count(v.NOTIFICATION_DEAD) == 3:
            break
        time.sleep(0.03)
    assert j.count(v.NOTIFICATION_DEAD) == 3
    rows = j.db.execute("SELECT attempts, dead, last_error FROM outbox").fetchall()
    assert all(a == 3 and d == 1 and "Refused" in e for a, d, e in rows)
    from appliance.cli.notify import notify_status
    st = notify_status(cfg, j, int(time.time() * 1000))["hook"]
    assert st["dead_letters"] == 3 and st["outbox"] == 0 and st["last_success"] is None
    j.close()


def test_backoff_doubles_with_jitter_up_to_an_hour():
    rnd = random.Random(0)
    for attempts, base in ((1, 5), (2, 10), (3, 20), (20, 3600)):
        xs = [backoff_s(attempts, 5.0, rnd) for _ in range(200)]
        assert base * 0.75 <= min(xs) and max(xs) <= base * 1.25 and max(xs) - min(xs) > base * 0.2


def test_a_clip_is_waited_for_then_attached(tmp_path):
    srv = HttpRecorder()
    try:
        cfg, j, route = _one_destination(tmp_path, f"""
[notifications.hook]
kind = "webhook"
url = "{srv.url}/h"
on = ["rated"]
clip_wait_s = 30
""")
        clock = FakeClock(1_800_000_000.0)
        courier = Courier(cfg, j.path, "hook", clock=clock)
        route.clock = clock
        j.append_many([NewEvent("presence", T0, {"state": "arrived"}, "till1", "t"),
                       NewEvent("rating", T0 + 5000, {"value": 5, "class": "top"}, "till1", "t"),
                       NewEvent("presence", T0 + 30_000, {"state": "left"}, "till1", "t")])
        CoreStage(cfg, j, reorder_ms=0).step(T0 + 120_000)
        route.step()
        courier.step(j)
        assert srv.requests == []                         # not cut yet: waits
        clock.t += 3
        courier.step(j)
        assert srv.requests == []
        [cid] = [e.data["contact"] for e in j.iter_all([v.CONTACT])]
        (tmp_path / "clips").mkdir()
        (tmp_path / "clips" / f"{cid}.ogg").write_bytes(b"the track")
        j.append(clip_event(cid, b"the track", T0 + 33_000))
        clock.t += 3
        courier.step(j)
        [r] = srv.requests
        assert r.json()["contact"]["clip"]["sha256"] == hashlib.sha256(b"the track").hexdigest()
        j.close()
    finally:
        srv.close()


def test_a_clip_not_cut_in_time_is_left_out_and_said(tmp_path):
    srv = HttpRecorder()
    try:
        cfg, j, route = _one_destination(tmp_path, f"""
[notifications.hook]
kind = "webhook"
url = "{srv.url}/h"
ratings = ["negative"]
attach = "press"
clip_wait_s = 10
""")
        clock = FakeClock(1_800_000_000.0)
        courier = Courier(cfg, j.path, "hook", clock=clock)
        route.clock = clock
        _negative_press(j, T0)
        CoreStage(cfg, j, reorder_ms=0).step(T0 + 1000)
        route.step()
        courier.step(j)
        assert srv.requests == []
        clock.t += 11
        courier.step(j)
        [r] = srv.requests
        assert r.json()["clip_missing"] is True and "clip" not in r.json()["rating"]
        j.close()
    finally:
        srv.close()


def test_a_staff_call_notifies_escalates_and_is_answered_at_the_right_times(tmp_path):
    staff, manager = HttpRecorder(), HttpRecorder()
    try:
        cfg = parse_config(BASE.format(state=tmp_path) + f"""
[remotes.a1]
point = "till2"
buttons = {{ 1 = {{ meaning = "call", name = "till 2 call", location = "checkout 2", type_code = 7, extra = {{ floor = "ground" }} }} }}
[remotes.f1]
point = "till2"
buttons = {{ 1 = {{ meaning = "answer", staff = "carl" }} }}
[notifications.staff]
kind = "webhook"
url = "{staff.url}/s"
calls = true
[notifications.manager]
kind = "webhook"
url = "{manager.url}/m"
escalations = true
""")
        from appliance.events import map_button
        with Journal(tmp_path / "journal.db") as j:
            routes = [RouteStage(cfg, j, n, "box-7") for n in ("staff", "manager")]
            couriers = [Courier(cfg, j.path, n) for n in ("staff", "manager")]
            press = parse_ts("2026-11-20T10:00:00Z")
            core = CoreStage(cfg, j, reorder_ms=0)

            def at(t):
                core.step(t)
                for r in routes:
                    r.step()
                for c in couriers:
                    c.step(j)
            # 10:00:00 a short press: the staff destination at once, nobody else
            j.append(map_button("a1", 1, "short", press, cfg))
            at(press + 100)
            [call] = [r.json()["call"] for r in staff.requests]
            assert call["location"] == "checkout 2" and call["type_code"] == 7 and call["floor"] == "ground"
            assert call["opened"] == "2026-11-20T10:00:00.000Z" and not call["escalated"]
            assert call["recipients"] == ["staff"] and call["escalation"] == ["manager"]
            assert manager.requests == []
            at(press + 119_999)                               # 2 min not yet passed: no escalation
            assert manager.requests == []
            at(press + 120_000)                               # escalate_after_s = 120: the manager now
            [esc] = [r.json()["call"] for r in manager.requests]
            assert esc["escalated"] and esc["id"] == call["id"]
            # 10:03:00 carl's fob answers: the call closes, 180 s to answer
            j.append(map_button("f1", 1, "short", press + 180_000, cfg))
            at(press + 181_000)
            [settled] = [v.read(e, v.CallSettled) for e in j.iter_all([v.CALL_SETTLED])]
            assert settled.answered_s == 180.0 and settled.escalated and not settled.complaint
            # 10:10 a call answered after 30 s: cancelled before it escalates
            j.append(map_button("a1", 1, "short", press + 600_000, cfg))
            at(press + 601_000)
            j.append(map_button("f1", 1, "short", press + 630_000, cfg))
            at(press + 900_000)
            assert len(staff.requests) == 2 and len(manager.requests) == 1
            # 10:20 a held button: a complaint straight to the manager, not to the staff
            j.append(map_button("a1", 1, "long", press + 1_200_000, cfg))
            at(press + 1_201_000)
            assert len(staff.requests) == 2 and manager.requests[-1].json()["call"]["complaint"] is True
            from appliance.cli.report import grouped_journal
            m = grouped_journal(cfg, j, "point", None, None)["till2"]
            assert (m["calls"], m["calls_answered"], m["call_escalations"], m["call_complaints"]) == (2, 2, 1, 0)
            assert m["call_answer_mean_s"] == 105.0
    finally:
        staff.close(), manager.close()


def test_a_windowed_alert_opens_and_closes_by_itself(tmp_path):
    cfg, j, route = _one_destination(tmp_path, """
[notifications.hook]
kind = "webhook"
url = "http://127.0.0.1:9/h"
[[notifications.hook.windows]]
metric = "negative_share"
above = 0.5
over_s = 900
min_count = 4
""")
    core = CoreStage(cfg, j, reorder_ms=0)
    for i, val in enumerate([5, 1, 1, 5]):                    # 2 of 4 negative: 50 %
        j.append(NewEvent("rating", T0 + i * 60_000, {"value": val, "class": "top" if val == 5 else "negative"},
                          "till1", "t"))
    core.step(T0 + 240_000)
    assert alerts.evaluate(cfg, j, T0 + 240_000) == 1
    assert alerts.evaluate(cfg, j, T0 + 250_000) == 0          # open: not again
    [opened] = [v.read(e, v.AlertOpened) for e in j.iter_all([v.ALERT_OPENED])]
    assert opened.rule == "windows[0]" and "negative_share 0.50 ≥ 0.5" in opened.what and "4 ratings" in opened.what
    for i in range(4):
        j.append(NewEvent("rating", T0 + 300_000 + i * 1000, {"value": 5, "class": "top"}, "till1", "t"))
    core.step(T0 + 310_000)
    assert alerts.evaluate(cfg, j, T0 + 310_000) == 1            # 2 of 8: recovered
    assert j.count(v.ALERT_CLOSED) == 1
    route.step()
    kinds = [json.loads(m)["body"]["alert"]["state"] for (m,) in j.db.execute("SELECT message FROM outbox")]
    assert kinds == ["open", "closed"]
    j.close()


def test_silence_and_reports(tmp_path):
    srv = HttpRecorder()
    try:
        cfg, j, route = _one_destination(tmp_path, f"""
[notifications.hook]
kind = "webhook"
url = "{srv.url}/h"
[[notifications.hook.silence]]
what = "point"
id = "till1"
after_s = 3600
start = "09:00"
end = "21:00"
[[notifications.hook.reports]]
every = "day"
at = "21:00"
""")
        evs, _ = load_file(str(write_events(tmp_path / "d.jsonl", day(9, hours=3))), cfg)
        j.append_many(evs)
        CoreStage(cfg, j, reorder_ms=0).step(parse_ts("2026-11-20T19:00:00Z"))
        # local (Berlin) 13:30: till1's last event was before 12:00 -> quiet for more than an hour
        last = max(e.ts for e in evs if e.point == "till1")
        noon = parse_ts("2026-11-20T12:30:00Z")
        assert last < noon - 3_600_000
        assert alerts.evaluate(cfg, j, noon) >= 1
        assert [v.read(e, v.AlertOpened).rule for e in j.iter_all([v.ALERT_OPENED])] == ["silence[0]"]
        # 21:00 local: the day's report, once
        closing = parse_ts("2026-11-20T20:00:00Z")
        j.append(NewEvent("presence", closing - 1000, {"state": "arrived"}, "till1", "t"))
        assert alerts.evaluate(cfg, j, closing) >= 1
        alerts.evaluate(cfg, j, closing + 30_000)
        [due] = [v.read(e, v.ReportDue) for e in j.iter_all([v.REPORT_DUE])]
        assert (due.start, due.end) == ("2026-11-19T23:00:00.000Z", "2026-11-20T20:00:00.000Z")
        route.extend = extender(cfg, j)
        route.step()
        courier = Courier(cfg, j.path, "hook")
        for _ in range(5):
            courier.step(j)
        reports = [r.json() for r in srv.requests if r.json()["event"] == "report"]
        [rep] = reports
        body = rep["report"]
        assert body["points"]["till1"]["contacts"] > 0 and body["owners"]
        from appliance.cli.report import grouped_journal
        assert body["points"]["till1"]["contacts"] == grouped_journal(
            cfg, j, "point", parse_ts(due.start), parse_ts(due.end))["till1"]["contacts"]
        j.close()
    finally:
        srv.close()


def test_the_report_chart_is_a_png_drawn_in_a_child_process():
    from appliance.notify.chart import render_in_child
    png = render_in_child([[f"2026-11-20T{h:02d}:00", 10 + h, h % 3] for h in range(8, 21)])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" in png[-12:]
    import struct
    w, h = struct.unpack(">II", png[16:24])
    assert (w, h) == (640, 320)


def test_notification_rules_are_checked_with_their_key_paths():
    from appliance.errors import ConfigError
    with pytest.raises(ConfigError) as err:
        parse_config(BASE.format(state="/tmp/x") + """
[notifications.a]
kind = "webhook"
url = "ftp://nope"
on = ["negativ"]
""")
    assert 'notifications.a.on[0]: expected one of' in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config(BASE.format(state="/tmp/x") + """
[notifications.a]
kind = "webhook"
url = "ftp://nope"
ratings = ["negative", 9]
points = ["till9"]
[[notifications.a.silence]]
what = "microphone"
id = "x"
""")
    text = str(err.value)
    with pytest.raises(ConfigError, match=r'notifications.s.attach: an SMS carries no audio'):
        parse_config(BASE.format(state="/tmp/x") + '[notifications.s]\nkind = "sms"\nto = ["+4917"]\nattach = "press"\n')
    for part in ("notifications.a.points[0]: no point \"till9\"", "notifications.a.ratings[1]: 9 is on no point",
                 "notifications.a.silence[0].id: the microphone takes no id", "notifications.a.url: expected an http"):
        assert part in text, text


def test_a_modem_that_answers_error_is_retried_and_the_text_goes_once(tmp_path):
    modem = Modem(fail_sends=2)
    try:
        cfg, j, route = _one_destination(tmp_path, f"""
[notifications.duty]
kind = "sms"
device = "{modem.device}"
to = ["+4915100000009"]
ratings = ["negative"]
retry_s = 0.01
timeout_s = 3
""", name="duty")
        courier = Courier(cfg, j.path, "duty", seed=2)
        _negative_press(j, T0)
        CoreStage(cfg, j, reorder_ms=0).step(T0 + 1000)
        route.step()
        import time
        for _ in range(100):
            courier.step(j)
            if j.count(v.NOTIFICATION_SENT):
                break
            time.sleep(0.02)
        [sent] = [v.read(e, v.NotificationSent) for e in j.iter_all([v.NOTIFICATION_SENT])]
        assert sent.attempts == 3 and courier.failed == 2                  # ERROR, ERROR, then through
        assert [num for num, _ in modem.sent] == ["+4915100000009"]        # the text went once
        for _ in range(5):
            courier.step(j)
        assert len(modem.sent) == 1 and j.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
        j.close()
    finally:
        modem.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")     # the death is the point
def test_a_courier_that_dies_makes_the_core_unhealthy(tmp_path):
    """A dead courier thread is noticed: the core daemon stops petting the watchdog."""
    from appliance.notify import Notifications
    cfg, j, _ = _one_destination(tmp_path, """
[notifications.hook]
kind = "webhook"
url = "http://127.0.0.1:9/h"
""")
    n = Notifications(cfg, j, "box-7")
    n.couriers[0].journal_path = tmp_path             # a folder: it cannot open its journal
    n.start()
    n.threads[0].join(5)
    assert not n.alive()
    n.stop()
    ok = Notifications(cfg, j, "box-7").start()
    assert ok.alive()
    ok.stop()
    assert not ok.threads[0].is_alive()
    j.close()
