"""The web office against a hostile browser, over real HTTP on loopback: nothing without a
session, CSRF on every form, clip URLs that cannot leave the clips folder, filters that are
data and never SQL or markup, password guessing slowed, scopes and roles on every URL."""
from __future__ import annotations

import sqlite3

import pytest
from argon2 import PasswordHasher

from fleet.office.accounts import FREE_FAILURES, SESSION_IDLE_S
from fleet.office.app import Office
from tests.fleet.office.conftest import NOW_S, PASSWORD, Client, Clock, Server, build_fleet

PAGES = ["/", "/contacts", "/negatives", "/devices", "/?period=month", "/contacts?tag=negative"]


def _contact_and_clip(fleet, device="box-n1"):
    return next((c, a[1]) for c, a in fleet.audio.items() if a[0] == device)


def test_nothing_without_a_session(server, fleet):
    c = Client(server.port)
    contact, clip = _contact_and_clip(fleet)
    for path in PAGES + [f"/contacts/box-n1/{contact}"]:
        status, headers, body = c.get(path)
        assert status == 303 and headers["location"].startswith("/login?next="), path
        assert b"box-n1" not in body
    for path in (f"/clips/box-n1/{clip}", f"/clips/box-n1/{clip}?download=1"):
        status, _, body = c.get(path)
        assert status == 401 and len(body) < 50
    for path in ("/logout", f"/contacts/box-n1/{contact}/review"):
        assert c.post(path, {"csrf": "x", "comment": "x"})[0] == 401
    # a made-up or stolen-looking cookie is no session
    c.cookies["office_session"] = "A" * 43
    assert c.get("/")[0] == 303
    c.cookies["office_session"] = "x" * 5000
    assert c.get("/")[0] in (303, 400, 431)
    # the public bits: the login page, the style sheet, a health check
    c.cookies.clear()
    assert c.get("/login")[0] == 200 and c.get("/static/office.css")[0] == 200 and c.get("/healthz")[0] == 200


