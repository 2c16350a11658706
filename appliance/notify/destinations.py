"""Destinations behind one small interface (STYLE 6): ``send(message, clip)`` delivers one
message or raises :class:`DeliveryError`. Each is built from its ``[notifications.<name>]``
table by :func:`open_destination`; secrets come from the config (the secrets file) and never
appear in an error text.

Telegram (Bot API), e-mail (SMTP, STARTTLS or implicit TLS), FTP/FTPS (atomic upload into
``<date>/<point>/<tag>/``), HTTP webhook (JSON, HMAC signature, idempotency key), SMS through a
GSM modem (AT commands, text mode) and a live CSV rating log.
"""
from __future__ import annotations

import csv
import ftplib
import hashlib
import hmac
import http.client
import io
import json
import os
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from ..config.schema import CsvLog, Email, Ftp, Notification, Sms, Telegram, Webhook
from ..errors import ApplianceError
from ..files import fsync_path
from ..routing import Message


class DeliveryError(ApplianceError):
    """A message did not get through (retried later); the text names no secret."""


@dataclass(frozen=True)
class ClipFile:
    """A clip to attach: its file, the name it is sent under and its MIME type."""
    path: Path
    name: str
    mime: str
    clip: str
    sha256: str
    duration_s: float


class Destination(Protocol):
    def send(self, msg: Message, clip: ClipFile | None) -> None: ...


def text_of(msg: Message) -> str:
    return "\n".join([msg.title, *msg.lines])


def _tls(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file or None)


# --- HTTP --------------------------------------------------------------------------------------

def shown_url(url: str) -> str:
    """A URL as logs and errors may show it: no user, password or query (they may hold secrets)."""
    u = urlsplit(url)
    host = u.hostname or ""
    return f"{u.scheme}://{host}{f':{u.port}' if u.port else ''}{u.path}"


def _post(url: str, body: bytes, headers: dict, timeout: float, ca_file: str = "",
          shown: str = "") -> tuple[int, bytes]:
    """POST; (status, body). ``shown`` is the URL as errors may show it (no token)."""
    shown = shown or shown_url(url)
    u = urlsplit(url)
    if u.username or u.password:                # http://user:pass@host: HTTP basic auth
        import base64
        cred = base64.b64encode(f"{u.username or ''}:{u.password or ''}".encode()).decode()
        headers = {"Authorization": f"Basic {cred}", **headers}
    conn: http.client.HTTPConnection
    if u.scheme == "https":
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout, context=_tls(ca_file))
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    try:
        conn.request("POST", path, body=body, headers={"Content-Length": str(len(body)), **headers})
        resp = conn.getresponse()
        return resp.status, resp.read(64 * 1024)
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"{shown}: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type (fields; files: name -> (filename,
    mime, data))."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for k, val in fields.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n".encode())
        out.write(val.encode() + b"\r\n")
    for k, (filename, mime, data) in files.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"{filename}\"\r\n"
                  f"Content-Type: {mime}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


class WebhookDestination:
    """POST the message's JSON; ``X-Signature: sha256=<HMAC-SHA256 of the body>`` when a
    secret is set, ``Idempotency-Key`` always, ``Authorization: Bearer`` with a token."""

    def __init__(self, n: Webhook):
        self.n = n

    def send(self, msg: Message, clip: ClipFile | None) -> None:
        body = dict(msg.body)
        if clip is not None:
            info = {"id": clip.clip, "sha256": clip.sha256, "duration_s": clip.duration_s, "name": clip.name}
            for obj in ("contact", "rating", "call"):
                if obj in body:
                    body[obj] = {**body[obj], "clip": info}
        elif msg.clip is not None:
            body["clip_missing"] = True
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": msg.key,
                   "User-Agent": "contact-analyzer"}
        if self.n.secret:
            headers["X-Signature"] = "sha256=" + hmac.new(self.n.secret.encode(), data, hashlib.sha256).hexdigest()
        if self.n.token:
            headers["Authorization"] = f"Bearer {self.n.token}"
        status, _ = _post(self.n.url, data, headers, self.n.timeout_s, self.n.ca_file)
        if not 200 <= status < 300:
            raise DeliveryError(f"{shown_url(self.n.url)}: HTTP {status}")


