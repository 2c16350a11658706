"""The sync's decisions, pure (STYLE 9): where a clip upload resumes, when it probes, when
it sends again; the upload cap; the ack window that never moves past what was sent."""
from __future__ import annotations

from pathlib import Path

from appliance.cloud.clip_upload import PROBE, SEND, WAIT, ClipUpload, TokenBucket
from appliance.cloud.sync import AckWindow


def upload(known=None, size=10 * 1024, chunk=1024) -> ClipUpload:
    return ClipUpload("c1", Path("c1.ogg"), "c1.ogg", size, "0" * 64, chunk, next=known or 0, probe=known is None)


def test_a_fresh_upload_after_a_restart_probes_first_and_resumes_where_the_ingest_says():
    c = upload()
    assert c.chunks == 10 and c.plan(None, now=0.0, timeout_s=30) == PROBE
    c.probe_sent = 0.0
    assert c.plan(None, now=5.0, timeout_s=30) == WAIT          # the answer is on its way
    assert c.plan(7, now=6.0, timeout_s=30) == SEND and c.next == 7 and not c.probe


def test_no_answer_to_the_probe_sends_it_all():
    c = upload()
    c.plan(None, 0.0, 30)
    c.probe_sent = 0.0
    assert c.plan(None, now=31.0, timeout_s=30) == SEND and c.next == 0


def test_a_known_start_sends_at_once_and_a_missing_ack_sends_what_is_missing_again():
    c = upload(known=3)
    assert c.plan(3, 0.0, 30) == SEND and c.next == 3
    c.next, c.manifest_sent = c.chunks, 1.0                       # all sent, manifest out
    assert c.plan(3, now=10.0, timeout_s=30) == WAIT
    assert c.plan(6, now=32.0, timeout_s=30) == SEND and c.next == 6 and c.manifest_sent is None


def test_a_reconnect_resumes_from_the_ingests_last_word():
    c = upload(known=0)
    c.next, c.manifest_sent = 9, 4.0
    c.reconnected(5)
    assert c.next == 5 and c.manifest_sent is None
    c.reconnected(None)
    assert c.next == 0
    assert c.manifest().chunks == 10 and c.manifest().chunk_size == 1024


def test_an_empty_clip_is_one_chunk():
    assert upload(size=0).chunks == 1


def test_token_bucket_caps_bytes_per_second():
    b = TokenBucket(1000, now=0.0)
    assert b.take(600, now=0.0) and not b.take(600, now=0.0)
    assert b.take(600, now=0.3)                                  # 300 earned + 400 left
    assert not b.take(900, now=0.3) and b.take(900, now=1.5)
    assert TokenBucket(0, now=0.0).take(10**9, now=0.0)          # 0: no cap
    assert TokenBucket(100, now=0.0).take(5000, now=60.0)        # a chunk larger than a second's worth still goes


def test_ack_window_moves_only_on_acks_for_what_was_sent():
    w = AckWindow(acked=10)
    w.sent_batch(20, now=0.0)
    w.sent_batch(30, now=0.1)
    w.on_ack(10**18)                                             # a hostile or confused ingest
    assert w.take_pending() is None
    w.on_ack(20)
    assert w.take_pending() == 20
    w.committed(20, now=1.0)
    assert w.acked == 20 and w.in_flight == [30]
    w.on_ack(15)                                                 # old news
    assert w.take_pending() is None
    assert w.base_timeout_s == 30 and not w.stalled(now=20.0) and w.stalled(now=40.0)
    w.rewind(now=40.0)
    assert w.sent == 20 and w.in_flight == [] and w.may_send(40.0)
    w.on_ack(30)                                                 # sent earlier on this run: still valid
    assert w.take_pending() == 30


def test_window_is_full_after_four_batches():
    w = AckWindow(acked=0)
    for last in (10, 20, 30, 40):
        assert w.may_send(0.0)
        w.sent_batch(last, now=0.0)
    assert not w.may_send(0.0)


def test_the_box_takes_acks_only_for_what_it_sent(tmp_path):
    """A wrong or hostile ingest: an ack for a clip never sent, a huge upto, garbage."""
    import json
    from types import SimpleNamespace

    from appliance.cloud.sync import SyncStage
    from appliance.config import parse_config
    from appliance.journal import Journal
    cfg = parse_config(f'[device]\nid = "box-1"\nstate_dir = "{tmp_path}"\n[points.p]\n'
                       '[sync]\nbroker = "mqtt://127.0.0.1:1"\n')
    with Journal.in_dir(tmp_path) as j:
        stage = SyncStage(cfg, j)
        stage.sent_clips.add("mine")

        def ack(payload: bytes) -> None:
            stage._on_message(None, None, SimpleNamespace(topic="ca/v1/box-1/ack", payload=payload))
        ack(json.dumps({"upto": 2**53 - 1, "clips": ["theirs", "mine"], "chunks": {"theirs": 3, "mine": 2}}).encode())
        for garbage in (b"[" * 5000, b"\xff", b'{"upto": 1e400}', b'{"clips": [1]}', b'{"upto": -5}'):
            ack(garbage)
        assert stage.clips_acked == {"mine"} and stage.clip_progress == {"mine": 2}
        assert stage.window.take_pending() is None
