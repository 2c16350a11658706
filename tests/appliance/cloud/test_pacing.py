"""How a box paces its resends so a fleet coming back after an outage does not stampede the
ingest: the random delay after a reconnect, only the oldest batch again after a timeout
while the broker took every publish, the timeout doubling (capped) and reset by progress,
and never a timeout before the ingest's load hint. All through a fake clock."""
from __future__ import annotations

import json
import random
from types import SimpleNamespace

from appliance.cloud.sync import WINDOW, AckWindow, SyncStage
from appliance.config import parse_config
from appliance.journal import Journal, NewEvent


def test_the_first_connection_sends_at_once_a_reconnect_after_a_random_delay():
    rng = random.Random(7)
    w = AckWindow(0, 30, 600, jitter_s=5.0, now=0.0)
    w.reconnected(100.0, rng)
    assert w.may_send(100.0)                                     # the process's first connection
    delays = []
    for k in range(2000):
        w.reconnected(1000.0 * (k + 1), rng)
        t = 1000.0 * (k + 1)
        assert not w.may_send(t - 0.001)
        # the first moment it may send, found on the fake clock in 10 ms steps
        d = next(i * 0.01 for i in range(600) if w.may_send(t + i * 0.01))
        delays.append(d)
    assert max(delays) <= 5.0 and min(delays) < 0.1
    # spread over the whole range, not bunched: each second of the five gets about a fifth
    counts = [sum(1 for d in delays if s <= d < s + 1) for s in range(5)]
    assert all(300 < c < 500 for c in counts), counts


def test_no_jitter_configured_means_no_delay():
    w = AckWindow(0, 30, 600, jitter_s=0.0, now=0.0)
    for t in (1.0, 2.0, 3.0):
        w.reconnected(t, random.Random(1))
        assert w.may_send(t)


def test_the_timeout_doubles_without_progress_up_to_the_cap_and_progress_resets_it():
    w = AckWindow(0, 30, 200, now=0.0)
    for last in (200, 400, 600, 800):
        w.sent_batch(last, now=0.0)
    assert not w.may_send(0.0)                                   # the window of four is full
    assert not w.stalled(30.0) and w.stalled(30.01)
    timeouts, t = [], 30.01
    for _ in range(5):
        w.probe(t, 200)
        timeouts.append(w.timeout_s)
        assert not w.stalled(t + w.timeout_s - 0.01)
        t += w.timeout_s + 0.01
        assert w.stalled(t)
    assert timeouts == [60, 120, 200, 200, 200]                 # doubling, capped at ack_timeout_max_s
    assert w.probes == 5 and w.in_flight == [200, 400, 600, 800]  # the others stay in flight
    w.on_ack(400)
    w.committed(w.take_pending(), now=t)
    assert w.timeout_s == 30 and w.in_flight == [600, 800]
    assert not w.stalled(t + 29.9) and w.stalled(t + 30.01)


def test_never_a_timeout_before_the_ingest_said_it_would_be_through():
    w = AckWindow(0, 30, 600, now=0.0)
    w.sent_batch(200, now=0.0)
    w.on_busy("ingest-1", 90.0, now=10.0)                       # heard at t=10: "I need 90 s more"
    assert not w.stalled(99.9) and w.stalled(100.01)
    w.on_busy("ingest-2", 20.0, now=50.0)                        # another worker: the later deadline counts
    assert not w.stalled(99.9)
    w.on_busy("ingest-1", 0.0, now=60.0)                         # idle again: its hint is gone
    assert w.stalled(70.01) is True                              # 30 s after the send; ingest-2 until 70
    w.on_busy("ingest-3", 10**6, now=0.0)                        # a hint longer than the cap counts as the cap
    assert w.busy["ingest-3"] == 600.0


def test_a_reconnect_resends_everything_after_the_cursor_and_never_below_it():
    w = AckWindow(100, 30, 600, now=0.0)
    w.sent_batch(300, now=0.0)
    w.reconnected(1.0, random.Random(1))
    assert w.sent == 100 and w.in_flight == []
    w.on_ack(300)                                                # the ingest had it all the same
    w.committed(w.take_pending(), now=2.0)
    assert w.sent == 300                                         # the next batch starts after 300


class FakeInfo:
    def __init__(self, published: bool):
        self.rc = 0
        self.published = published

    def is_published(self) -> bool:
        return self.published


