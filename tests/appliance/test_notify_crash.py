"""The real ``appliancectl run core`` SIGKILLed again and again while it delivers to a slow
webhook: every message arrives, nothing confirmed is sent again (at most the one in flight at
each kill is repeated, with the same idempotency key), and the journal records each success
once. Also the CLI: ``notify test``, ``notify status``, ``calls``, ``alerts ack``."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from appliance import vocabulary as v
from appliance.journal import Journal, NewEvent
from tests.conftest import ROOT, run_cli
from tests.notify_servers import HttpRecorder, free_port

CONFIG = """
[device]
id = "box-9"
state_dir = "{state}"
[time]
reorder_s = 0.2
[points.till1]
rating_scale = {{ 1 = "negative", 2 = "top" }}
misuse_presses = 1000                # 60 presses in a row are a test, not a child
[notifications.hook]
kind = "webhook"
url = "{url}/h"
ratings = ["negative", "top"]
retry_s = 0.05
"""


def start_core(cfg_path) -> subprocess.Popen:
    log = open(cfg_path.parent / "core.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(cfg_path), "run", "core"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def test_sigkilled_mid_delivery_doubles_nothing_confirmed(tmp_path):
    srv = HttpRecorder(delay_s=0.08)
    cfg_path = tmp_path / "appliance.toml"
    cfg_path.write_text(CONFIG.format(state=tmp_path / "state", url=srv.url))
    (tmp_path / "state").mkdir()
    presses = 60
    kills = 0
    try:
        core = start_core(cfg_path)
        time.sleep(1.5)                                   # the destination's stage starts from now
        now = int(time.time() * 1000)
        with Journal(tmp_path / "state" / "journal.db") as j:
            j.append_many([NewEvent("rating", now + i, {"value": 1 + i % 2, "class": ("negative", "top")[i % 2]},
                                    "till1", "test") for i in range(presses)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.6)
            if len(srv.requests) >= presses and kills >= 5:
                break
            if kills < 5 and 0 < len(srv.requests) < presses:
                core.send_signal(signal.SIGKILL)            # mid-delivery: a request may be in flight
                core.wait()
                kills += 1
                core = start_core(cfg_path)
        with Journal(tmp_path / "state" / "journal.db") as j:
            for _ in range(100):
                if j.count(v.NOTIFICATION_SENT) == presses:
                    break
                time.sleep(0.1)
            sent = [v.read(e, v.NotificationSent) for e in j.iter_all([v.NOTIFICATION_SENT])]
            pending = j.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        core.send_signal(signal.SIGTERM)
        assert core.wait(15) == 0
        keys = Counter(r.headers["Idempotency-Key"] for r in srv.requests)
        assert kills >= 3, kills
        assert len(keys) == presses and pending == 0            # every message arrived
        assert len(sent) == presses and len({s.key for s in sent}) == presses   # each success journalled once
        doubled = sum(n - 1 for n in keys.values())
        assert doubled <= kills, (doubled, kills)                 # only what was in flight at a kill
    finally:
        srv.close()


def test_notify_cli_test_status_calls_and_alerts(tmp_path):
    srv = HttpRecorder()
    cfg_path = tmp_path / "appliance.toml"
    cfg_path.write_text(CONFIG.format(state=tmp_path / "state", url=srv.url) + f"""
[notifications.down]
kind = "webhook"
url = "http://127.0.0.1:{free_port()}/h"
""")
    try:
        ok = run_cli("--config", str(cfg_path), "notify", "test", "hook")
        assert ok.returncode == 0 and "hook: delivered" in ok.stdout
        assert srv.requests[-1].json()["event"] == "test" and srv.requests[-1].json()["device"] == "box-9"
        bad = run_cli("--config", str(cfg_path), "notify", "test", "down")
        assert bad.returncode == 3 and "not delivered" in bad.stdout and "Refused" in bad.stdout
        assert run_cli("--config", str(cfg_path), "notify", "test", "nope").returncode == 2
        with Journal(tmp_path / "state" / "journal.db") as j:
            j.db.execute("INSERT INTO outbox(destination, key, created, due, attempts, dead, last_error, message) "
                         "VALUES ('down', 'down:e1', 1, 2, 10, 1, 'HTTP 500', x'7b7d')")
            t = 1_795_165_200_000
            j.append(NewEvent(v.CALL_OPENED, t, {"call": "k1", "owner": "anna", "location": "desk"}, "till1", "core"))
            j.append(v.AlertOpened(alert="a1", destination="hook", rule="windows[0]", what="negative_share 0.6")
                     .as_event(t, "till1", "core"))
        st = json.loads(run_cli("--config", str(cfg_path), "notify", "status", "--json").stdout)
        assert st["down"]["dead_letters"] == 1 and st["down"]["dead"][0]["error"] == "HTTP 500"
        assert st["hook"] == {**st["hook"], "kind": "webhook", "outbox": 0, "dead_letters": 0}
        text = run_cli("--config", str(cfg_path), "notify", "status").stdout
        assert "dead letter down:e1 after 10 attempts: HTTP 500" in text
        status = run_cli("--config", str(cfg_path), "status").stdout
        assert "notify down (webhook): 0 queued, last sent never, 1 dead letters" in status
        retry = run_cli("--config", str(cfg_path), "notify", "retry", "down")
        assert retry.returncode == 0 and "1 dead letter(s) queued again" in retry.stdout
        st = json.loads(run_cli("--config", str(cfg_path), "notify", "status", "--json").stdout)
        assert st["down"]["dead_letters"] == 0 and st["down"]["outbox"] == 1
        calls = json.loads(run_cli("--config", str(cfg_path), "calls", "--days", "3650", "--json").stdout)
        assert [(c["call"], c["open"]) for c in calls] == [("k1", True)]
        answer = run_cli("--config", str(cfg_path), "calls", "answer", "till1", "--staff", "anna")
        assert answer.returncode == 0
        with Journal(tmp_path / "state" / "journal.db") as j:
            assert j.latest(v.ANSWER).data == {"staff": "anna"}
        ack = run_cli("--config", str(cfg_path), "alerts", "ack", "a1", "--comment", "spoke to the team")
        assert ack.returncode == 0
        alerts = json.loads(run_cli("--config", str(cfg_path), "alerts", "--json").stdout)
        assert alerts[0]["comment"] == "spoke to the team" and alerts[0]["closed"] is None
        assert run_cli("--config", str(cfg_path), "alerts", "ack", "zzz").returncode == 2
    finally:
        srv.close()