class TelegramDestination:
    """The Bot API: ``sendMessage`` (JSON), or ``sendVoice`` (Opus in Ogg) / ``sendAudio``
    (multipart) with the message as the caption."""

    def __init__(self, n: Telegram):
        self.n = n

    def send(self, msg: Message, clip: ClipFile | None) -> None:
        text = text_of(msg)
        if clip is None and msg.clip is not None:
            text += "\n(audio not available)"
        base = self.n.api_base.rstrip("/")
        if clip is None:
            method = "sendMessage"
            data = json.dumps({"chat_id": self.n.chat_id, "text": text[:4096]}).encode()
            ctype = "application/json"
        else:
            method, part = {"audio/ogg": ("sendVoice", "voice"), "image/png": ("sendPhoto", "photo")}.get(
                clip.mime, ("sendAudio", "audio"))
            data, ctype = multipart({"chat_id": self.n.chat_id, "caption": text[:1024]},
                                    {part: (clip.name, clip.mime, clip.path.read_bytes())})
        shown = f"{base}/bot<token>/{method}"
        status, body = _post(f"{base}/bot{self.n.token}/{method}", data, {"Content-Type": ctype}, self.n.timeout_s,
                             shown=shown)
        try:
            ok = json.loads(body).get("ok") is True
        except (ValueError, AttributeError):
            ok = False
        if status != 200 or not ok:
            raise DeliveryError(f"{shown}: HTTP {status}" + ("" if ok else ", not ok"))


class EmailDestination:
    def __init__(self, n: Email):
        self.n = n

    def send(self, msg: Message, clip: ClipFile | None) -> None:
        n = self.n
        m = EmailMessage()
        m["Subject"] = msg.title
        m["From"] = n.sender
        m["To"] = ", ".join(n.to)
        m["Message-ID"] = f"<{hashlib.sha256(msg.key.encode()).hexdigest()[:32]}@contact-analyzer>"
        body = "\n".join(msg.lines)
        if clip is None and msg.clip is not None:
            body += "\n(audio not available)"
        m.set_content(body + "\n")
        if clip is not None:
            major, _, minor = clip.mime.partition("/")
            m.add_attachment(clip.path.read_bytes(), maintype=major, subtype=minor, filename=clip.name)
        try:
            if n.implicit_tls:
                s: smtplib.SMTP = smtplib.SMTP_SSL(n.host, n.port, timeout=n.timeout_s, context=_tls(n.ca_file))
            else:
                s = smtplib.SMTP(n.host, n.port, timeout=n.timeout_s)
            with s:
                if n.starttls and not n.implicit_tls:
                    s.starttls(context=_tls(n.ca_file))
                if n.username:
                    s.login(n.username, n.password)
                s.send_message(m)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"smtp {n.host}:{n.port}: {type(exc).__name__}: {_no_secret(str(exc), n.password)}"
                                ) from None


def _no_secret(text: str, *secrets: str) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text[:300]


class FtpDestination:
    """Uploads ``<directory>/<date>/<point>/<tag>/<name>``: the clip (when there is one) and
    the message as JSON, each to a temporary name first, then renamed."""

    def __init__(self, n: Ftp):
        self.n = n

    def send(self, msg: Message, clip: ClipFile | None) -> None:
        n = self.n
        day = time.strftime("%Y-%m-%d", time.gmtime(msg.t / 1000))
        parts = [p for p in n.directory.strip("/").split("/") if p] + [day, msg.point or "box", msg.folder or msg.kind]
        stem = f"{time.strftime('%H%M%S', time.gmtime(msg.t / 1000))}-{msg.key.rsplit(':', 1)[-1]}"
        try:
            ftp: ftplib.FTP = ftplib.FTP_TLS(context=_tls(n.ca_file), timeout=n.timeout_s) if n.tls else \
                ftplib.FTP(timeout=n.timeout_s)
            with ftp:
                ftp.connect(n.host, n.port)
                ftp.login(n.username or "anonymous", n.password)
                if n.tls:
                    ftp.prot_p()
                ftp.cwd("/")
                for p in parts:
                    try:
                        ftp.cwd(p)
                    except ftplib.error_perm:
                        ftp.mkd(p)
                        ftp.cwd(p)
                if clip is not None:
                    with open(clip.path, "rb") as f:
                        self._put(ftp, f, f"{stem}{Path(clip.name).suffix}")
                body = dict(msg.body, title=msg.title, clip=clip.name if clip else None)
                self._put(ftp, io.BytesIO(json.dumps(body, ensure_ascii=False, indent=1).encode()), f"{stem}.json")
        except (OSError, ftplib.Error, EOFError) as exc:
            raise DeliveryError(f"ftp {n.host}:{n.port}: {type(exc).__name__}: {_no_secret(str(exc), n.password)}"
                                ) from None

    @staticmethod
    def _put(ftp: ftplib.FTP, f, name: str) -> None:
        tmp = f".{name}.part"
        ftp.storbinary(f"STOR {tmp}", f)
        try:
            ftp.delete(name)                    # a copy from an attempt that died before its ack
        except ftplib.error_perm:
            pass
        ftp.rename(tmp, name)


