"""Retention from the journal: the ledger of live clips reads each clip event once, so a
pass costs what is on disk, not the box's history; every deletion is journalled."""
from __future__ import annotations

from appliance import vocabulary as v
from appliance.journal import Journal
from audio_capture.daemon import enforce_retention
from audio_capture.ledger import ClipLedger
from appliance.config import load_config
from tests.conftest import clip_event, make_config

DAY = 86_400_000
T0 = 1_795_165_200_000


def add_clip(j: Journal, clips, name: str, ts: int, size: int = 1000) -> None:
    (clips / f"{name}.ogg").write_bytes(b"x" * size)
    j.append(clip_event(name, b"x" * size, ts))


def deleted(j: Journal) -> dict[str, str]:
    return {e.data["clip"]: e.data["reason"] for e in j.iter_all([v.CLIP_DELETED])}


def test_aged_clips_go_once_and_the_ledger_keeps_only_the_live_ones(tmp_path):
    cfg = load_config(make_config(tmp_path, "\n[retention]\nmax_age_days = 7\nquota_mb = 1000\nheadroom_s = 0\n"))
    clips = tmp_path / "clips"
    clips.mkdir()
    with Journal(tmp_path / "j.db") as j:
        for i in range(10):
            add_clip(j, clips, f"old{i}", T0 + i)
        j.append(v.ClipAcked(clip="old0").as_event(T0 + 100, None, "sync"))
        ledger = ClipLedger(j, clips)
        assert enforce_retention(cfg, ledger, T0 + 3 * DAY) == 0
        assert len(ledger.live) == 10 and ledger.acked == {"old0"}
        for i in range(3):
            add_clip(j, clips, f"new{i}", T0 + 5 * DAY + i)
        read_up_to = ledger.after
        assert enforce_retention(cfg, ledger, T0 + 8 * DAY) == 10
        assert ledger.after > read_up_to
        assert sorted(ledger.live) == ["new0", "new1", "new2"] and not ledger.acked
        assert deleted(j) == {f"old{i}": "age" for i in range(10)}
        assert sorted(p.name for p in clips.iterdir()) == ["new0.ogg", "new1.ogg", "new2.ogg"]
        acked = {e.data["clip"]: e.data["acked"] for e in j.iter_all([v.CLIP_DELETED])}
        assert acked["old0"] is True and acked["old1"] is False
        # the next pass reads only its own deletions and finds nothing to do
        assert enforce_retention(cfg, ledger, T0 + 8 * DAY) == 0
        assert len(deleted(j)) == 10
        # a restarted daemon builds the same ledger from the journal
        again = ClipLedger(j, clips)
        again.update()
        assert again.live == ledger.live


def test_the_quota_deletes_the_oldest_first_and_a_vanished_file_is_forgotten(tmp_path):
    cfg = load_config(make_config(tmp_path, "\n[retention]\nmax_age_days = 30\nquota_mb = 0.05\nheadroom_s = 0\n"))
    clips = tmp_path / "clips"
    clips.mkdir()
    with Journal(tmp_path / "j.db") as j:
        for i in range(80):
            add_clip(j, clips, f"c{i:02d}", T0 + i * 1000)        # 80 kB against a 50 kB quota
        (clips / "c79.ogg").unlink()                              # gone by other hands
        ledger = ClipLedger(j, clips)
        assert enforce_retention(cfg, ledger, T0 + DAY) == 29      # 79 kB on disk -> 50 kB
        assert deleted(j) == {f"c{i:02d}": "quota" for i in range(29)}
        assert "c79" not in ledger.live and len(ledger.live) == 50
        assert sum(p.stat().st_size for p in clips.iterdir()) == 50_000
