"""Real servers on loopback for the notification tests: an HTTP server standing in for the
Telegram Bot API and for webhooks (it records every request and can fail on purpose), SMTP
(aiosmtpd, STARTTLS / implicit TLS, AUTH), FTP/FTPS (pyftpdlib) and a GSM modem on a pty
answering AT commands."""
from __future__ import annotations

import json
import os
import pty
import socket
import ssl
import threading
import time
import tty
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes
    t: float

    def json(self):
        return json.loads(self.body)

    def form(self) -> dict:
        """multipart/form-data -> {name: (filename or None, content type, bytes)}."""
        from email.parser import BytesParser
        from email.policy import HTTP
        msg = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + self.body)
        out = {}
        for part in msg.iter_parts():
            out[part.get_param("name", header="content-disposition")] = (
                part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        return out


@dataclass
class HttpRecorder:
    """Answers 200 (a Bot API ``{"ok": true}`` body) unless ``plan`` says otherwise: a list of
    statuses for the next requests, or "hang" (answer nothing for ``hang_s``)."""
    plan: list = field(default_factory=list)
    delay_s: float = 0.0
    hang_s: float = 5.0
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self):
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    what = rec.plan.pop(0) if rec.plan else 200
                if what == "hang":
                    time.sleep(rec.hang_s)
                    return
                if rec.delay_s:
                    time.sleep(rec.delay_s)
                status = int(what)
                with lock:
                    rec.requests.append(Request("POST", self.path, dict(self.headers), body, time.time()))
                    rec.statuses.append(status)
                out = json.dumps({"ok": status == 200, "result": {}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        lock = threading.Lock()
        self.statuses: list[int] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def ok(self) -> list[Request]:
        return [r for r, s in zip(self.requests, self.statuses, strict=True) if s == 200]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class SmtpServer:
    """aiosmtpd on loopback: STARTTLS (or implicit TLS) with the given certificate, AUTH
    LOGIN/PLAIN for ``user``/``password``; the messages it accepted in ``messages``."""

    def __init__(self, cert: Path, key: Path, implicit: bool = False, user: str = "box", password: str = "s3cret"):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult
        self.messages: list = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                from email import message_from_bytes
                from email.policy import default
                outer.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                       message_from_bytes(envelope.content, policy=default)))
                return "250 OK"

        def auth(server, session, envelope, mechanism, data):
            ok = data.login.decode() == user and data.password.decode() == password
            return AuthResult(success=ok)

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self.port = free_port()
        # implicit TLS: the whole session is encrypted (aiosmtpd only counts STARTTLS as TLS)
        kw = dict(hostname="127.0.0.1", port=self.port, authenticator=auth, auth_require_tls=not implicit)
        if implicit:
            self.controller = Controller(Handler(), ssl_context=ctx, **kw)
        else:
            self.controller = Controller(Handler(), tls_context=ctx, require_starttls=True, **kw)
        self.controller.start()

    def close(self):
        self.controller.stop()


class FtpServer:
    """pyftpdlib on loopback, one user with a home folder; FTPS (explicit TLS, protected
    data channel required) when ``cert`` is given."""

    def __init__(self, home: Path, cert: Path | None = None, key: Path | None = None,
                 user: str = "box", password: str = "s3cret"):
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
        from pyftpdlib.ioloop import IOLoop
        from pyftpdlib.servers import FTPServer
        home.mkdir(parents=True, exist_ok=True)
        auth = DummyAuthorizer()
        auth.add_user(user, password, str(home), perm="elradfmwMT")
        if cert is not None:
            handler = type("H", (TLS_FTPHandler,), {})
            handler.certfile, handler.keyfile = str(cert), str(key)
            handler.tls_control_required = handler.tls_data_required = True
        else:
            handler = type("H", (FTPHandler,), {})
        handler.authorizer = auth
        handler.passive_ports = range(50000, 60000)
        handler.auth_failed_timeout = 0       # no delayed call left on a loop after close_all()
        handler.log_prefix = ""
        import logging
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        self.server = FTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())   # its own loop, not the singleton
        self.port = self.server.address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"timeout": 0.05, "blocking": True},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.close_all()


class Modem:
    """A GSM modem on a pty: answers AT, AT+CMGF=1, AT+CMGS="<number>" (the "> " prompt),
    then the text up to Ctrl-Z with +CMGS: <n> and OK. ``fail_sends`` makes that many sends
    answer ERROR. ``device`` is the pty's path for pyserial."""

    def __init__(self, fail_sends: int = 0):
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.device = os.ttyname(slave)
        self._slave = slave
        self.sent: list[tuple[str, str]] = []
        self.commands: list[str] = []
        self.fail_sends = fail_sends
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _reply(self, text: str) -> None:
        os.write(self.master, text.encode())

    def _run(self) -> None:
        import select
        buf = b""
        number = None
        n = 0
        while not self.stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                buf += os.read(self.master, 1024)
            except OSError:
                return
            while True:
                if number is not None:
                    if b"\x1a" not in buf:
                        break
                    text, _, buf = buf.partition(b"\x1a")
                    if self.fail_sends:
                        self.fail_sends -= 1
                        self._reply("\r\nERROR\r\n")
                    else:
                        n += 1
                        self.sent.append((number, text.decode()))
                        self._reply(f"\r\n+CMGS: {n}\r\n\r\nOK\r\n")
                    number = None
                    continue
                if b"\r" not in buf:
                    break
                line, _, buf = buf.partition(b"\r")
                cmd = line.decode(errors="replace").strip()
                if not cmd:
                    continue
                self.commands.append(cmd)
                if cmd.startswith("AT+CMGS="):
                    number = cmd.split("=", 1)[1].strip('"')
                    self._reply("\r\n> ")
                elif cmd in ("AT", "AT+CMGF=1"):
                    self._reply("\r\nOK\r\n")
                else:
                    self._reply("\r\nERROR\r\n")

    def close(self):
        self.stop.set()
        self.thread.join(2)
        os.close(self.master)
        os.close(self._slave)
