"""POS input: the token-authenticated HTTP API (a real server on loopback) and the drop folder."""
from __future__ import annotations

import http.client
import json
import os
import time

import pytest

from appliance.clock import Clock, Stamp
from appliance.config import load_config
from appliance.drop_folder import DropFolder
from appliance.journal import Journal
from appliance.pos_api import PosApi
from tests.conftest import make_config

TOKEN = "test-token-0123456789abcdef"


class FixedClock(Clock):
    def now(self) -> Stamp:
        return Stamp(1_795_165_200_000, 123_456_789, "boot-1", False)


@pytest.fixture
def api(tmp_path):
    path = make_config(tmp_path, f'\n[pos]\nlisten = "127.0.0.1:0"\ntoken = "{TOKEN}"\n')
    cfg = load_config(path)
    journal_path = tmp_path / "state" / "journal.db"
    Journal(journal_path).close()
    a = PosApi(cfg, str(journal_path), FixedClock()).start()
    yield a, journal_path
    a.stop()


def call(api, method, path, body=None, token=TOKEN, raw=None, headers=None):
    host, port = api.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    out = r.status, json.loads(r.read() or b"{}")
    conn.close()
    return out


def count(journal_path):
    with Journal(journal_path) as j:
        return j.count()


def test_sale_and_staff_are_journalled(api):
    a, jp = api
    st, body = call(a, "POST", "/v1/sale", {"point": "till1", "receipt": "R1", "amount": 9.5, "items": 2,
                                             "ts": "2026-11-20T09:00:00Z"})
    assert st == 201 and body["status"] == "accepted"
    st, body = call(a, "POST", "/v1/staff", {"point": "till1", "staff": "anna", "action": "login"})
    assert st == 201
    with Journal(jp) as j:
        rows = j.read(0)
    assert [(r.type, r.source) for r in rows] == [("sale", "pos-http"), ("staff", "pos-http")]
    assert rows[0].data == {"receipt": "R1", "amount": 9.5, "items": 2}
    assert rows[1].ts == 1_795_165_200_000   # no ts: the receive time, fully stamped
    assert (rows[1].mono, rows[1].boot, rows[1].synced) == (123_456_789, "boot-1", False)
    assert (rows[0].mono, rows[0].synced) == (None, True)     # the till's own time


def test_retry_of_same_receipt_doubles_nothing(api):
    a, jp = api
    assert call(a, "POST", "/v1/sale", {"point": "till1", "receipt": "R7"})[0] == 201
    st, body = call(a, "POST", "/v1/sale", {"point": "till1", "receipt": "R7"})
    assert st == 200 and body["status"] == "duplicate"
    assert count(jp) == 1


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789", ""])
def test_without_right_token_nothing_is_written(api, token):
    a, jp = api
    st, body = call(a, "POST", "/v1/sale", {"point": "till1", "receipt": "R1"}, token=token)
    assert st == 401 and "token" in body["error"]
    assert call(a, "GET", "/v1/health", token=token)[0] == 401
    assert count(jp) == 0


@pytest.mark.parametrize("body,needle", [
    ({"point": "till9", "receipt": "R1"}, "unknown point"),
    ({"point": "till1"}, "receipt"),
    ({"point": "till1", "receipt": "R1", "amount": "12"}, "amount"),
    ({"point": "till1", "receipt": ""}, "receipt"),
    ({"point": "till1", "receipt": "R1", "ts": "yesterday"}, "ts"),
    ({"point": "till1", "receipt": "R1", "type": "staff"}, "does not match"),
    ([1, 2], "JSON object"),
])
def test_bad_requests_are_answered_clearly(api, body, needle):
    a, jp = api
    st, answer = call(a, "POST", "/v1/sale", body)
    assert st == 400 and needle in answer["error"], answer
    assert count(jp) == 0


def test_transport_errors(api):
    a, jp = api
    assert call(a, "POST", "/v1/sale", raw=b"{oops")[0] == 400
    assert call(a, "POST", "/v1/nothing", {"x": 1})[0] == 404
    assert call(a, "PUT", "/v1/sale", {"x": 1})[0] == 405
    assert call(a, "POST", "/v1/sale", raw=b"x" * 70_000)[0] == 413
    assert call(a, "GET", "/v1/health")[1] == {"status": "ok"}
    assert count(jp) == 0


def test_drop_folder_takes_good_files_and_rejects_bad_whole(tmp_path, cfg):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "good.jsonl").write_text(
        '{"ts": "2026-11-20T09:00:00Z", "type": "sale", "point": "till1", "receipt": "D1"}\n'
        '{"ts": "2026-11-20T09:00:01Z", "type": "staff", "point": "till1", "staff": "anna"}\n')
    (drop / "bad.jsonl").write_text(
        '{"ts": "2026-11-20T09:00:00Z", "type": "sale", "point": "till1", "receipt": "D2"}\n'
        '{"ts": "2026-11-20T09:00:00Z", "type": "sale", "point": "till1"}\n')
    (drop / "rating.jsonl").write_text('{"ts": "2026-11-20T09:00:00Z", "type": "rating", "point": "till1", "value": 5}\n')
    old = time.time() - 10
    for f in drop.iterdir():
        os.utime(f, (old, old))
    (drop / "fresh.jsonl").write_text('{"ts": "2026-11-20T09:00:00Z", "type": "sale", "point": "till1", "receipt": "D3"}\n')
    with Journal(tmp_path / "j.db") as j:
        counts = DropFolder(cfg, j, drop).scan()
        assert counts == {"files": 3, "events": 2, "rejected": 2}
        assert [r.data.get("receipt") for r in j.read(0)] == ["D1", None]
        assert (drop / "done" / "good.jsonl").exists() and (drop / "fresh.jsonl").exists()
        assert "bad.jsonl:2:" in (drop / "rejected" / "bad.jsonl.errors.txt").read_text()
        assert "not taken from the POS drop folder" in (drop / "rejected" / "rating.jsonl.errors.txt").read_text()
        # a crash after the commit but before the move: the next scan doubles nothing
        os.replace(drop / "done" / "good.jsonl", drop / "good.jsonl")
        os.utime(drop / "good.jsonl", (old, old))
        DropFolder(cfg, j, drop).scan()
        assert j.count() == 2
