"""The live core stage: same contacts as replay, restart-safe, killable at any moment."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

from appliance.config import load_config
from appliance.core import STAGE, CoreStage
from appliance.journal import Journal
from appliance.replay import replay_file
from appliance.point import contact_json
from appliance.timefmt import iso_ms, parse_ts
from tests.conftest import ROOT, config_text, write_events

T0 = 1_795_165_200_000


def random_day(seed: int, n_contacts: int = 60) -> list[dict]:
    """Contacts that all close, with ratings, sales, staff changes and some misuse."""
    rnd = random.Random(seed)
    out = []
    receipt = 0
    for point, values in (("till1", [1, 2, 3, 4, 5]), ("till2", [1, 2])):
        t = T0
        for _ in range(n_contacts):
            if rnd.random() < 0.1:
                out.append({"ts": iso_ms(t), "type": "staff", "point": point,
                            "staff": rnd.choice(["anna", "boris"]), "action": "login"})
            dur = rnd.randint(1_000, 200_000)
            out.append({"ts": iso_ms(t), "type": "presence", "point": point, "state": "arrived"})
            for _ in range(rnd.choice([0, 0, 1, 1, 2, 6])):
                out.append({"ts": iso_ms(t + rnd.randint(0, dur + 25_000)), "type": "rating", "point": point,
                            "value": rnd.choice(values)})
            if rnd.random() < 0.7:
                receipt += 1
                out.append({"ts": iso_ms(t + rnd.randint(0, dur + 35_000)), "type": "sale", "point": point,
                            "receipt": f"R{receipt}"})
            out.append({"ts": iso_ms(t + dur), "type": "presence", "point": point, "state": "left"})
            t += dur + rnd.randint(0, 60_000)
    out.sort(key=lambda e: e["ts"])
    return out


def journal_contacts(journal: Journal) -> list[dict]:
    rows = [e.data for e in journal.iter_all(["contact"])]
    return sorted(({"id": d["contact"], **{k: d[k] for k in ("point", "opened", "closed", "duration_s", "owner",
                                                             "rating", "sales", "tags")}} for d in rows),
                  key=lambda c: (c["opened"], c["point"]))


def replay_contacts(cfg, events_path) -> list[dict]:
    records, errors, _ = replay_file(cfg, str(events_path))
    assert not errors
    return sorted((contact_json(r) for k, r in records if k == "contact"), key=lambda c: (c["opened"], c["point"]))


def test_live_stage_equals_replay_across_restarts(tmp_path, config_path, cfg):
    events = random_day(1)
    path = write_events(tmp_path / "day.jsonl", events)
    expected = replay_contacts(cfg, path)
    assert len(expected) > 50
    from appliance.events import load_file
    evs, errs = load_file(str(path), cfg)
    assert not errs
    jp = tmp_path / "state" / "journal.db"
    chunks = [evs[i:i + 37] for i in range(0, len(evs), 37)]
    for n, chunk in enumerate(chunks):
        with Journal(jp) as j:
            j.append_many(chunk)
            if n == len(chunks) // 2:   # an unreadable snapshot: the stage rebuilds, doubling nothing
                j.db.execute("UPDATE stages SET state = x'00ff' WHERE name = ?", (STAGE,))
            stage = CoreStage(cfg, j, reorder_ms=0)   # a restart every chunk
            stage.step(chunk[-1].ts)
    with Journal(jp) as j:
        CoreStage(cfg, j, reorder_ms=0).step(evs[-1].ts + 3_600_000)
        got = journal_contacts(j)
        keys = Counter(e.type for e in j.iter_all(["contact", "contact_closed", "rating_settled"]))
    assert got == expected
    assert keys["contact"] == keys["contact_closed"] == len(expected)


def test_reorder_window_takes_late_events_in_time_order(tmp_path, cfg):
    from appliance.journal import NewEvent
    with Journal(tmp_path / "j.db") as j:
        stage = CoreStage(cfg, j, reorder_ms=5_000)
        j.append(NewEvent("presence", T0, {"state": "arrived"}, "till1"))
        j.append(NewEvent("presence", T0 + 20_000, {"state": "left"}, "till1"))
        stage.step(T0 + 21_000)
        j.append(NewEvent("rating", T0 + 10_000, {"value": 5, "class": "top"}, "till1"))  # arrives late
        stage.step(T0 + 22_000)
        stage.step(T0 + 120_000)
        [c] = journal_contacts(j)
    assert c["rating"] == 5 and "positive" in c["tags"]


def test_core_daemon_killed_at_random_loses_and_doubles_nothing(tmp_path):
    """The real daemon on a simulated clock (2000x), fed live through `journal import`,
    SIGKILLed after every other batch: its contacts equal the replay's, once each."""
    from appliance.clock import SimClock
    from tests.conftest import make_config
    config_path = make_config(tmp_path, "\n[time]\nreorder_s = 14400\n")   # 7 s real: imports are never late
    cfg = load_config(config_path)
    events = random_day(2, n_contacts=30)
    expected = replay_contacts(cfg, write_events(tmp_path / "all.jsonl", events))
    rnd = random.Random(7)
    parts = [events[i:i + 20] for i in range(0, len(events), 20)]
    speed, epoch = 2000.0, int(time.time() * 1000)
    clock = SimClock(T0, speed, epoch)
    env = dict(os.environ, APPLIANCE_SIM_CLOCK=f"{iso_ms(T0)}@{speed}", APPLIANCE_SIM_EPOCH=str(epoch))

    def start():
        return subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(config_path),
                                 "run", "core"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    core = start()
    kills = 0
    for n, part in enumerate(parts):
        last = max(parse_ts(e["ts"]) for e in part)
        while clock.now_ms() < last:
            time.sleep(0.005)
        f = write_events(tmp_path / f"part{n}.jsonl", part)
        r = subprocess.run([sys.executable, "-m", "appliance.cli.main", "--config", str(config_path),
                            "journal", "import", str(f)], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        if n % 2 == 0:
            time.sleep(rnd.uniform(0.0, 0.2))
            core.send_signal(signal.SIGKILL)
            core.wait()
            kills += 1
            core = start()
    deadline = time.monotonic() + 60
    with Journal(tmp_path / "state" / "journal.db") as j:
        while time.monotonic() < deadline:
            if len(list(j.iter_all(["contact"]))) >= len(expected):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        core.send_signal(signal.SIGTERM)
        assert core.wait(20) == 0, core.stderr.read().decode()
        got = journal_contacts(j)
        assert j.integrity_ok()
    assert kills >= 3
    assert got == expected


def test_snapshot_is_plain_data_that_round_trips(tmp_path, caplog):
    """The core resumes from its snapshot (no rebuild), which is JSON, not a pickle; a pickle
    or garbage put there by anyone who can write the journal is dropped and rebuilt."""
    import json
    import logging
    import pickle

    from appliance.core import STAGE, CoreStage
    from appliance.journal import Journal, NewEvent
    from appliance import snapshot
    cfg = config_text("[points.p]\npos = true\n[points.g]\n[sensors.s]\nkind = \"motion\"\npin = 5\npoint = \"g\"\n")
    t0 = 1_795_165_200_000
    with Journal(tmp_path / "j.db") as j:
        j.append_many([NewEvent(t, t0 + s * 1000, d, pt, "test") for t, s, pt, d in [
            ("staff", 0, "p", {"staff": "anna", "action": "login"}), ("sale", 5, "p", {"receipt": "R1", "amount": 3.0}),
            ("rating", 6, "p", {"value": 1, "class": "negative"}), ("call", 7, "p", {"press": "short"}),
            ("sensor", 8, "g", {"present": True}), ("rating", 9, "g", {"value": 2, "class": "top"})]])
        stage = CoreStage(cfg, j, reorder_ms=0)
        stage.step(t0 + 20_000)                            # a contact open at g, things pending
        _, blob = j.stage_state(STAGE)
        doc = json.loads(blob)
        assert doc["version"] == snapshot.VERSION and doc["points"]["g"]["open_contact"] is not None
        caplog.set_level(logging.INFO)
        again = CoreStage(cfg, j, reorder_ms=0)
        assert "resumed at seq" in caplog.text and "rebuilding" not in caplog.text
        assert snapshot.dump(again.state.pipeline, again.state.held, again.hash) == blob
        for bad in (pickle.dumps({"x": 1}), b"\x80\x04garbage", b"{}", b"[" * 5000):
            with j.stage(STAGE) as txn:
                txn.state = bad
            caplog.clear()
            rebuilt = CoreStage(cfg, j, reorder_ms=0)
            assert "rebuilding from the journal" in caplog.text
            rebuilt.step(t0 + 20_000)
        assert j.count("contact_opened") == 1               # rebuilt four times, doubled nothing


def test_stepped_second_by_second_as_the_daemon_does_it_equals_replay_and_idles_without_commits(tmp_path, cfg):
    """Events arrive as they happen and the stage is stepped every second of the day, as the
    daemon's loop does: the contacts are replay's, and the steps with nothing new and nothing
    due open no write transaction (an idle box's core)."""
    events = random_day(3, n_contacts=15)
    path = write_events(tmp_path / "day.jsonl", events)
    expected = replay_contacts(cfg, path)
    from appliance.events import load_file
    evs, errs = load_file(str(path), cfg)
    assert not errs
    with Journal(tmp_path / "j.db") as j:
        stage = CoreStage(cfg, j, reorder_ms=500)
        opened = Counter()
        real_stage = j.stage

        def counted_stage(name):
            opened[name] += 1
            return real_stage(name)
        j.stage = counted_stage
        i, steps, t = 0, 0, evs[0].ts
        end = evs[-1].ts + 3_600_000
        while t <= end:
            while i < len(evs) and evs[i].ts <= t:
                j.append(evs[i])
                i += 1
            stage.step(t)
            steps += 1
            if t <= end - 1_800_000:
                busy = opened[STAGE]
            t += 1000
        got = journal_contacts(j)
    assert got == expected
    assert steps > 5000 and opened[STAGE] < steps / 2, (opened, steps)
    assert opened[STAGE] == busy        # the last half hour, everything settled: 1,800 steps, no transaction