class FakeClient:
    """paho's publish, recorded; ``broker_takes``: whether the broker acknowledges."""

    def __init__(self, broker_takes: bool):
        self.broker_takes = broker_takes
        self.journal: list[tuple[int, int]] = []

    def publish(self, topic, payload, qos=0, retain=False):
        if topic.endswith("/journal"):
            b = json.loads(payload)
            self.journal.append((b["prev"], b["last"]))
        return FakeInfo(self.broker_takes)

    def subscribe(self, topic, qos=0):
        return (0, 1)


def stage_with_backlog(tmp_path, monkeypatch, broker_takes: bool, first: bool = True):
    """A connected stage with 1,000 records, on a fake clock, its first window sent
    (and forgotten by the fake client when ``first``)."""
    clock = [1000.0]
    monkeypatch.setattr("appliance.cloud.sync.time.monotonic", lambda: clock[0])
    cfg = parse_config(f'[device]\nid = "box-1"\nstate_dir = "{tmp_path}"\n[points.till1]\n'
                       '[sync]\nbroker = "mqtt://127.0.0.1:1"\nbatch_max = 100\nack_timeout_s = 30\n')
    j = Journal.in_dir(tmp_path)
    j.append_many([NewEvent("rating", 1_795_165_200_000 + i, {"value": 1}, "till1", "test") for i in range(1000)])
    stage = SyncStage(cfg, j)
    stage.client = FakeClient(broker_takes)
    stage.connected.set()
    stage._on_connect(stage.client, None, None, SimpleNamespace(is_failure=False), None)
    stage.step()
    if first:
        stage.client.journal.clear()
    return stage, j, clock


def test_the_box_resends_only_its_oldest_batch_when_the_broker_took_every_publish(tmp_path, monkeypatch):
    stage, j, clock = stage_with_backlog(tmp_path, monkeypatch, broker_takes=True, first=False)
    assert stage.client.journal == [(0, 100), (100, 200), (200, 300), (300, 400)][:WINDOW]
    stage.client.journal.clear()
    clock[0] += 31
    stage.step()
    assert stage.client.journal == [(0, 100)]                    # the oldest batch only
    assert stage.window.timeout_s == 60 and stage.status_doc()["resent_oldest"] == 1
    clock[0] += 59
    stage.step()
    assert stage.client.journal == [(0, 100)]                    # not before the doubled timeout
    clock[0] += 2
    stage.step()
    assert stage.client.journal == [(0, 100), (0, 100)] and stage.window.timeout_s == 120
    stage._on_message(None, None, SimpleNamespace(topic="ca/v1/box-1/ack", payload=b'{"upto": 400}'))
    stage.step()                                                 # progress: the window moves on, normal pace
    assert stage.acked == 400 and stage.window.timeout_s == 30
    assert stage.client.journal[2:] == [(400, 500), (500, 600), (600, 700), (700, 800)]
    j.close()


def test_the_box_resends_everything_when_the_link_lost_publishes(tmp_path, monkeypatch):
    stage, j, clock = stage_with_backlog(tmp_path, monkeypatch, broker_takes=False)
    clock[0] += 31
    stage.step()
    assert stage.client.journal == [(0, 100), (100, 200), (200, 300), (300, 400)]
    assert stage.window.timeout_s == 30 and stage.status_doc()["resent_all"] == 1
    j.close()


def test_the_box_reads_the_ingest_load_hint_and_refuses_a_bad_one(tmp_path, monkeypatch):
    stage, j, clock = stage_with_backlog(tmp_path, monkeypatch, broker_takes=True)

    def hint(worker: str, payload: bytes) -> None:
        stage._on_message(None, None, SimpleNamespace(topic=f"ca/v1/ingest/load/{worker}", payload=payload))
    hint("ingest-1", b'{"wait_s": 120.5, "queued": 4000, "rate": 33.2}')
    for bad in (b"[" * 5000, b'{"wait_s": -1}', b'{"wait_s": 1e400}', b"\xff", b'{"wait_s": "soon"}'):
        hint("ingest-2", bad)
    assert stage.rejected == 5 and list(stage.window.busy) == ["ingest-1"]
    clock[0] += 100
    stage.step()
    assert stage.client.journal == []                            # the ingest said 120 s: no resend at 100 s
    clock[0] += 21
    stage.step()
    assert stage.client.journal == [(0, 100)]
    hint("ingest-1", b"")                                        # the worker stopped: its hint deleted
    assert stage.window.busy == {}
    j.close()
