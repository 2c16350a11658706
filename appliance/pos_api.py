"""The till's local HTTP API: receipts and cashier log-ins into the journal.

``POST /v1/sale``  ``{"point", "receipt", "amount"?, "items"?, "currency"?, "ts"?}``
``POST /v1/staff`` ``{"point", "staff", "action": "login"|"logout", "ts"?}``
``GET  /v1/health``

Every request needs ``Authorization: Bearer <pos.token>``. A body is validated whole
before anything is written; a receipt id already in the journal at that point answers
200 ``duplicate`` (a till retrying after a timeout doubles nothing). Bound to
``pos.listen`` (default off; use a LAN or loopback address, never 0.0.0.0 on an open
network).
"""
from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .clock import Clock
from .config.schema import Config
from .errors import EventError
from .events import from_dict
from .journal import Journal

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
ROUTES = {"/v1/sale": "sale", "/v1/sales": "sale", "/v1/staff": "staff"}


class PosApi:
    def __init__(self, cfg: Config, journal_path: str, clock: Clock):
        self.cfg = cfg
        self.token = cfg.pos.token.encode()
        self.journal_path = journal_path
        self.clock = clock
        self.lock = threading.Lock()
        self._journal: Journal | None = None
        host, _, port = cfg.pos.listen.rpartition(":")
        self.server = ThreadingHTTPServer((host.strip("[]"), int(port)), self._handler())
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]

    def start(self) -> "PosApi":
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), name="pos-api",
                                       daemon=True)
        self.thread.start()
        log.info("POS API listening on %s:%d", *self.address)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._journal is not None:
            self._journal.close()

    def submit(self, kind: str, body: dict) -> tuple[int, dict]:
        """Validate and journal one request body. Returns (HTTP status, JSON answer)."""
        if not isinstance(body, dict):
            return 400, {"error": "the body must be a JSON object"}
        body = dict(body)
        declared = body.pop("type", kind)
        if declared != kind:
            return 400, {"error": f"type {declared!r} does not match the endpoint ({kind})"}
        body["type"] = kind
        stamp = None
        if "ts" not in body:   # the receive time, stamped like every local event (§3)
            stamp = self.clock.now()
            body["ts"] = stamp.ts
        try:
            ev = from_dict(body, self.cfg)
        except EventError as exc:
            return 400, {"error": exc.message}
        ev.source = "pos-http"
        if stamp is not None:
            ev.mono, ev.boot, ev.synced = stamp.mono, stamp.boot, stamp.synced
        with self.lock:
            if self._journal is None:
                self._journal = Journal(self.journal_path)
            seq = self._journal.append(ev)
        if seq is None:
            return 200, {"status": "duplicate", "receipt": ev.data.get("receipt")}
        return 201, {"status": "accepted", "seq": seq}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "appliance-pos/1"
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: object) -> None:  # no headers (token) in logs
                log.debug("pos %s %s", self.address_string(), fmt % args)

            def _answer(self, status: int, body: dict, extra: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                auth = self.headers.get("Authorization", "")
                scheme, _, token = auth.partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api.token):
                    return True
                self._answer(401, {"error": "missing or wrong token (Authorization: Bearer <pos.token>)"},
                             {"WWW-Authenticate": 'Bearer realm="appliance-pos"'})
                return False

            def do_GET(self) -> None:  # noqa: N802
                if self.path != "/v1/health":
                    self._answer(404, {"error": f"no such endpoint {self.path}"})
                elif self._authorised():
                    self._answer(200, {"status": "ok"})

            def do_POST(self) -> None:  # noqa: N802
                kind = ROUTES.get(self.path)
                length = self.headers.get("Content-Length", "")
                if not length.isdigit():
                    self._answer(411, {"error": "Content-Length required"})
                    self.close_connection = True
                    return
                if int(length) > MAX_BODY:
                    self._answer(413, {"error": f"body larger than {MAX_BODY} bytes"})
                    self.close_connection = True
                    return
                raw = self.rfile.read(int(length))
                if not self._authorised():
                    return
                if kind is None:
                    self._answer(404, {"error": f"no such endpoint {self.path} (use {', '.join(ROUTES)})"})
                    return
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as exc:
                    self._answer(400, {"error": f"not valid JSON: {exc}"})
                    return
                try:
                    status, answer = api.submit(kind, body)
                except Exception:  # noqa: BLE001 - a bad request must never kill the daemon
                    log.exception("POS request failed")
                    status, answer = 500, {"error": "internal error; see the appliance log"}
                self._answer(status, answer)

            def do_PUT(self) -> None:  # noqa: N802
                self._answer(405, {"error": "use POST"}, {"Allow": "POST, GET"})

            do_DELETE = do_PATCH = do_PUT

        return Handler
