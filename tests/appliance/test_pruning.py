"""Journal retention: old raw events and old settled records go, in small batches, never
before the core took them or the cloud acknowledged them; reports of kept periods still
equal the replay; a pruning SIGKILLed at any point loses and doubles nothing."""
from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from appliance.cli.report import grouped, grouped_journal
from appliance.config import parse_config
from appliance.journal import RECORD_TYPES, Journal
from appliance.pruning import DAY_MS, plan, prune
from appliance.replay import replay_file
from appliance.timefmt import parse_ts
from tests.appliance.test_reports import CONFIG, days, live
from tests.conftest import ROOT, write_events

START = parse_ts("2026-06-01T00:00:00Z")


def config(extra: str = "") -> object:
    return parse_config(CONFIG.format(four="neutral") + "\n[journal]\nkeep_raw_days = 30\nkeep_days = 60\n" + extra)


def test_the_plan_keeps_what_the_core_and_the_cloud_still_need():
    cfg = config('\n[sync]\nbroker = "mqtt://127.0.0.1:1"\n')
    now = START + 100 * DAY_MS
    p = plan(cfg, now, core_cursor=500, sync_cursor=200, low_space=False)
    assert (p.raw_before, p.records_before, p.max_seq) == (now - 30 * DAY_MS, now - 60 * DAY_MS, 200)
    assert p.clips_before == now - 31 * DAY_MS                    # audio retention 30 days + 1
    assert plan(cfg, now, 500, None, low_space=True).raw_before == now - DAY_MS


def test_reports_of_kept_periods_equal_the_replay_after_pruning(tmp_path):
    cfg = config()
    src = write_events(tmp_path / "e.jsonl", days(3, START, 24 * 70))       # 70 days
    records, _, _ = replay_file(cfg, str(src))
    now = START + 80 * DAY_MS
    with live(cfg, tmp_path / "j.db", src) as j:
        before = j.count()
        counts = prune(cfg, j, now, pause_s=0)
        assert counts["raw"] > 0 and counts["records"] > 0 and j.count() < before
        kept_from = now - 60 * DAY_MS
        assert grouped_journal(cfg, j, "day", kept_from, None) == grouped(cfg, records, "day", kept_from, None)
        assert j.db.execute("SELECT MIN(t) FROM records").fetchone()[0] >= kept_from
        assert j.db.execute("SELECT COUNT(*) FROM events WHERE ts < ? AND type NOT IN ('contact', 'rating_settled',"
                            " 'sale_settled', 'call_settled', 'pruned')", (now - 30 * DAY_MS,)).fetchone()[0] == 0
        journalled = {k: sum(e.data["count"] for e in j.iter_all(["pruned"]) if e.data["kind"] == k) for k in counts}
        assert journalled == counts
        assert j.integrity_ok()
        assert prune(cfg, j, now, pause_s=0) == {"raw": 0, "clips": 0, "records": 0}      # nothing twice
        from appliance.rebuild import RawPruned, rebuild
        with pytest.raises(RawPruned, match="use --from"):             # what retention took cannot come back
            rebuild(cfg, j, None, now)
        assert grouped_journal(cfg, j, "day", kept_from, None) == grouped(cfg, records, "day", kept_from, None)


def test_nothing_the_cloud_has_not_acknowledged_is_pruned(tmp_path):
    cfg = config('\n[sync]\nbroker = "mqtt://127.0.0.1:1"\n')
    src = write_events(tmp_path / "e.jsonl", days(4, START, 24 * 10))
    with live(cfg, tmp_path / "j.db", src) as j:
        acked = j.last_seq() // 3
        with j.stage("sync") as txn:
            txn.advance(acked)
        last = j.last_seq()
        prune(cfg, j, START + 400 * DAY_MS, pause_s=0)          # everything is old enough
        seqs = [s for (s,) in j.db.execute("SELECT seq FROM events WHERE seq <= ? ORDER BY seq", (last,))]
        assert seqs == list(range(acked + 1, last + 1))          # all acknowledged ones went, no other


WORKER = """
import sys
from appliance.config import parse_config
from appliance.journal import Journal
from appliance.pruning import prune
cfg = parse_config(open(sys.argv[1]).read())
with Journal(sys.argv[2]) as j:
    prune(cfg, j, int(sys.argv[3]), batch=150, pause_s=0.001)
"""


def test_pruning_sigkilled_at_random_points_loses_and_doubles_nothing(tmp_path):
    cfg_text = CONFIG.format(four="neutral") + "\n[journal]\nkeep_raw_days = 30\nkeep_days = 60\n"
    cfg = parse_config(cfg_text)
    (tmp_path / "cfg.toml").write_text(cfg_text)
    src = write_events(tmp_path / "e.jsonl", days(9, START, 24 * 70))
    now = START + 80 * DAY_MS
    with live(cfg, tmp_path / "j.db", src):
        pass
    shutil.copy(tmp_path / "j.db", tmp_path / "ref.db")
    with Journal(tmp_path / "ref.db") as ref:                 # what a pruning that is never killed leaves
        prune(cfg, ref, now, pause_s=0)
        want = {e.id for e in ref.iter_all() if e.type != "pruned"}
    rnd = random.Random(1)
    kills = 0
    for _ in range(60):
        p = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "cfg.toml"), str(tmp_path / "j.db"),
                              str(now)], cwd=ROOT)
        time.sleep(rnd.uniform(0.05, 0.4))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        if p.wait() == 0:
            break
    assert kills >= 3
    with Journal(tmp_path / "j.db") as j:
        assert j.integrity_ok()
        assert {e.id for e in j.iter_all() if e.type != "pruned"} == want
        orphans = j.db.execute("SELECT COUNT(*) FROM records r LEFT JOIN events e ON e.seq = r.seq "
                               "WHERE e.seq IS NULL").fetchone()[0]
        unindexed = j.db.execute(f"SELECT COUNT(*) FROM events e LEFT JOIN records r ON r.seq = e.seq WHERE "
                                 f"r.seq IS NULL AND e.type IN ({','.join('?' * len(RECORD_TYPES))})",
                                 RECORD_TYPES).fetchone()[0]
        assert orphans == 0 and unindexed == 0
        with Journal(tmp_path / "ref.db", readonly=True) as ref:
            gone = sum(e.data["count"] for e in ref.iter_all(["pruned"]))
        assert sum(e.data["count"] for e in j.iter_all(["pruned"])) == gone     # every deletion journalled once
