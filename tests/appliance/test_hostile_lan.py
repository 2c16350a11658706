"""The shop's LAN is untrusted (ARCHITECTURE §11): idle and slow clients, a burst of tills,
absurd event times, a poison drop file — each reproduced against the real core daemon
(``appliancectl run core``) or the real POS server on loopback."""
from __future__ import annotations

import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.journal import Journal, NewEvent
from tests.conftest import ROOT, make_config, run_cli
from tests.mqtt_broker import free_port, wait_port

TOKEN = "lan-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def enough_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Core:
    """``appliancectl run core`` with the POS API and a drop folder, as systemd starts it."""

    def __init__(self, tmp_path: Path):
        self.port = free_port()
        self.drop = tmp_path / "drop"
        self.cfg = make_config(tmp_path, f'\n[pos]\nlisten = "127.0.0.1:{self.port}"\ntoken = "{TOKEN}"\n'
                                         f'drop_dir = "{self.drop}"\n')
        self.journal = tmp_path / "state" / "journal.db"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Core":
        log = open(self.cfg.parent / "core.log", "ab")     # a file: a pipe nobody reads would block its logging
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(self.cfg), "run",
                                      "core"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))
        wait_port(self.port, self.proc, "core's POS API")
        return self

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()                # never left running after the test
            self.proc.wait()
            raise

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def threads(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def post(port: int, path: str, body: dict | bytes, timeout: float = 10) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", path, body=data, headers={"Authorization": f"Bearer {TOKEN}",
                                                   "Content-Type": "application/json"})
    r = conn.getresponse()
    out = r.status, json.loads(r.read() or b"{}")
    conn.close()
    return out


def test_idle_and_slow_clients_never_keep_a_till_out(tmp_path):
    core = Core(tmp_path).start()
    idle: list[socket.socket] = []
    stop = threading.Event()
    try:
        base_fds, base_threads = core.fds(), core.threads()
        for _ in range(1100):                                   # connect and say nothing
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", core.port))
            idle.append(s)

        def slow_client(i: int) -> None:                        # a request head, a byte at a time
            try:
                with socket.create_connection(("127.0.0.1", core.port), timeout=30) as s:
                    for ch in b"POST /v1/sale HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n":
                        if stop.wait(0.3):
                            return
                        s.send(bytes([ch]))
            except OSError:
                pass                                            # evicted or timed out: as it should be
        slow = [threading.Thread(target=slow_client, args=(i,), daemon=True) for i in range(300)]
        for t in slow:
            t.start()
        answers = []
        for i in range(24):                                     # a till's receipts throughout (12 s); a till
            # kept out would hit the client's timeout and fail here (no wall-clock assertion: CI may be loaded)
            answers.append(post(core.port, "/v1/sale", {"point": "till1", "receipt": f"T{i}"}, timeout=10)[0])
            time.sleep(0.5)
        fds, threads = core.fds(), core.threads()
    finally:
        stop.set()
        for s in idle:
            s.close()
        rc = core.stop()
    assert answers == [201] * 24
    assert fds <= base_fds + 256 + 8, (base_fds, fds)           # the connection cap, well inside LimitNOFILE
    assert threads <= base_threads + 2, (base_threads, threads)  # no thread per client
    assert rc == 0
    with Journal(core.journal) as j:
        assert j.count("sale") == 24


