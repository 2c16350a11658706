"""Simulated boxes for fleet tests: the real sync daemon's stage and agent, driven step by
step (a "restart" builds them again from the config file, as systemd would)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from appliance.config import load_config
from appliance.journal import Journal, NewEvent
from provisioning.agent import Agent, build


class Box:
    def __init__(self, config_path: Path):
        self.path = config_path
        self.stage = None
        self.journal = None
        self.start()

    def start(self) -> None:
        self.cfg = load_config(self.path)
        self.journal = Journal.in_dir(self.cfg.device.state_dir)
        stop = threading.Event()
        timer = threading.Timer(60, stop.set)
        timer.start()
        try:
            self.stage = build(self.cfg, self.journal, self.path, stop)
        finally:
            timer.cancel()
        assert self.stage is not None, "enrolment did not finish"
        self.stage.start()
        # subscribed before anyone sends it a command (commands are not retained)
        self.stage.connected.wait(10)

    @property
    def agent(self) -> Agent:
        return self.stage.extensions[0]

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.stage is not None:
            self.stage.stop()
        if self.journal is not None:
            self.journal.close()
        self.stage = self.journal = None

    def add(self, n: int, start: int = 0) -> None:
        self.journal.append_many([NewEvent("rating", 1_795_165_200_000 + i, {"value": 1}, "till1", "test")
                                  for i in range(start, start + n)])

    def run_until(self, pred, limit: float = 30.0, others=()) -> bool:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            self.stage.step()
            for o in others:
                o.stage.step()
            if pred():
                return True
            time.sleep(0.02)
        return False

    def while_running(self, fn, limit: float = 60.0, restart_on_pending: bool = False):
        """Call ``fn`` (an operator's request) on a thread while this box is driven — it
        answers only while stepped — and return what it returned; like systemd, restart the
        box when a config it took is pending."""
        res = {}
        t = threading.Thread(target=lambda: res.setdefault("r", fn()))
        t.start()

        def done():
            remote = self.agent.remote
            if restart_on_pending and remote.state.get("status") == "pending" and \
                    remote.running_hash != remote.state.get("hash"):
                self.restart()
            return not t.is_alive()
        assert self.run_until(done, limit=limit)
        t.join()
        return res["r"]

    def synced(self) -> bool:
        return self.stage.acked == self.journal.last_seq()