class SmsDestination:
    """A GSM modem on a serial port: ``AT+CMGF=1`` (text mode), then ``AT+CMGS`` per number
    and part (160 characters a part, numbered when there are several)."""

    PART = 160

    def __init__(self, n: Sms, opener=None):
        self.n = n
        self.opener = opener

    def _open(self):
        if self.opener is not None:
            return self.opener()
        import serial
        return serial.Serial(self.n.device, self.n.baud, timeout=0.2, write_timeout=self.n.timeout_s)

    def send(self, msg: Message, clip: ClipFile | None) -> None:
        text = "".join(ch if 32 <= ord(ch) < 127 or ch == "\n" else "?" for ch in text_of(msg))
        parts = split_sms(text, self.PART)
        try:
            port = self._open()
        except OSError as exc:
            raise DeliveryError(f"modem {self.n.device}: {exc}") from None
        try:
            self._command(port, "AT")
            self._command(port, "AT+CMGF=1")
            for number in self.n.to:
                for part in parts:
                    self._command(port, f'AT+CMGS="{number}"', until=b">")
                    self._command(port, part, end=b"\x1a", until=b"+CMGS:", wait_s=60)
        except OSError as exc:
            raise DeliveryError(f"modem {self.n.device}: {exc}") from None
        finally:
            port.close()

    def _command(self, port, line: str, end: bytes = b"\r", until: bytes = b"OK", wait_s: float | None = None) -> bytes:
        port.write(line.encode("ascii", "replace") + end)
        deadline = time.monotonic() + (wait_s or self.n.timeout_s)
        got = b""
        while time.monotonic() < deadline:
            got += port.read(256)
            if b"ERROR" in got:
                raise DeliveryError(f"modem {self.n.device}: {line[:20]!r} answered "
                                    f"{got.decode('ascii', 'replace').strip()[-60:]!r}")
            if until in got and (until != b"+CMGS:" or b"OK" in got.split(b"+CMGS:", 1)[1]):
                return got
        raise DeliveryError(f"modem {self.n.device}: no answer to {line[:20]!r} within {wait_s or self.n.timeout_s} s")


def split_sms(text: str, size: int = 160) -> list[str]:
    """A text in parts of at most ``size`` characters; several are numbered "(1/3) "."""
    if len(text) <= size:
        return [text]
    body = size - 8
    chunks = [text[i:i + body] for i in range(0, len(text), body)]
    return [f"({i}/{len(chunks)}) {c}" for i, c in enumerate(chunks, 1)]


class CsvLogDestination:
    """A line per message in ``<directory>/<date>.csv`` (date of the event in UTC), fsynced;
    the key column lets a line written just before a crash be recognised, not doubled."""

    HEADER = ["datetime", "remote", "button", "point", "owner", "value", "class", "event", "key"]

    def __init__(self, n: CsvLog):
        self.n = n

    def send(self, msg: Message, clip: ClipFile | None) -> None:
        d = Path(self.n.directory)
        path = d / (time.strftime("%Y-%m-%d", time.gmtime(msg.t / 1000)) + ".csv")
        r = msg.body.get("rating") or {}
        c = msg.body.get("call") or {}
        row = [time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(msg.t / 1000)) + f".{msg.t % 1000:03d}Z",
               r.get("remote") or c.get("remote") or "", _blank(r.get("button", c.get("button"))), msg.point or "",
               msg.owner or "", _blank(r.get("value")), r.get("class", ""), msg.kind, msg.key]
        try:
            d.mkdir(parents=True, exist_ok=True)
            if path.exists() and self._has(path, msg.key):
                return
            new = not path.exists()
            with open(path, "a", newline="") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(self.HEADER)
                w.writerow(row)
                f.flush()
                os.fsync(f.fileno())
            if new:
                fsync_path(d)
        except OSError as exc:
            raise DeliveryError(f"{path}: {exc.strerror or exc}") from None

    @staticmethod
    def _has(path: Path, key: str) -> bool:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 8192))
            return key.encode() in f.read()


def _blank(x: object) -> str:
    return "" if x is None else str(x)


def open_destination(n: Notification) -> Destination:
    kinds = {Telegram: TelegramDestination, Email: EmailDestination, Ftp: FtpDestination, Webhook: WebhookDestination,
             Sms: SmsDestination, CsvLog: CsvLogDestination}
    return kinds[type(n)](n)
