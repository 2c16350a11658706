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


SALE = '{"ts": "2026-11-20T09:00:%02dZ", "type": "sale", "point": "till1", "receipt": "%s"}\n'


def drop_dir(tmp_path):
    d = tmp_path / "drop"
    d.mkdir()
    return d


def test_drop_folder_journals_good_lines_and_reports_bad_ones_by_line(tmp_path, cfg):
    drop = drop_dir(tmp_path)
    (drop / "good.jsonl").write_text(SALE % (0, "D1") + '{"ts": "2026-11-20T09:00:01Z", "type": "staff", '
                                     '"point": "till1", "staff": "anna"}\n')
    (drop / "bad.jsonl").write_text(SALE % (0, "D2") + '{"ts": "2026-11-20T09:00:00Z", "type": "sale", "point": "till1"}\n'
                                    + SALE % (3, "D4"))
    (drop / "rating.jsonl").write_text('{"ts": "2026-11-20T09:00:00Z", "type": "rating", "point": "till1", "value": 5}\n')
    with Journal(tmp_path / "j.db") as j:
        folder = DropFolder(cfg, j, drop, settle_s=2)
        first = folder.scan(now=100.0)                      # read at once, finished once settled
        assert first == {"files": 0, "events": 4, "rejected": 2}
        assert folder.scan(now=103.0) == {"files": 3, "events": 0, "rejected": 0}
        assert sorted(r.data.get("receipt") or r.data.get("staff") for r in j.read(0)) == ["D1", "D2", "D4", "anna"]
        done = [p.name for p in (drop / "done").iterdir()]
        rejected = sorted(p.name for p in (drop / "rejected").iterdir())
        assert len(done) == 1 and done[0].startswith("good.") and done[0].endswith(".jsonl")
        report = next(p for p in (drop / "rejected").iterdir() if p.name.startswith("bad.") and p.name.endswith(".txt"))
        assert report.read_text() == "bad.jsonl:2: object missing required field receipt\n"
        assert any(n.startswith("rating.") and n.endswith(".errors.txt") for n in rejected)
        # a crash after the commit but before the move: the file is read again and doubles nothing
        os.replace(drop / "done" / done[0], drop / "good.jsonl")
        DropFolder(cfg, j, drop).scan(now=0.0)
        assert j.count() == 4


def test_drop_folder_follows_a_file_the_till_keeps_appending_to(tmp_path, cfg):
    drop = drop_dir(tmp_path)
    with Journal(tmp_path / "j.db") as j, open(drop / "day.jsonl", "w") as till:
        folder = DropFolder(cfg, j, drop, settle_s=5)
        half = SALE % (1, "A2")
        till.write(SALE % (0, "A1") + half[:30])             # a line half written
        till.flush()
        folder.scan(now=10.0)
        assert [r.data["receipt"] for r in j.read(0)] == ["A1"]
        till.write(half[30:] + SALE % (2, "A3"))
        till.flush()
        folder.scan(now=12.0)
        folder.scan(now=16.0)                                 # changed at 12: not settled yet
        assert (drop / "day.jsonl").exists()
        till.write(SALE % (4, "A4"))
        till.flush()
        folder.scan(now=20.0)
        folder.scan(now=26.0)                                 # quiet for 6 s: finished and archived
        assert [r.data["receipt"] for r in j.read(0)] == ["A1", "A2", "A3", "A4"]
        assert not (drop / "day.jsonl").exists()


def test_drop_folder_archives_under_unique_names(tmp_path, cfg):
    drop = drop_dir(tmp_path)
    with Journal(tmp_path / "j.db") as j:
        folder = DropFolder(cfg, j, drop, settle_s=0)
        for i in range(3):
            (drop / "sales.jsonl").write_text(SALE % (i, f"U{i}"))
            folder.scan(now=float(i))
            folder.scan(now=float(i) + 0.5)
        assert len(list((drop / "done").iterdir())) == 3 and j.count() == 3


def test_drop_folder_takes_regular_files_only(tmp_path, cfg):
    drop = drop_dir(tmp_path)
    secret = tmp_path / "outside.jsonl"
    secret.write_text(SALE % (0, "S1"))
    os.symlink(secret, drop / "link.jsonl")
    os.mkfifo(drop / "pipe.jsonl")
    (drop / "dir.jsonl").mkdir()
    with Journal(tmp_path / "j.db") as j:
        counts = DropFolder(cfg, j, drop).scan(now=0.0)
        assert j.count() == 0 and counts["rejected"] == 3
    assert secret.read_text() == SALE % (0, "S1")                     # the link's target is untouched
    aside = sorted(p.name for p in (drop / "rejected").iterdir())
    assert sum(n.endswith(".errors.txt") for n in aside) == 3
    assert sorted(p.name for p in drop.iterdir()) == ["done", "rejected"]


def test_drop_folder_reads_a_large_file_in_bounded_memory(tmp_path, cfg):
    import tracemalloc
    drop = drop_dir(tmp_path)
    with open(drop / "big.jsonl", "w") as f:
        for i in range(60_000):                                       # ~5 MB
            f.write(SALE % (i % 60, f"B{i}"))
    with Journal(tmp_path / "j.db") as j:
        tracemalloc.start()
        DropFolder(cfg, j, drop, settle_s=0).scan(now=0.0)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert j.count() == 60_000
    assert peak < 12_000_000, peak                                     # a chunk and its events, not the file


def test_drop_folder_archives_do_not_grow_for_ever(tmp_path, cfg):
    drop = drop_dir(tmp_path)
    with Journal(tmp_path / "j.db") as j:
        folder = DropFolder(cfg, j, drop, settle_s=0)
        (drop / "old.jsonl").write_text(SALE % (0, "O1"))
        folder.scan(now=0.0)
        folder.scan(now=1.0)
        [archived] = list((drop / "done").iterdir())
        old = time.time() - 91 * 86400
        os.utime(archived, (old, old))
        (drop / "new.jsonl").write_text(SALE % (1, "N1"))
        folder.scan(now=2.0)
        folder.scan(now=3.0)
        assert folder.tidy(90) == 1
        assert [p.name.split(".")[0] for p in (drop / "done").iterdir()] == ["new"] and j.count() == 2
