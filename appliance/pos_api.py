"""The till's local HTTP API: receipts and cashier log-ins into the journal.

``POST /v1/sale``  ``{"point", "receipt", "amount"?, "items"?, "currency"?, "ts"?}``
``POST /v1/staff`` ``{"point", "staff", "action": "login"|"logout", "ts"?}``
``GET  /v1/health``

Every request needs ``Authorization: Bearer <pos.token>``. A body is validated whole
before anything is written; a receipt id already in the journal at that point answers
200 ``duplicate`` (a till retrying after a timeout doubles nothing); an event time outside
the box's window answers 400 naming ``ts``. Bound to ``pos.listen`` (default off; use a LAN
or loopback address, never 0.0.0.0 on an open network).

Anything on the shop's LAN may be hostile (ARCHITECTURE §11). The server is one asyncio
loop in one thread, HTTP/1.1 parsed by h11, with a cap on connections (at the cap the
connection that has waited longest without sending a request is closed to make room, and
when none is waiting the new one is closed at once; both counted), a deadline for each request's head and body, an idle
timeout on kept-alive connections, a listen backlog for bursts of tills, and one writer
thread that commits to the journal in small groups: idle or slow clients cost a socket,
not a thread, and never block a till's receipt; receipts arriving together are committed
together. Answers go out in one write with
``TCP_NODELAY`` (no Nagle/delayed-ACK stall on kept-alive connections).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
import queue
import threading
from collections import OrderedDict
from concurrent.futures import Future

import h11
import msgspec

from .clock import Clock
from .config.schema import Config
from .errors import EventError
from .events import from_dict
from .journal import Journal, NewEvent
from .limits import MAX_DEPTH, TimeWindow, nesting_depth

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
ROUTES = {"/v1/sale": "sale", "/v1/sales": "sale", "/v1/staff": "staff"}
BACKLOG = 256
MAX_CONNECTIONS = 256
HEAD_TIMEOUT_S = 10.0       # a request's line and headers, from its first byte (or from the last answer)
BODY_TIMEOUT_S = 10.0
MAX_HEAD = 16 * 1024


class JournalWriter:
    """The API's one journal writer: requests' events are committed in small groups (up to
    ``MAX_GROUP`` per transaction), so a burst of tills costs a few short write locks and the
    core stage and the drop folder keep their turn at the journal."""
    MAX_GROUP = 64

    def __init__(self, journal_path: str):
        self.journal_path = journal_path
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="pos-journal", daemon=True)
        self.thread.start()
        self.commits = 0

    def append(self, ev: NewEvent) -> Future:
        """The event's seq (None: its key was already there) once it is durable."""
        fut: Future = Future()
        self.queue.put((ev, fut))
        return fut

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(10)

    def _run(self) -> None:
        journal = Journal(self.journal_path)
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    return
                group = [item]
                while len(group) < self.MAX_GROUP:
                    try:
                        nxt = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self.queue.put(None)
                        break
                    group.append(nxt)
                try:
                    seqs = journal.append_many([ev for ev, _ in group])
                except Exception as exc:  # noqa: BLE001 - answered 500, the writer goes on
                    for _, fut in group:
                        fut.set_exception(exc)
                    continue
                self.commits += 1
                for (_, fut), seq in zip(group, seqs, strict=True):
                    fut.set_result(seq)
        finally:
            journal.close()


