"""The web office (``fleetctl serve``): the overview, the contacts with their audio, the
devices, for users with roles scoped to groups of stores. Starlette with Jinja2 templates:
plain HTML forms and links, server-rendered SVG charts, no script needed.

Every page and clip needs a session (a random token in an HttpOnly, Secure, SameSite=Strict
cookie, stored hashed); every form carries the session's CSRF token and is refused without
it (and from another origin); logins are throttled per name and per address; a clip is
served only from the ingest's clips folder, found by its id in the database (never a path
from the URL), to a user whose scope holds its device and whose role listens, and every
play or download is written to the audit log."""
from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..ingest import in_group
from . import contacts as cl
from . import figures
from .accounts import Accounts, User
from .charts import bars
from .db import Database
from .figures import Scope
from .periods import PERIODS, PeriodError, period
from .retention import prune_clips

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "office_session"
LOGIN_COOKIE = "office_login"
MEDIA = {".ogg": "audio/ogg", ".opus": "audio/ogg", ".wav": "audio/wav", ".flac": "audio/flac"}
HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self';"
                               " script-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


class SecurityHeaders:
    """Pure ASGI: the headers above on every response; pages are never cached."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for k, v in HEADERS.items():
                    if k.encode() not in names:
                        headers.append((k.encode(), v.encode()))
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)
        await self.app(scope, receive, send_with)


@dataclass
class Place:
    device: str
    store: str | None
    group: str | None
    online: bool
    last_seen: int | None


class Office:
    def __init__(self, target: str, clips_dir: str | Path | None, tz: str = "UTC", silent_after_min: float = 60,
                 clock=time.time, clip_max_age_days: float | None = None, hasher=None):
        ZoneInfo(tz)                                    # an unknown zone fails here, at start
        self.db = Database(target)
        self.accounts = Accounts(self.db, clock, hasher)
        self.accounts.create()
        self.clips_dir = Path(clips_dir).resolve() if clips_dir else None
        self.tz = tz
        self.silent_after_ms = int(silent_after_min * 60_000)
        self.clock = clock
        self.clip_max_age_days = clip_max_age_days
        self.templates = Jinja2Templates(directory=HERE / "templates")
        env = self.templates.env
        env.filters.update(pct=_pct, num=_num, secs=_secs, money=_money, when=self._when)
        env.globals.update(PERIODS=PERIODS)
        self._stop = threading.Event()
        self._fleet: dict[tuple[int, int], tuple[float, figures.Rank]] = {}
        self._fleet_lock = threading.Lock()

    # --- the pruner --------------------------------------------------------------------------

    def start_retention(self, every_s: float = 3600) -> threading.Thread | None:
        if not (self.clip_max_age_days and self.clips_dir):
            return None

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    n = prune_clips(self.db, self.accounts, self.clips_dir, self.clip_max_age_days, self.clock())
                    if n:
                        log.info("office: %d clip(s) past %g days deleted", n, self.clip_max_age_days)
                except Exception:  # noqa: BLE001 - the next round tries again; the error is in the log
                    log.exception("office: clip retention failed")
                self._stop.wait(every_s)
        t = threading.Thread(target=loop, name="office-retention", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()
        self.db.close()

    FLEET_TTL_S = 300.0

    def fleet_figure(self, since_ms: int, until_ms: int) -> figures.Rank:
        """The whole fleet's contacts, CSI, CDI, response and conversion for a period: the
        rankings' benchmark, kept FLEET_TTL_S (a scoped overview does not read the whole
        fleet's month on every view)."""
        key, now = (since_ms, until_ms), self.clock()
        with self._fleet_lock:
            hit = self._fleet.get(key)
        if hit and now - hit[0] < self.FLEET_TTL_S:
            return hit[1]
        r = _whole(figures.overview(self.db.conn(), self.db.ph, Scope(), since_ms, until_ms).ranks["point"])
        with self._fleet_lock:
            if len(self._fleet) > 64:
                self._fleet.clear()
            self._fleet[key] = (now, r)
        return r

    # --- formatting -------------------------------------------------------------------------

    def _when(self, ms: int | None) -> str:
        if ms is None:
            return "never"
        return datetime.fromtimestamp(ms / 1000, ZoneInfo(self.tz)).strftime("%Y-%m-%d %H:%M:%S")

    # --- who and where ----------------------------------------------------------------------

    def places(self) -> list[Place]:
        rows = self.db.execute("SELECT d.id, p.store, p.grp, d.online, d.last_seen FROM devices d"
                               " LEFT JOIN device_places p ON p.device = d.id ORDER BY d.id").fetchall()
        return [Place(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

    def visible(self, user: User) -> list[Place]:
        return [p for p in self.places() if user.sees(p.group)]

    def scope_of(self, user: User, value: str | None, seen: list[Place]) -> tuple[Scope, str]:
        """The ``scope`` parameter (``group:G``, ``store:S``, ``point:D/P``, ``owner:O``, empty =
        all the user sees: ``seen``, :meth:`visible`) as a :class:`Scope` and its label; 403
        outside the user's scope."""
        ids = tuple(p.device for p in seen)
        everything = user.role == "admin"
        if not value:
            return Scope(None if everything else ids), "fleet" if everything else "all my stores"
        kind, _, name = value.partition(":")
        if not name or len(name) > 200:
            raise HTTPException(400, "scope: group:NAME, store:NAME, point:DEVICE/POINT or owner:NAME")
        if kind in ("group", "store"):
            mine = tuple(p.device for p in seen if (in_group(p.group, name) if kind == "group" else p.store == name))
            if not mine and not everything:     # another's or none: the answer does not tell which
                raise HTTPException(403, f"this {kind} is not in your scope")
            return Scope(mine), f"{kind} {name}"
        if kind == "point":
            device, _, point = name.partition("/")
            if not point:
                raise HTTPException(400, "scope: point:DEVICE/POINT")
            if device not in ids:
                raise HTTPException(403, "this point is not in your scope")
            return Scope((device,), point), f"point {name}"
        if kind == "owner":
            return Scope(None if everything else ids, owner=name), f"employee {name}"
        raise HTTPException(400, "scope: group:NAME, store:NAME, point:DEVICE/POINT or owner:NAME")

    # --- requests ---------------------------------------------------------------------------

    def user(self, request: Request) -> tuple[User, str]:
        found = self.accounts.session(request.cookies.get(COOKIE))
        if found is None:
            raise _LoginNeeded
        return found

    def render(self, request: Request, template: str, status: int = 200, **ctx) -> Response:
        return self.templates.TemplateResponse(request, template, ctx, status_code=status)

    def check_form(self, request: Request, form, csrf: str) -> None:
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise HTTPException(403, "a form from another site")
        if not self.accounts.csrf_ok(csrf, form.get("csrf")):
            raise HTTPException(403, "the form's token is missing or stale: reload the page and try again")


class _LoginNeeded(Exception):
    pass


def _pct(x) -> str:
    return "–" if x is None else f"{x * 100:.1f} %"


def _num(x, digits: int = 0) -> str:
    return "–" if x is None else f"{x:,.{digits}f}".replace(",", " ")


def _secs(x) -> str:
    if x is None:
        return "–"
    return f"{x:.0f} s" if x < 120 else f"{x / 60:.1f} min"


def _money(cents_or_amount, cents: bool = False) -> str:
    if cents_or_amount is None:
        return "–"
    v = cents_or_amount / 100 if cents else cents_or_amount
    return f"{v:,.2f}".replace(",", " ")


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "?"


def _local_next(value: str | None) -> str:
    """Only a path of this site (``/…``, never ``//host`` or a scheme) is followed after login."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value and len(value) < 2000:
        return value
    return "/"


def create_app(office: Office) -> Starlette:
    o = office

    def login_form(request: Request, error: str | None = None, status: int = 200, name: str = "") -> Response:
        token = secrets.token_urlsafe(24)
        resp = o.render(request, "login.html", status, error=error, csrf=token, name=name,
                        next=_local_next(request.query_params.get("next")))
        resp.set_cookie(LOGIN_COOKIE, token, httponly=True, secure=True, samesite="strict", max_age=3600)
        return resp

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return login_form(request)
        form = await request.form()
        expected = request.cookies.get(LOGIN_COOKIE) or ""
        if not expected or not o.accounts.csrf_ok(expected, form.get("csrf")):
            raise HTTPException(403, "the login form's token is missing or stale: reload the page")
        name, password = str(form.get("name") or "")[:200], str(form.get("password") or "")[:1000]
        keys = {"user": name, "ip": _client_ip(request)}

        def attempt():
            wait = o.accounts.wait_s(keys)
            if wait > 0:
                return wait, None
            user = o.accounts.verify(name, password)
            (o.accounts.succeeded if user else o.accounts.failed)(keys)
            return 0, user
        wait, user = await run_in_threadpool(attempt)
        if wait:
            resp = login_form(request, f"Too many wrong passwords: try again in {wait:.0f} s.", 429, name)
            resp.headers["retry-after"] = str(max(1, round(wait)))
            return resp
        if user is None:
            return login_form(request, "Wrong name or password.", 401, name)
        token, _ = o.accounts.open_session(user)
        resp = RedirectResponse(_local_next(str(form.get("next") or "/")), 303)
        resp.set_cookie(COOKIE, token, httponly=True, secure=True, samesite="strict", path="/")
        resp.delete_cookie(LOGIN_COOKIE)
        return resp

    async def logout(request: Request) -> Response:
        user, csrf = o.user(request)
        o.check_form(request, await request.form(), csrf)
        o.accounts.close_session(request.cookies.get(COOKIE))
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return resp

    def _period(request: Request):
        q = request.query_params
        try:
            return period(q.get("period"), q.get("from"), q.get("to"), o.tz, o.clock())
        except PeriodError as exc:
            raise HTTPException(400, str(exc)) from None

    def overview(request: Request) -> Response:
        user, csrf = o.user(request)
        per = _period(request)
        seen = o.visible(user)
        scope, label = o.scope_of(user, request.query_params.get("scope"), seen)
        db, ph = o.db.conn(), o.db.ph
        store_of = {p.device: p.store for p in seen}
        ov = figures.overview(db, ph, scope, per.since_ms, per.until_ms, lambda d: store_of.get(d) or f"({d})")
        m = ov.tally.result()
        trend = figures.trends(db, ph, scope, per.since_ms, per.until_ms, o.tz)
        hours = list(range(24))
        by_hour = [trend.by_hour.get(h, [0] * 5) for h in hours]
        days = per.days
        by_day = [trend.by_day.get(d, [0] * 5) for d in days]
        charts = [
            bars("Contacts by day", [d[5:] for d in days], [x[0] for x in by_day],
                 [x[2] / x[0] if x[0] else None for x in by_day], "CSI"),
            bars("Contacts by hour of day", [f"{h:02d}" for h in hours], [x[0] for x in by_hour],
                 [x[2] / x[0] if x[0] else None for x in by_hour], "CSI"),
        ]
        ranks = {"stores": ov.ranks["store"], "points": ov.ranks["point"], "employees": ov.ranks["owner"]}
        fleet = o.fleet_figure(per.since_ms, per.until_ms) if scope.devices is not None or scope.point or \
            scope.owner else _whole(ov.ranks["point"])
        scopes = _scope_options(seen, ranks, user)
        return o.render(request, "overview.html", user=user, csrf=csrf, m=m, per=per, label=label,
                        charts=charts, ranks=ranks, fleet=fleet, scopes=scopes,
                        scope=request.query_params.get("scope") or "", page="overview")

    def contact_list(request: Request, negatives: bool = False) -> Response:
        user, csrf = o.user(request)
        q = dict(request.query_params)
        if negatives:
            q.setdefault("period", "week")
            q["tag"] = "negative"
            q.setdefault("reviewed", "no")
        try:
            f = cl.Filters.parse(q)
            per = period(q.get("period"), q.get("from"), q.get("to"), o.tz, o.clock())
        except (cl.FilterError, PeriodError) as exc:
            raise HTTPException(400, str(exc)) from None
        scope, label = o.scope_of(user, q.get("scope"), o.visible(user))
        rows = cl.page(o.db.conn(), o.db.ph, scope, per.since_ms, per.until_ms, f)
        more = len(rows) > cl.PAGE
        rows = rows[:cl.PAGE]
        base = {k: v for k, v in q.items() if k in ("period", "from", "to", "scope")}
        nxt = ("?" + urlencode({**base, **f.query(), "after": rows[-1].mark})) if more else None
        return o.render(request, "contacts.html", user=user, csrf=csrf, rows=rows, f=f, per=per, label=label,
                        q=q, next=nxt, negatives=negatives, page="negatives" if negatives else "contacts",
                        tags=sorted(cl.TAG_BIT), scope=q.get("scope") or "")

    def _contact_in_scope(user: User, device: str) -> None:
        if device not in {p.device for p in o.visible(user)}:
            raise HTTPException(403, "this contact's store is not in your scope")

    def contact_page(request: Request) -> Response:
        user, csrf = o.user(request)
        device, contact = request.path_params["device"], request.path_params["contact"]
        _contact_in_scope(user, device)
        d = cl.detail(o.db.conn(), o.db.ph, device, contact)
        if d is None:
            raise HTTPException(404, "no such contact")
        return o.render(request, "contact.html", user=user, csrf=csrf, d=d, c=d.row, page="contacts")

    async def review(request: Request) -> Response:
        user, csrf = await run_in_threadpool(o.user, request)
        form = await request.form()
        o.check_form(request, form, csrf)
        device, contact = request.path_params["device"], request.path_params["contact"]
        if not user.reviews:
            raise HTTPException(403, "a viewer does not review contacts")
        await run_in_threadpool(_contact_in_scope, user, device)
        comment = str(form.get("comment") or "").strip()[:2000]

        def write():
            if cl.detail(o.db.conn(), o.db.ph, device, contact) is None:
                raise HTTPException(404, "no such contact")
            cl.review(o.db, device, contact, user.name, int(o.clock() * 1000), comment)
        await run_in_threadpool(write)
        return RedirectResponse(f"/contacts/{device}/{contact}", 303)

    def devices_page(request: Request) -> Response:
        user, csrf = o.user(request)
        seen = {p.device: p for p in o.visible(user)}
        rows = o.db.execute("SELECT d.id, s.health, s.health_at, s.info, s.reported FROM devices d"
                            " LEFT JOIN device_state s ON s.device = d.id ORDER BY d.id").fetchall()
        now_ms = int(o.clock() * 1000)
        out = []
        for dev, health, health_at, info, reported in rows:
            p = seen.get(dev)
            if p is None:
                continue
            out.append(_device_row(p, _json(health), health_at, _json(info), _json(reported), now_ms,
                                   o.silent_after_ms))
        return o.render(request, "devices.html", user=user, csrf=csrf, rows=out, page="devices",
                        silent_min=o.silent_after_ms // 60_000)

    def clip(request: Request) -> Response:
        user, _ = o.user(request)
        device, clip_id = request.path_params["device"], request.path_params["clip"]
        _contact_in_scope(user, device)
        if not user.listens:
            raise HTTPException(403, "a viewer does not listen to customers' audio")
        if o.clips_dir is None:
            raise HTTPException(404, "this office serves no clips (start it with --clips DIR)")
        row = o.db.execute("SELECT file FROM clips WHERE device = ? AND id = ?", (device, clip_id)).fetchone()
        if row is None:
            raise HTTPException(404, "no such clip (not uploaded yet, or past its retention)")
        path = Path(row[0]).resolve()
        if not path.is_relative_to(o.clips_dir) or not path.is_file():
            raise HTTPException(404, "no such clip")
        download = request.query_params.get("download") == "1"
        rng = request.headers.get("range", "")
        if download or not rng or rng.replace(" ", "").startswith("bytes=0-"):
            o.accounts.audit(user.name, "download" if download else "play", device, clip_id, None,
                             _client_ip(request))
        media = MEDIA.get(path.suffix.lower(), "application/octet-stream")
        headers = {"cache-control": "private, no-store"}
        return FileResponse(path, media_type=media, headers=headers,
                            filename=path.name if download else None,
                            content_disposition_type="attachment" if download else "inline")

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, _LoginNeeded):
            if request.url.path.startswith("/clips/") or request.method != "GET":
                return Response("log in first\n", 401, media_type="text/plain")
            return RedirectResponse("/login?" + urlencode({"next": str(request.url.path) + (
                "?" + request.url.query if request.url.query else "")}), 303)
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error (see the server's log)"
        if code == 500:
            log.error("office: %s %s failed: %r", request.method, request.url.path, exc)
        return o.templates.TemplateResponse(request, "error.html", {"code": code, "detail": detail, "user": None},
                                            status_code=code)

    def contacts_route(request: Request) -> Response:
        return contact_list(request)

    def negatives_route(request: Request) -> Response:
        return contact_list(request, negatives=True)

    def healthz(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    routes = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", overview),
        Route("/contacts", contacts_route),
        Route("/negatives", negatives_route),
        Route("/contacts/{device}/{contact}", contact_page),
        Route("/contacts/{device}/{contact}/review", review, methods=["POST"]),
        Route("/devices", devices_page),
        Route("/clips/{device}/{clip}", clip),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={_LoginNeeded: on_error, HTTPException: on_error,
                                                        Exception: on_error})
    app.add_middleware(SecurityHeaders)
    return app


def _whole(points: list[figures.Rank]) -> figures.Rank:
    """The sum of every point's row: the contacts' own figures, as each ranking row counts them."""
    out = figures.Rank("fleet")
    for r in points:
        out.contacts += r.contacts
        out.rated += r.rated
        out.top += r.top
        out.negative += r.negative
        out.receipts += r.receipts
    return out


def _json(text):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _scope_options(seen: list[Place], ranks: dict, user: User) -> list[tuple[str, str]]:
    """The scope picker's choices: the user's groups (and the levels above a store's group
    they may see), stores, points and employees of the period."""
    groups: set[str] = set()
    for p in seen:
        if p.group:
            parts = p.group.split("/")
            for i in range(1, len(parts) + 1):
                g = "/".join(parts[:i])
                if user.role == "admin" or any(in_group(g, mine) for mine in user.groups):
                    groups.add(g)
    out = [("", "Everything I see")]
    out += [(f"group:{g}", f"Group {g}") for g in sorted(groups)]
    out += [(f"store:{s}", f"Store {s}") for s in sorted({p.store for p in seen if p.store})]
    out += [(f"point:{r.key}", f"Point {r.key}") for r in sorted(ranks["points"], key=lambda r: r.key)]
    out += [(f"owner:{r.key}", f"Employee {r.key}") for r in sorted(ranks["employees"], key=lambda r: r.key)]
    return out


def _device_row(p: Place, health: dict | None, health_at: int | None, info: dict | None, reported: dict | None,
                now_ms: int, silent_after_ms: int) -> dict:
    h = health if isinstance(health, dict) else {}

    def sub(name: str) -> dict:
        x = h.get(name)
        return x if isinstance(x, dict) else {}
    backlog, disk, mic = sub("backlog"), sub("disk"), sub("microphone")
    sensors = h.get("sensors") if isinstance(h.get("sensors"), dict) else {}
    last = max([x for x in (p.last_seen, health_at) if x] or [0]) or None
    silent = last is None or now_ms - last > silent_after_ms
    versions = h.get("versions") if isinstance(h.get("versions"), dict) else {}
    free = disk.get("free_bytes")
    return {
        "device": p.device, "store": p.store, "group": p.group, "online": p.online, "last_seen": p.last_seen,
        "health_at": health_at, "silent": silent,
        "mic": mic.get("state"), "mic_db": mic.get("rms_db") if isinstance(mic.get("rms_db"), (int, float)) else None,
        "rf_last": h.get("rf_last_press"),
        "sensors": ", ".join(f"{k}: {v.get('verdict', '?') if isinstance(v, dict) else v}"
                             for k, v in list(sensors.items())[:6]),
        "backlog": backlog.get("count"), "backlog_age": backlog.get("oldest_age_s"),
        "disk_free": free / 2**20 if isinstance(free, (int, float)) else None,
        "version": (info or {}).get("version") if isinstance(info, dict) else None,
        "versions": ", ".join(f"{k} {v}" for k, v in list(versions.items())[:4]),
        "config": (f"v{reported.get('applied_version', '?')} {reported.get('status', '')}"
                   if isinstance(reported, dict) else None),
    }