def test_every_response_carries_the_security_headers(server):
    c = Client(server.port)
    for path in ("/login", "/", "/static/office.css"):
        _, h, _ = c.get(path)
        assert "script-src 'none'" in h["content-security-policy"] and "frame-ancestors 'none'" in \
            h["content-security-policy"]
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
    status, h, _ = c.get("/login")
    cookie = h["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    assert c.login("nora") == 303
    assert c.get("/")[1]["cache-control"] == "no-store"


def test_csrf_on_every_form(server, fleet):
    c = Client(server.port)
    # the login form: its own token, in a cookie and in the form
    token = c.csrf("/login")
    assert c.post("/login", {"name": "nora", "password": PASSWORD, "csrf": "forged"})[0] == 403
    c.cookies.pop("office_login")
    assert c.post("/login", {"name": "nora", "password": PASSWORD, "csrf": token})[0] == 403
    assert "office_session" not in c.cookies
    assert c.login("nora") == 303
    contact, _ = _contact_and_clip(fleet)
    review = f"/contacts/box-n1/{contact}/review"
    csrf = c.csrf(f"/contacts/box-n1/{contact}")
    for form, headers in (({"comment": "x"}, {}), ({"comment": "x", "csrf": ""}, {}),
                          ({"comment": "x", "csrf": csrf[:-1] + ("B" if csrf.endswith("A") else "A")}, {}),
                          ({"comment": "x", "csrf": csrf}, {"origin": "https://evil.example"})):
        status, _, body = c.post(review, form, headers=headers)
        assert status == 403, (form, headers)
    db = sqlite3.connect(fleet.db)
    assert db.execute("SELECT COUNT(*) FROM office_reviews WHERE contact = ?", (contact,)).fetchone()[0] == 0
    assert c.post("/logout", {"csrf": "nope"})[0] == 403
    assert c.get("/")[0] == 200                                     # still logged in
    status, h, _ = c.post(review, {"comment": "ok", "csrf": csrf}, headers={"origin": f"http://127.0.0.1:{c.port}"})
    assert status == 303
    assert db.execute("SELECT name, comment FROM office_reviews WHERE contact = ?", (contact,)).fetchone() == \
        ("nora", "ok")
    assert c.post("/logout", {"csrf": csrf})[0] == 303
    assert c.get("/")[0] == 303


def test_clip_urls_cannot_leave_the_clips_folder(server, fleet):
    c = Client(server.port)
    assert c.login("root") == 303
    secret = fleet.clips.parent / "secret.txt"
    secret.write_text("not for you")
    for path in ("/clips/box-n1/..%2f..%2fingest.db", "/clips/..%2F..%2Fetc/passwd", "/clips/box-n1/%2e%2e",
                 "/clips/box-n1/../../ingest.db", "/clips/%2e%2e/%2e%2e", "/clips/box-n1/..%5c..%5csecret.txt",
                 "/clips/box-n1/%00", "/static/../ingest.db", "/static/..%2f..%2fingest.db",
                 "/clips/box-n1/" + "a" * 5000):
        status, _, body = c.get(path)
        assert status in (400, 403, 404), path
        assert b"SQLite" not in body and b"not for you" not in body and b"root:" not in body
    # a tampered clips row pointing outside the folder is not followed either
    db = sqlite3.connect(fleet.db)
    db.execute("INSERT INTO clips VALUES ('box-n1', 'evil', ?, 1, 'x', '[]', '{}', 0)", (str(secret),))
    db.execute("INSERT INTO clips VALUES ('box-n1', 'evil2', ?, 1, 'x', '[]', '{}', 0)",
               (str(fleet.clips / "box-n1" / ".." / ".." / "secret.txt"),))
    db.commit()
    for clip in ("evil", "evil2"):
        status, _, body = c.get(f"/clips/box-n1/{clip}")
        assert status == 404 and b"not for you" not in body


INJECTIONS = ["' OR 1=1 --", "\"; DROP TABLE office_contacts; --", "<script>alert(1)</script>", "%00", "\x00",
              "../../etc/passwd", "9" * 400, "1e309", "-1", "{{7*7}}", "store:' OR '1'='1", "group:%",
              "owner:' UNION SELECT hash FROM office_users --", "point:box-s1/till1", "\u202e\u0000\ud800"[:2],
              "a" * 3000]
FILTERS = ["period", "from", "to", "scope", "tag", "point", "owner", "rating", "sale", "reviewed", "after"]


@pytest.mark.parametrize("path", ["/", "/contacts", "/negatives"])
def test_injection_attempts_in_every_filter(server, fleet, path):
    from urllib.parse import quote
    c = Client(server.port)
    assert c.login("nora") == 303
    db = sqlite3.connect(fleet.db)
    before = [db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("office_contacts", "office_users", "office_reviews", "clips")]
    for name in FILTERS:
        for value in INJECTIONS:
            status, _, body = c.get(f"{path}?period=month&{name}={quote(value, safe='')}")
            assert status in (200, 400, 403), (path, name, value, status)
            assert b"<script>alert(1)</script>" not in body
            # nothing of the south's data (a value typed in may come back, escaped, in a form field)
            assert b"argon2" not in body and b"/contacts/box-s1/" not in body and b">box-s1" not in body, \
                (path, name, value)
            assert b"49" not in body or b"{{7*7}}" not in body
    # a value is data: an employee named like SQL matches nobody (the list's filter refuses
    # such a name outright; the overview's scope takes any name and binds it)
    assert c.get("/contacts?period=month&owner=" + quote("' OR 1=1 --"))[0] == 400
    status, _, body = c.get("/?period=month&scope=" + quote("owner:' OR 1=1 --"))
    assert status == 200 and b'data-metric="contacts" data-value="0"' in body
    after = [db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
             for t in ("office_contacts", "office_users", "office_reviews", "clips")]
    assert after == before


def test_scopes_and_roles_on_every_url(server, fleet):
    south_contact, south_clip = _contact_and_clip(fleet, "box-s1")
    north_contact, north_clip = _contact_and_clip(fleet, "box-n1")
    nora, vera, root = Client(server.port), Client(server.port), Client(server.port)
    for cl, name in ((nora, "nora"), (vera, "vera"), (root, "root")):
        assert cl.login(name) == 303
    for path in (f"/clips/box-s1/{south_clip}", f"/clips/box-s1/{south_clip}?download=1",
                 f"/contacts/box-s1/{south_contact}", "/?scope=store:Vilnius", "/?scope=group:south",
                 "/?scope=point:box-s1/till1", "/contacts?scope=store:Vilnius", "/?scope=group:south/vilnius"):
        assert nora.get(path)[0] == 403, path
        assert root.get(path)[0] == 200, path
    csrf = nora.csrf(f"/contacts/box-n1/{north_contact}")
    assert nora.post(f"/contacts/box-s1/{south_contact}/review", {"csrf": csrf, "comment": "x"})[0] == 403
    # a point filter naming another group's box shows nothing of it
    status, _, body = nora.get("/contacts?period=month&point=box-s1/till1")
    assert status == 200 and b"No contacts match" in body and b"/contacts/box-s1/" not in body
    # the viewer sees the north's figures, hears nothing, reviews nothing
    assert vera.get("/?scope=store:Tartu")[0] == 200
    assert vera.get(f"/clips/box-n1/{north_clip}")[0] == 403
    status, _, body = vera.get(f"/contacts/box-n1/{north_contact}")
    assert status == 200 and b"<audio" not in body and b"does not listen" in body
    csrf = vera.csrf(f"/contacts/box-n1/{north_contact}")
    assert vera.post(f"/contacts/box-n1/{north_contact}/review", {"csrf": csrf, "comment": "x"})[0] == 403
    # every clip played or downloaded is in the audit log, with its user
    assert nora.get(f"/clips/box-n1/{north_clip}")[0] == 200
    assert nora.get(f"/clips/box-n1/{north_clip}?download=1")[1]["content-disposition"].startswith("attachment")
    status, h, body = nora.get(f"/clips/box-n1/{north_clip}", headers={"range": "bytes=100-199"})
    assert status == 206 and len(body) == 100 and h["content-range"].startswith("bytes 100-199/")
    rows = server.office.accounts.audit_log(name="nora")
    assert [(r["action"], r["clip"]) for r in rows[:2]] == [("download", north_clip), ("play", north_clip)]
    assert all(r["ip"] == "127.0.0.1" for r in rows)


@pytest.fixture
def lone_office(tmp_path):
    """An office of its own (its throttle and clock are changed by the test)."""
    fleet = build_fleet(tmp_path)
    clock = Clock(NOW_S)
    office = Office(fleet.db, fleet.clips, tz="UTC", clock=clock,
                    hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1), clip_max_age_days=None)
    s = Server(office).start()
    s.clock, s.fleet = clock, fleet
    yield s
    s.stop()