class PosApi:
    def __init__(self, cfg: Config, journal_path: str, clock: Clock, *, max_connections: int = MAX_CONNECTIONS,
                 head_timeout_s: float = HEAD_TIMEOUT_S, body_timeout_s: float = BODY_TIMEOUT_S):
        self.cfg = cfg
        self.token = cfg.pos.token.encode()
        self.journal_path = journal_path
        self.clock = clock
        self.max_connections = max_connections
        self.head_timeout_s = head_timeout_s
        self.body_timeout_s = body_timeout_s
        self.writer: JournalWriter | None = None         # started with the server
        host, _, port = cfg.pos.listen.rpartition(":")
        self.bind = (host.strip("[]"), int(port))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.base_events.Server | None = None
        self.thread: threading.Thread | None = None
        self.address: tuple[str, int] = self.bind
        self.open_connections = 0
        self.refused = 0            # connections closed at once over the cap
        self.evicted = 0            # idle connections closed to make room for new ones
        self.waiting: OrderedDict[int, asyncio.StreamWriter] = OrderedDict()   # connections without a request yet
        self.timed_out = 0          # clients too slow with a request's head or body
        self.requests = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- life ---------------------------------------------------------------------------

    def start(self) -> "PosApi":
        self.writer = JournalWriter(self.journal_path)
        self.thread = threading.Thread(target=self._run, name="pos-api", daemon=True)
        self.thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        log.info("POS API listening on %s:%d", *self.address)
        return self

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._serve, self.bind[0], self.bind[1], backlog=BACKLOG, limit=MAX_HEAD))
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._error = exc
            self._ready.set()
            return
        self.address = self.server.sockets[0].getsockname()[:2]
        self._ready.set()
        self.loop.run_forever()
        self.server.close()
        tasks = asyncio.all_tasks(self.loop)
        for t in tasks:
            t.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()

    def alive(self) -> bool:
        return (self.thread is not None and self.thread.is_alive() and self.writer is not None
                and self.writer.thread.is_alive())

    def stop(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not None:
            self.thread.join(10)
        if self.writer is not None:
            self.writer.stop()

    # --- the request's meaning (the writer thread) -----------------------------------------

    def window(self) -> TimeWindow:
        return TimeWindow.live(self.clock.now(), self.cfg.time.max_ahead_s)

    def parse(self, kind: str, raw: bytes) -> NewEvent | tuple[int, dict]:
        """A request body as the journal event it stands for, or the (status, answer) that
        refuses it. CPU only: the loop thread does it; the writer thread journals."""
        if nesting_depth(raw) > MAX_DEPTH:
            return 400, {"error": f"the body is nested deeper than {MAX_DEPTH} levels"}
        try:
            body = msgspec.json.decode(raw)
        except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
            return 400, {"error": f"not valid JSON: {str(exc)[:200]}"}
        if not isinstance(body, dict):
            return 400, {"error": "the body must be a JSON object"}
        body = dict(body)
        declared = body.pop("type", kind)
        if declared != kind:
            return 400, {"error": f"type {str(declared)[:40]!r} does not match the endpoint ({kind})"}
        body["type"] = kind
        stamp = None
        if "ts" not in body:   # the receive time, stamped like every local event (§3)
            stamp = self.clock.now()
            body["ts"] = stamp.ts
        try:
            ev = from_dict(body, self.cfg, self.window())
        except EventError as exc:
            return 400, {"error": exc.message}
        ev.source = "pos-http"
        if stamp is not None:
            ev.mono, ev.boot, ev.synced = stamp.mono, stamp.boot, stamp.synced
        return ev

    async def _answer_for(self, method: str, path: str, headers: dict[bytes, bytes], body: bytes) -> tuple[int, dict]:
        if not self._authorised(headers):
            return 401, {"error": "missing or wrong token (Authorization: Bearer <pos.token>)"}
        if method == "GET":
            return (200, {"status": "ok"}) if path == "/v1/health" else (404, {"error": f"no such endpoint {path}"})
        kind = ROUTES.get(path)
        if kind is None:
            return 404, {"error": f"no such endpoint {path} (use {', '.join(ROUTES)})"}
        try:
            ev = self.parse(kind, body)
            if isinstance(ev, tuple):
                return ev
            seq = await asyncio.wrap_future(self.writer.append(ev))
        except Exception:  # noqa: BLE001 - a bad request must never kill the daemon
            log.exception("POS request failed")
            return 500, {"error": "internal error; see the appliance log"}
        if seq is None:
            return 200, {"status": "duplicate", "receipt": ev.data.get("receipt")}
        return 201, {"status": "accepted", "seq": seq}

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and bool(self.token) and hmac.compare_digest(token.strip(), self.token)

    # --- the protocol (the loop thread) -----------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= self.max_connections:
            if self.waiting:                    # make room: the client that has waited longest without
                _, idler = self.waiting.popitem(last=False)     # sending a request goes (slowloris)
                idler.transport.abort()
                self.evicted += 1
            else:
                self.refused += 1
                writer.transport.abort()
                return
        self.open_connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while await self._one_request(conn, reader, writer):
                conn.start_next_cycle()
        except (ConnectionError, asyncio.IncompleteReadError, h11.LocalProtocolError):
            pass
        except Exception:  # noqa: BLE001 - one client fails alone
            log.exception("POS API: a connection failed")
        finally:
            self.open_connections -= 1
            writer.transport.abort()          # answers are drained before: nothing is lost

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader):
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await reader.read(16 * 1024))

    async def _one_request(self, conn: h11.Connection, reader, writer) -> bool:
        """Serve one request; True to keep the connection for another."""
        self.waiting[id(writer)] = writer
        try:
            request = await asyncio.wait_for(self._next(conn, reader), self.head_timeout_s)
        except asyncio.TimeoutError:
            self.timed_out += 1
            return False
        except h11.RemoteProtocolError as exc:
            await self._send(conn, writer, exc.error_status_hint or 400, {"error": f"bad HTTP request: {exc}"})
            return False
        finally:
            self.waiting.pop(id(writer), None)
        if not isinstance(request, h11.Request):        # ConnectionClosed, or nothing
            return False
        self.requests += 1
        method, path = request.method.decode("ascii", "replace"), request.target.decode("ascii", "replace")
        headers = {k.lower(): v for k, v in request.headers}
        length = headers.get(b"content-length")
        if method not in ("GET", "POST"):
            await self._send(conn, writer, 405, {"error": "use POST"}, [(b"allow", b"POST, GET")])
            return conn.our_state is h11.DONE and conn.their_state is h11.DONE
        if method == "POST":
            if length is None or not length.isdigit():
                await self._send(conn, writer, 411, {"error": "Content-Length required"}, close=True)
                return False
            if int(length) > MAX_BODY:
                await self._send(conn, writer, 413, {"error": f"body larger than {MAX_BODY} bytes"}, close=True)
                return False
        try:
            body = await asyncio.wait_for(self._body(conn, reader), self.body_timeout_s)
        except asyncio.TimeoutError:
            self.timed_out += 1
            return False
        status, answer = await self._answer_for(method, path, headers, body)
        extra = [(b"www-authenticate", b'Bearer realm="appliance-pos"')] if status == 401 else []
        await self._send(conn, writer, status, answer, extra)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _body(self, conn: h11.Connection, reader) -> bytes:
        parts, size = [], 0
        while True:
            event = await self._next(conn, reader)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    raise h11.LocalProtocolError("body too large")
                parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise ConnectionError("the client went away")

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int, body: dict,
                    extra: list | None = None, close: bool = False) -> None:
        data = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                   (b"server", b"appliance-pos/2"), *(extra or [])]
        if close:
            headers.append((b"connection", b"close"))
        out = b"".join((conn.send(h11.Response(status_code=status, headers=headers)), conn.send(h11.Data(data=data)),
                        conn.send(h11.EndOfMessage())))
        writer.write(out)                               # one write: head and body in one segment
        await writer.drain()
