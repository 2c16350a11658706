"""The journal: ids, sequence, idempotent keys, stage cursors, migrations, several writers."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid

import pytest

from appliance.errors import JournalError
from appliance.ids import derived_id, uuid7
from appliance.journal import SCHEMA_VERSION, Journal, NewEvent
from tests.conftest import ROOT


def ev(n: int, **kw) -> NewEvent:
    return NewEvent("rating", 1_795_165_200_000 + n, {"value": 1}, "p", **kw)


def test_uuid7_is_time_ordered_and_versioned():
    ids = [uuid7(1000 + i) for i in range(50)]
    assert ids == sorted(ids)
    u = uuid.UUID(ids[0])
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert derived_id(5, "a", 1) == derived_id(5, "a", 1) != derived_id(5, "a", 2)


def test_append_read_and_wal(tmp_path):
    with Journal(tmp_path / "j.db") as j:
        assert j.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert j.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        seqs = j.append_many([ev(i) for i in range(5)])
        assert seqs == [1, 2, 3, 4, 5]
        rows = j.read(2)
        assert [r.seq for r in rows] == [3, 4, 5] and rows[0].data == {"value": 1}
        assert j.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_keys_make_appends_idempotent(tmp_path):
    with Journal(tmp_path / "j.db") as j:
        assert j.append(ev(1, key="sale:p:R1")) == 1
        assert j.append(ev(2, key="sale:p:R1")) is None
        assert j.count() == 1


def test_batch_is_all_or_nothing(tmp_path):
    with Journal(tmp_path / "j.db") as j:
        bad = NewEvent("rating", None, {}, "p")  # ts NOT NULL
        with pytest.raises(sqlite3.IntegrityError):
            j.append_many([ev(1), ev(2), bad])
        assert j.count() == 0


def test_stage_commits_output_with_cursor(tmp_path):
    with Journal(tmp_path / "j.db") as j:
        j.append_many([ev(i) for i in range(3)])
        with pytest.raises(RuntimeError):
            with j.stage("s") as txn:
                events, upto = txn.read_batch(10, ["rating"])
                txn.append(NewEvent("out", 1, {}))
                txn.advance(upto)
                raise RuntimeError("crash before commit")
        assert j.cursor("s") == 0 and j.count() == 3
        with j.stage("s") as txn:
            events, upto = txn.read_batch(10, ["rating"])
            txn.append(NewEvent("out", 1, {}))
            txn.advance(upto)
        assert j.cursor("s") == 3 and j.count() == 4
        with pytest.raises(JournalError):
            with j.stage("s") as txn:
                txn.advance(1)


def test_newer_schema_is_refused(tmp_path):
    Journal(tmp_path / "j.db").close()
    db = sqlite3.connect(tmp_path / "j.db")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalError, match="newer than this software"):
        Journal(tmp_path / "j.db")


def test_readonly_missing_journal_says_so(tmp_path):
    with pytest.raises(JournalError, match="no journal"):
        Journal(tmp_path / "none.db", readonly=True)


def test_readonly_journal_still_being_created_says_so(tmp_path):
    """A reader (status, a test) that opens the file between its creation and its first migration
    gets a clear error, not "no such table"."""
    sqlite3.connect(tmp_path / "j.db").execute("PRAGMA user_version").fetchone()
    (tmp_path / "j.db").touch()
    with pytest.raises(JournalError, match="being created"):
        Journal(tmp_path / "j.db", readonly=True)
    Journal(tmp_path / "j.db").close()
    with Journal(tmp_path / "j.db", readonly=True) as j:
        assert j.read(0) == []


def test_clock_correction_rewrites_only_unsynced_of_that_boot(tmp_path):
    with Journal(tmp_path / "j.db") as j:
        j.append(NewEvent("rating", 5, {}, "p", mono=2_000_000_000, boot="b1", synced=False))
        j.append(NewEvent("rating", 6, {}, "p", mono=3_000_000_000, boot="b2", synced=False))
        j.append(NewEvent("rating", 7, {}, "p", mono=4_000_000_000, boot="b1", synced=True))
        assert j.correct_unsynced("b1", 1_795_165_200_000_000_000) == 1
        rows = {r.seq: r for r in j.read(0)}
        assert rows[1].ts == 1_795_165_202_000 and rows[1].ts_raw == 5 and rows[1].synced
        assert rows[2].ts == 6 and not rows[2].synced
        assert rows[3].ts == 7


def test_several_processes_append_at_once(tmp_path):
    db = tmp_path / "j.db"
    Journal(db).close()
    code = ("import sys; from appliance.journal import Journal, NewEvent; j = Journal(sys.argv[1]);"
            "[j.append(NewEvent('x', i, {'w': sys.argv[2]})) for i in range(200)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), str(w)], cwd=ROOT) for w in range(4)]
    assert all(p.wait(120) == 0 for p in procs)
    with Journal(db) as j:
        rows = j.read(0, 10_000)
        assert len(rows) == 800 and [r.seq for r in rows] == list(range(1, 801))
        assert len({r.id for r in rows}) == 800
