"""Each destination against a real server on loopback, checking the exact requests the real
service expects: the Telegram Bot API (sendMessage JSON, sendVoice / sendPhoto multipart),
webhooks (JSON, HMAC-SHA256 signature, idempotency key), SMTP with STARTTLS and with implicit
TLS (AUTH, attachment), FTP and FTPS (the date/point/tag layout, atomic rename), a GSM modem
on a pty (AT commands, long texts split, ERROR), the CSV rating log (no doubled line)."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from appliance.config import parse_config
from appliance.notify.destinations import (ClipFile, DeliveryError, EmailDestination, FtpDestination,
                                           SmsDestination, TelegramDestination, WebhookDestination, split_sms,
                                           CsvLogDestination)
from appliance.routing import Message
from tests.notify_servers import FtpServer, HttpRecorder, Modem, SmtpServer, free_port
from tests.pki import CA

T = 1_795_165_200_000          # 2026-11-20T09:00:00Z


def n(kind: str, **keys):
    """A [notifications.x] table of this kind, parsed by the real schema."""
    lines = [f'kind = "{kind}"'] + [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    return parse_config("[points.till1]\n[notifications.x]\n" + "\n".join(lines) + "\n").notifications["x"]


def contact_message(**kw) -> Message:
    contact = {"id": "c1", "point": "till1", "opened": "2026-11-20T09:00:00.000Z", "closed": "2026-11-20T09:02:00.000Z",
               "duration_s": 120.0, "owner": "anna", "rating": 1, "sales": [], "tags": ["rated", "negative"]}
    base = dict(destination="x", key="x:ev1", kind="contact", t=T, point="till1", owner="anna",
                title="Negative contact at till1, rating 1", lines=["time: 2026-11-20T09:00:00.000Z", "point: till1"],
                body={"event": "contact", "device": "box-1", "contact": contact}, clip=["contact", "c1"],
                folder="negative")
    base.update(kw)
    return Message(**base)


@pytest.fixture
def clip(tmp_path):
    p = tmp_path / "c1.opus"
    p.write_bytes(b"OggS" + bytes(range(256)) * 40)
    return ClipFile(p, "till1-20261120-090000-contact.opus", "audio/ogg", "clip-1", "ab" * 32, 124.0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = CA(tmp_path_factory.mktemp("pki"))
    cert, key = ca.issue("127.0.0.1", server=True)
    return ca, cert, key


def test_webhook_posts_the_contact_signed_with_an_idempotency_key(clip):
    srv = HttpRecorder()
    try:
        d = WebhookDestination(n("webhook", url=srv.url + "/hook", secret="k3y", token="tok"))
        d.send(contact_message(), clip)
        [r] = srv.requests
        assert r.path == "/hook" and r.headers["Content-Type"] == "application/json"
        assert r.headers["Idempotency-Key"] == "x:ev1" and r.headers["Authorization"] == "Bearer tok"
        assert r.headers["X-Signature"] == "sha256=" + hmac.new(b"k3y", r.body, hashlib.sha256).hexdigest()
        body = r.json()
        assert body["event"] == "contact" and body["device"] == "box-1"
        assert set(body["contact"]) == {"id", "point", "opened", "closed", "duration_s", "owner", "rating", "sales",
                                        "tags", "clip"}
        assert body["contact"]["clip"] == {"id": "clip-1", "sha256": "ab" * 32, "duration_s": 124.0,
                                           "name": "till1-20261120-090000-contact.opus"}
        srv.plan = [503]
        with pytest.raises(DeliveryError, match="HTTP 503") as err:
            WebhookDestination(n("webhook", url=f"http://hook:p4ss@127.0.0.1:{srv.port}/h?sig=qu3ry")).send(
                contact_message(), None)
        assert "p4ss" not in str(err.value) and "qu3ry" not in str(err.value)       # secrets in a URL stay out
        assert srv.requests[-1].headers["Authorization"] == "Basic aG9vazpwNHNz"      # hook:p4ss
    finally:
        srv.close()


def test_webhook_refused_and_timed_out_are_delivery_errors():
    with pytest.raises(DeliveryError, match="ConnectionRefused"):
        WebhookDestination(n("webhook", url=f"http://127.0.0.1:{free_port()}/h")).send(contact_message(), None)
    srv = HttpRecorder(plan=["hang"], hang_s=2.0)
    try:
        with pytest.raises(DeliveryError, match="timed out"):
            WebhookDestination(n("webhook", url=srv.url, timeout_s=0.3)).send(contact_message(), None)
    finally:
        srv.close()


def test_telegram_uses_the_bot_api_as_it_is(clip):
    srv = HttpRecorder()
    try:
        d = TelegramDestination(n("telegram", token="123:ABC", chat_id="-100200", api_base=srv.url))
        d.send(contact_message(clip=None), None)
        d.send(contact_message(), clip)
        png = clip.path.with_suffix(".png")
        png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 100)
        d.send(contact_message(kind="report", clip=None), ClipFile(png, "report.png", "image/png", "", "", 0))
        text, voice, photo = srv.requests
        assert text.path == "/bot123:ABC/sendMessage" and text.headers["Content-Type"] == "application/json"
        assert text.json() == {"chat_id": "-100200", "text": "Negative contact at till1, rating 1\n"
                                                             "time: 2026-11-20T09:00:00.000Z\npoint: till1"}
        assert voice.path == "/bot123:ABC/sendVoice"
        form = voice.form()
        assert form["chat_id"][2] == b"-100200" and form["caption"][2].startswith(b"Negative contact at till1")
        assert form["voice"][0] == clip.name and form["voice"][1] == "audio/ogg"
        assert form["voice"][2] == clip.path.read_bytes()
        assert photo.path == "/bot123:ABC/sendPhoto" and photo.form()["photo"][1] == "image/png"
        srv.plan = [401]
        with pytest.raises(DeliveryError) as err:
            d.send(contact_message(clip=None), None)
        assert "123:ABC" not in str(err.value) and "bot<token>" in str(err.value)
    finally:
        srv.close()


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_email_over_tls_with_login_and_the_clip_attached(pki, clip, implicit):
    ca, cert, key = pki
    srv = SmtpServer(cert, key, implicit=implicit)
    try:
        d = EmailDestination(n("email", host="127.0.0.1", port=srv.port, starttls=not implicit, implicit_tls=implicit,
                               username="box", password="s3cret", sender="box@shop.example",
                               to=["manager@shop.example", "qa@shop.example"], ca_file=str(ca.path)))
        d.send(contact_message(), clip)
        [(sender, rcpts, m)] = srv.messages
        assert sender == "box@shop.example" and rcpts == ["manager@shop.example", "qa@shop.example"]
        assert m["Subject"] == "Negative contact at till1, rating 1"
        [att] = list(m.iter_attachments())
        assert att.get_filename() == clip.name and att.get_content() == clip.path.read_bytes()
        bad = EmailDestination(n("email", host="127.0.0.1", port=srv.port, starttls=not implicit,
                                 implicit_tls=implicit, username="box", password="wrong-pass", sender="b@x.example",
                                 to=["m@x.example"], ca_file=str(ca.path), timeout_s=3))
        with pytest.raises(DeliveryError) as err:
            bad.send(contact_message(), None)
        assert "wrong-pass" not in str(err.value)
        untrusted = EmailDestination(n("email", host="127.0.0.1", port=srv.port, starttls=not implicit,
                                       implicit_tls=implicit, sender="b@x.example", to=["m@x.example"], timeout_s=3))
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            untrusted.send(contact_message(), None)      # the system's CAs do not know the test CA
    finally:
        srv.close()


@pytest.mark.parametrize("tls", [False, True], ids=["ftp", "ftps"])
def test_ftp_uploads_into_date_point_tag_atomically(tmp_path, pki, clip, tls):
    ca, cert, key = pki
    srv = FtpServer(tmp_path / "ftp", cert if tls else None, key if tls else None)
    try:
        d = FtpDestination(n("ftp", host="127.0.0.1", port=srv.port, tls=tls, username="box", password="s3cret",
                             directory="/audio", ca_file=str(ca.path)))
        d.send(contact_message(), clip)
        d.send(contact_message(), clip)                  # again (an attempt whose ack was lost): replaced
        folder = tmp_path / "ftp" / "audio" / "2026-11-20" / "till1" / "negative"
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["090000-ev1.json", "090000-ev1.opus"]          # no .part left behind
        assert (folder / "090000-ev1.opus").read_bytes() == clip.path.read_bytes()
        assert json.loads((folder / "090000-ev1.json").read_text())["contact"]["id"] == "c1"
        with pytest.raises(DeliveryError) as err:
            FtpDestination(n("ftp", host="127.0.0.1", port=srv.port, tls=tls, username="box", password="nope-pw",
                             ca_file=str(ca.path))).send(contact_message(), None)
        assert "nope-pw" not in str(err.value)
    finally:
        srv.close()


def test_sms_through_a_modem_on_a_pty():
    modem = Modem()
    try:
        d = SmsDestination(n("sms", device=modem.device, to=["+4915112345678", "+4915187654321"], timeout_s=3))
        long = contact_message(lines=["x" * 200, "ü is not GSM-safe"])
        d.send(long, None)
        texts = [t for num, t in modem.sent if num == "+4915112345678"]
        assert len(texts) == 2 and texts[0].startswith("(1/2) Negative contact") and texts[1].startswith("(2/2) ")
        assert all(len(t) <= 160 for t in texts) and "?" in texts[1]
        assert [num for num, _ in modem.sent] == ["+4915112345678"] * 2 + ["+4915187654321"] * 2
        assert modem.commands[:2] == ["AT", "AT+CMGF=1"]
        modem.fail_sends = 1
        with pytest.raises(DeliveryError, match="ERROR"):
            d.send(contact_message(), None)
    finally:
        modem.close()
    with pytest.raises(DeliveryError, match="modem"):
        SmsDestination(n("sms", device="/dev/nonexistent-modem", to=["+491"])).send(contact_message(), None)


def test_split_sms():
    assert split_sms("a" * 160) == ["a" * 160]
    parts = split_sms("b" * 400)
    assert len(parts) == 3 and all(len(p) <= 160 for p in parts) and "".join(p[6:] for p in parts) == "b" * 400


def test_csv_log_writes_a_line_per_message_once(tmp_path):
    d = CsvLogDestination(n("csv", directory=str(tmp_path / "log")))
    rating = contact_message(kind="rating", key="x:r1", body={"event": "rating", "rating": {
        "remote": "5a1f01", "button": 1, "value": 1, "class": "negative"}})
    d.send(rating, None)
    d.send(rating, None)                                  # resent after a crash: recognised
    d.send(contact_message(kind="rating", key="x:r2", t=T + 1500, body={"rating": {
        "remote": "5a1f01", "button": 5, "value": 5, "class": "top"}}), None)
    lines = (tmp_path / "log" / "2026-11-20.csv").read_text().splitlines()
    assert lines == ["datetime,remote,button,point,owner,value,class,event,key",
                     "2026-11-20T09:00:00.000Z,5a1f01,1,till1,anna,1,negative,rating,x:r1",
                     "2026-11-20T09:00:01.500Z,5a1f01,5,till1,anna,5,top,rating,x:r2"]