def test_two_hundred_tills_at_once_are_all_answered(tmp_path):
    core = Core(tmp_path).start()
    results: list[int] = []
    barrier = threading.Barrier(200)

    def till(i: int) -> None:
        barrier.wait()
        try:
            results.append(post(core.port, "/v1/sale", {"point": "till1", "receipt": f"S{i}"}, timeout=30)[0])
        except OSError as exc:
            results.append(-1)
            print("till", i, exc)
    try:
        threads = [threading.Thread(target=till, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        core.stop()
    assert sorted(results) == [201] * 200


@pytest.mark.parametrize("ts", [9 * 10**18, "9999-12-31T23:59:59Z", -5, 0, "2019-12-31T23:59:59Z", 2**64 - 1,
                                "2100-01-01T00:00:00Z"])
def test_absurd_event_times_are_answered_400_naming_ts(tmp_path, ts):
    from appliance.config import load_config
    from appliance.pos_api import PosApi
    from tests.appliance.test_pos_input import FixedClock
    cfg = load_config(make_config(tmp_path, f'\n[pos]\nlisten = "127.0.0.1:0"\ntoken = "{TOKEN}"\n'))
    jp = tmp_path / "state" / "journal.db"
    Journal(jp).close()
    api = PosApi(cfg, str(jp), FixedClock()).start()
    try:
        status, answer = post(api.address[1], "/v1/sale", {"point": "till1", "receipt": "R1", "ts": ts})
        deep = post(api.address[1], "/v1/sale", b'{"point": "till1", "receipt": "R2", "x": ' + b"[" * 2000
                    + b"]" * 2000 + b"}")
    finally:
        api.stop()
    assert status == 400 and answer["error"].startswith("ts: "), answer
    assert deep[0] == 400 and "nested deeper" in deep[1]["error"]
    with Journal(jp) as j:
        assert j.count() == 0


def test_readers_survive_an_old_row_with_an_absurd_time(tmp_path):
    cfg = make_config(tmp_path)
    with Journal(tmp_path / "state" / "journal.db") as j:       # written before times were checked
        j.append(NewEvent("sale", 9 * 10**18, {"receipt": "R1"}, "till1", "pos-http"))
        j.append(NewEvent("sale", -5, {"receipt": "R2"}, "till1", "pos-http"))
    status = run_cli("--config", str(cfg), "status")
    tail = run_cli("--config", str(cfg), "tail", "--no-follow")
    as_json = run_cli("--config", str(cfg), "tail", "--no-follow", "--json")
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert tail.returncode == 0 and "R1" in tail.stdout and "R2" in tail.stdout, tail.stderr
    assert as_json.returncode == 0 and len(as_json.stdout.splitlines()) == 2


def test_a_poison_drop_file_fails_line_by_line_and_a_restart_is_clean(tmp_path):
    core = Core(tmp_path)
    core.drop.mkdir()
    lines = ['{"ts": "2026-11-20T09:00:00Z", "type": "sale", "point": "till1", "receipt": "P1"}',
             '{"ts": 18446744073709551615, "type": "sale", "point": "till1", "receipt": "P2"}',
             '{"ts": "2026-11-20T09:00:02Z", "type": "sale", "point": "till1", "receipt": "P3", "x": '
             + "[" * 2000 + "]" * 2000 + "}",
             '{"ts": "2026-11-20T09:00:03Z", "type": "sale", "point": "till1", "receipt": "P4"}']
    (core.drop / "poison.jsonl").write_text("\n".join(lines) + "\n")
    core.start()
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end and not list((core.drop / "rejected").glob("poison.*.errors.txt")):
            time.sleep(0.2)
        assert core.proc.poll() is None                          # core stays up
        ok = post(core.port, "/v1/sale", {"point": "till1", "receipt": "after"})[0]
    finally:
        assert core.stop() == 0
    [report] = list((core.drop / "rejected").glob("poison.*.errors.txt"))
    text = report.read_text()
    assert "poison.jsonl:2: ts: " in text and "poison.jsonl:3: nested deeper than 32 levels" in text
    assert ok == 201
    with Journal(core.journal) as j:
        assert sorted(e.data["receipt"] for e in j.iter_all(["sale"])) == ["P1", "P4", "after"]
    assert not (core.drop / "poison.jsonl").exists()
    core.start()                                                 # a restart is clean: nothing to redo
    try:
        time.sleep(3)
        assert core.proc.poll() is None
    finally:
        assert core.stop() == 0
    with Journal(core.journal) as j:
        assert j.count("sale") == 3


def test_control_characters_from_the_journal_never_reach_the_terminal_raw(tmp_path):
    cfg = make_config(tmp_path)
    evil = "anna\x1b]0;owned\x07\x1b[2J\x9b31m"
    with Journal(tmp_path / "state" / "journal.db") as j:
        j.append(NewEvent("staff", 1_795_165_200_000, {"staff": evil, "action": "login"}, "till1", "pos-http"))
        j.append(NewEvent("mic_state", 1_795_165_200_001, {"state": "lost", "error": "gone\x1b[31m"}, None, "audio"))
    outputs = [run_cli("--config", str(cfg), *cmd).stdout for cmd in
               (["tail", "--no-follow"], ["tail", "--no-follow", "--json"], ["status"])]
    for out in outputs:
        assert not any(ch in out for ch in "\x1b\x07\x9b"), repr(out)
    assert "anna\\x1b]0;owned\\x07" in outputs[0] and "gone\\x1b[31m" in outputs[2]
    assert json.loads(outputs[1].splitlines()[0])["staff"] == evil


def test_tail_shows_every_one_of_n_events(tmp_path):
    cfg = make_config(tmp_path)
    with Journal(tmp_path / "state" / "journal.db") as j:
        j.append_many([NewEvent("sale", 1_795_165_200_000 + i, {"receipt": f"R{i}"}, "till1", "t")
                       for i in range(1200)])
    out = run_cli("--config", str(cfg), "tail", "-n", "1100", "--no-follow").stdout
    assert len(out.splitlines()) == 1100


def test_a_saturated_pos_api_starves_neither_the_core_stage_nor_the_drop_folder(tmp_path):
    core = Core(tmp_path)
    core.drop.mkdir()
    core.start()
    stop = threading.Event()
    sent = []

    def till(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", core.port, timeout=10)
        i = 0
        while not stop.is_set():
            conn.request("POST", "/v1/sale", body=json.dumps({"point": "till1", "receipt": f"L{k}-{i}"}),
                         headers={"Authorization": f"Bearer {TOKEN}"})
            r = conn.getresponse()
            r.read()
            sent.append(r.status)
            i += 1
    tills = [threading.Thread(target=till, args=(k,), daemon=True) for k in range(6)]
    commits = []
    try:
        for t in tills:
            t.start()
        time.sleep(1)
        (core.drop / "sales.jsonl").write_text(
            '{"ts": "2026-11-20T09:00:00Z", "type": "staff", "point": "till1", "staff": "anna"}\n')
        end = time.monotonic() + 8
        while time.monotonic() < end:                       # the core stage's commits while tills hammer
            with Journal(core.journal, readonly=True) as j:
                commits.append(next(s["updated"] for s in j.stages() if s["name"] == "core"))
            time.sleep(0.25)
    finally:
        stop.set()
        for t in tills:
            t.join(10)
        assert core.stop() == 0
    assert len(sent) > 200 and set(sent) == {201}
    gaps = [(b - a) / 1000 for a, b in zip(commits, commits[1:], strict=False) if b != a]
    assert len(set(commits)) > 10 and max(gaps) < 3.0, gaps     # the core kept committing throughout
    assert list((core.drop / "done").glob("sales.*.jsonl"))     # the drop folder was scanned