def test_password_guessing_is_slowed(lone_office):
    s = lone_office
    c = Client(s.port)
    for _ in range(FREE_FAILURES["user"]):
        assert c.login("root", "wrong password!") == 401
    # now even the right password waits, and the page says how long
    token = c.csrf("/login")
    status, h, body = c.post("/login", {"name": "root", "password": PASSWORD, "csrf": token})
    assert status == 429 and h["retry-after"] == "1" and b"try again in" in body
    s.clock.t += 1.5
    assert c.login("root", "wrong again!!") == 401            # the sixth wrong one doubles the wait
    s.clock.t += 1.5
    assert c.login("root") == 429
    s.clock.t += 1.0
    assert c.login("root") == 303                              # waited: in, and the count starts over
    # one address guessing many names is slowed too (its 6 wrong passwords above count)
    other = Client(s.port)
    for i in range(FREE_FAILURES["ip"] - 6):
        assert other.login(f"guess{i}", "x" * 12) == 401
    assert other.login("nora") == 429
    # the wait is capped: a guesser is slowed, a user is never locked out for good
    for _ in range(30):
        s.clock.t += 1000
        other.login(f"guess{_}", "x" * 12)
    s.clock.t += 901
    assert other.login("nora") == 303


def test_sessions_expire_when_idle_and_close_on_logout(lone_office):
    s = lone_office
    c = Client(s.port)
    assert c.login("nora") == 303
    stolen = dict(c.cookies)
    s.clock.t += SESSION_IDLE_S + 1
    assert c.get("/")[0] == 303
    assert c.login("nora") == 303
    csrf = c.csrf("/")
    assert c.post("/logout", {"csrf": csrf})[0] == 303
    replay = Client(s.port)
    replay.cookies.update(stolen)
    assert replay.get("/")[0] == 303                           # the old token opens nothing
    # a user changed by an admin is logged out everywhere
    assert c.login("nora") == 303
    s.office.accounts.set("nora", groups=["south"])
    assert c.get("/")[0] == 303


def test_clip_retention_deletes_old_clips_and_logs_it(lone_office):
    from fleet.office.retention import prune_clips
    s = lone_office
    fleet = s.fleet
    c = Client(s.port)
    assert c.login("root") == 303
    files = sorted(p for p in fleet.clips.rglob("*") if p.is_file())
    tracks = [*fleet.audio.values(), *fleet.press.values()]
    assert len(files) == len(tracks) == 5
    # every clip of the fixture is from the last six weeks: 60 days keeps them all, an hour none
    n = prune_clips(s.office.db, s.office.accounts, fleet.clips, 60, s.clock())
    assert n == 0 and all(p.exists() for p in files)
    assert all(c.get(f"/clips/{device}/{clip}")[0] == 200 for device, clip, _ in tracks)
    n = prune_clips(s.office.db, s.office.accounts, fleet.clips, 1 / 24, s.clock())
    assert n == 5 and not any(p.exists() for p in files)
    for device, clip, _ in tracks:
        assert c.get(f"/clips/{device}/{clip}")[0] == 404
    log = s.office.accounts.audit_log(name="retention")
    assert len(log) == 5 and {r["action"] for r in log} == {"delete"}
