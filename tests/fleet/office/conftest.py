"""A web office over a generated fleet: four boxes in three stores of two groups, six weeks
of contacts, real Opus and WAV clips for some negative contacts, three users; served by
uvicorn on loopback in a thread, exactly as ``fleetctl serve`` serves it."""
from __future__ import annotations

import hashlib
import http.client
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from appliance import vocabulary as v
from appliance.cloud.wire import BatchIn, ClipManifest
from appliance.ids import derived_id
from appliance.timefmt import iso_ms
from fleet.ingest import IngestStore
from fleet.office.accounts import Accounts
from fleet.office.app import Office, create_app
from fleet.office.db import Database
from tests.fleet.office_data import DAY_MS, Box, record, store_days
from tests.mqtt_broker import free_port

FIRST_DAY_MS = 1_785_456_000_000         # 2026-07-31 00:00 UTC
DAYS = 42
NOW_S = (FIRST_DAY_MS + DAYS * DAY_MS) / 1000 - 6 * 3600    # the last day, 18:00 UTC (21:00 in Riga)
PASSWORD = "correct horse battery"
PLACES = {"box-n1": ("Riga Centre", "north/riga"), "box-n2": ("Riga Centre", "north/riga"),
          "box-n3": ("Tartu", "north/tartu"), "box-s1": ("Vilnius", "south/vilnius")}
USERS = {"root": ("admin", []), "nora": ("manager", ["north"]), "sam": ("manager", ["south"]),
         "vera": ("viewer", ["north"])}


def write_audio(path: Path, seconds: float, fmt: str) -> None:
    """A real clip, made by the box's own encoder: a 440 Hz tone for ``seconds``, Opus in Ogg
    or 16 kHz mono 16-bit WAV."""
    import array
    import math

    from audio_capture.encoder import encode
    rate = 16000
    tone = array.array("h", (int(6000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate))).tobytes()
    whole, rest = divmod(round(seconds * rate), rate)
    encode([tone] * whole + [tone[:rest * 2]], path, fmt, rate)


@dataclass
class Fleet:
    db: str
    clips: Path
    boxes: dict[str, Box]
    audio: dict[str, tuple[str, str, float]]       # contact -> (device, clip id, seconds) of its contact track
    press: dict[str, tuple[str, str, float]]       # contact -> the same of its rating's press track


def build_fleet(tmp: Path, db: str | None = None) -> Fleet:
    db = db or str(tmp / "ingest.db")
    clips = tmp / "clips"
    clips.mkdir()
    store = IngestStore(db)
    rng = random.Random(7)
    boxes = {}
    for device in PLACES:
        box = Box(device)
        store.set_status(device, "online", "1.0")
        store_days(store, box, FIRST_DAY_MS, DAYS, rng, contacts_per_point=12)
        boxes[device] = box
    store.place([(d, s, g) for d, (s, g) in PLACES.items()])
    audio = {}
    for device in ("box-n1", "box-s1"):
        for k, (contact, _, _) in enumerate(boxes[device].negatives[-2:]):
            row = store.db.execute("SELECT clip, duration_s FROM office_clips WHERE device = ? AND contact = ?",
                                   (device, contact)).fetchone()
            clip_id, seconds = row
            fmt = "opus" if k == 0 else "wav"
            path = clips / device / f"{clip_id}.{'ogg' if fmt == 'opus' else 'wav'}"
            path.parent.mkdir(exist_ok=True)
            write_audio(path, seconds, fmt)
            data = path.read_bytes()
            store.add_clip(device, ClipManifest(clip=clip_id, file=path.name, size=len(data),
                                                sha256=hashlib.sha256(data).hexdigest(), chunks=1,
                                                chunk_size=max(1, len(data))), path)
            audio[contact] = (device, clip_id, seconds)
    # the first one's rating press has its press track too (linked by the press's journal id)
    device = "box-n1"
    contact = next(c for c, a in audio.items() if a[0] == device)
    ref, ts = store.db.execute("SELECT ref, ts FROM office_ratings WHERE device = ? AND contact = ?",
                               (device, contact)).fetchone()
    box = boxes[device]
    clip_id = derived_id(ts - 30_000, "clip", "press", ref)
    rec = record(box, v.CLIP, ts + 16_000, "till1", v.Clip(
        clip=clip_id, kind="press", file=f"{clip_id}.wav", start=iso_ms(ts - 30_000), end=iso_ms(ts + 15_000),
        duration_s=45.0, format="wav", size=1, sha256="0" * 64, press="rating", event=ref))
    store.write_group([("batch", BatchIn(device=device, prev=rec.seq - 1, last=rec.seq, records=[rec]))])
    path = clips / device / f"{clip_id}.wav"
    write_audio(path, 45.0, "wav")
    data = path.read_bytes()
    store.add_clip(device, ClipManifest(clip=clip_id, file=path.name, size=len(data),
                                        sha256=hashlib.sha256(data).hexdigest(), chunks=1, chunk_size=len(data)), path)
    press_tracks = {contact: (device, clip_id, 45.0)}
    store.close()
    acc = Accounts(Database(db))
    acc.create()
    for name, (role, groups) in USERS.items():
        acc.add(name, PASSWORD, role, groups)
    acc.db.close()
    return Fleet(db, clips, boxes, audio, press_tracks)


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Server:
    """uvicorn on a free loopback port in a thread; stopped by the fixture."""

    def __init__(self, office: Office):
        import uvicorn
        self.office = office
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(office), host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the office did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.office.stop()


class Client:
    """Plain HTTP with its own cookie jar (Secure cookies kept on loopback, as browsers do)."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None,
                cookies: bool = True) -> tuple[int, dict, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        body = None
        if form is not None:
            body = urlencode(form).encode()
            h["content-type"] = "application/x-www-form-urlencoded"
        if cookies and self.cookies:
            h["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        for k, header in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = header.partition("=")
                value = rest.split(";", 1)[0].strip('"')
                if value and "max-age=0" not in header.lower() and "expires=thu, 01 jan 1970" not in header.lower():
                    self.cookies[name] = value
                else:
                    self.cookies.pop(name, None)
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict, **kw):
        return self.request("POST", path, form=form, **kw)

    def csrf(self, path: str) -> str:
        status, _, body = self.get(path)
        assert status == 200, (path, status)
        m = re.search(rb'name="csrf" value="([^"]+)"', body)
        assert m, path
        return m.group(1).decode()

    def login(self, name: str, password: str = PASSWORD) -> int:
        token = self.csrf("/login")
        status, _, _ = self.post("/login", {"name": name, "password": password, "csrf": token, "next": "/"})
        return status


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    return build_fleet(tmp_path_factory.mktemp("office"))


@pytest.fixture(scope="module")
def server(fleet):
    from argon2 import PasswordHasher
    clock = Clock(NOW_S)
    office = Office(fleet.db, fleet.clips, tz="Europe/Riga", clock=clock,
                    hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    s = Server(office).start()
    s.clock = clock
    yield s
    s.stop()
