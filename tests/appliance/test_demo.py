"""appliancectl demo: the newcomer's first look runs end to end on this machine."""
from __future__ import annotations

import json

from tests.conftest import run_cli


def test_demo_runs_the_day_and_reports(tmp_path):
    r = run_cli("demo", "--speed", "8000", "--state-dir", str(tmp_path / "demo"), timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "contact" in out and "The day's report" in out and "anna" in out and "carla" in out
    assert "misuse rating" in out and "staff call, answered" in out
    # the live daemon's contacts are what the report (a replay of the journal) counts
    rep = run_cli("--config", str(tmp_path / "demo" / "appliance.toml"), "report", "--format", "json")
    total = json.loads(rep.stdout)["total"]
    from appliance.journal import Journal
    with Journal(tmp_path / "demo" / "journal.db") as j:
        live = len(list(j.iter_all(["contact"])))
        sources = {e.source for e in j.iter_all(["sale", "staff"])}
    assert live == total["contacts"] > 80
    assert sources == {"pos-http"}
    assert total["misuse"] == 3 and total["receipts"] > 60
