"""appliancectl replay, journal import, report, export: the file formats and exit codes."""
from __future__ import annotations

import csv
import io
import json

from tests.conftest import clip_event, run_cli, write_events

DAY = [
    {"ts": "2026-11-20T09:00:00.000Z", "type": "staff", "point": "till1", "staff": "anna", "action": "login"},
    {"ts": "2026-11-20T09:00:01.000Z", "type": "presence", "point": "till1", "state": "arrived"},
    {"ts": "2026-11-20T09:00:30.000Z", "type": "sale", "point": "till1", "receipt": "R1", "amount": 12.5, "items": 3},
    {"ts": "2026-11-20T09:01:00.250Z", "type": "presence", "point": "till1", "state": "left"},
    {"ts": "2026-11-20T09:01:05.000Z", "type": "rating", "point": "till1", "value": 5},
    {"ts": "2026-11-20T09:02:00.000Z", "type": "presence", "point": "till2", "state": "arrived"},
    {"ts": "2026-11-20T09:02:10.000Z", "type": "button", "remote": "A1B2C3", "button": 1},
    {"ts": "2026-11-20T09:02:20.000Z", "type": "presence", "point": "till2", "state": "left"},
    {"ts": "2026-11-20T09:05:00.000Z", "type": "rating", "point": "till2", "value": 2},
    {"ts": "2026-11-20T09:06:00.000Z", "type": "sale", "point": "till1", "receipt": "R2"},
]


def test_replay_writes_contacts_and_metrics(tmp_path, config_path):
    events = write_events(tmp_path / "e.jsonl", DAY)
    r = run_cli("replay", "--config", str(config_path), "--events", str(events), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    contacts = [json.loads(x) for x in (tmp_path / "out" / "contacts.jsonl").read_text().splitlines()]
    assert [set(c) for c in contacts] == [{"id", "point", "opened", "closed", "duration_s", "owner", "rating",
                                           "sales", "tags"}] * 2
    c1, c2 = contacts
    assert (c1["point"], c1["opened"], c1["closed"], c1["duration_s"]) == (
        "till1", "2026-11-20T09:00:01.000Z", "2026-11-20T09:01:00.250Z", 59.25)
    assert (c1["owner"], c1["rating"], c1["sales"]) == ("anna", 5, ["R1"])
    assert set(c1["tags"]) == {"rated", "positive", "productive"}
    assert (c2["owner"], c2["rating"], c2["sales"]) == (None, 1, [])
    assert set(c2["tags"]) == {"rated", "negative", "not_positive"}
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(m) == {"overall", "points", "owners"}
    for key in ("contacts", "mean_duration_s", "median_duration_s", "ratings", "top", "negative",
                "orphan_ratings", "misuse", "response_rate", "csi", "cdi", "cci", "eli", "receipts", "conversion"):
        assert key in m["overall"]
    o = m["overall"]
    assert (o["contacts"], o["ratings"], o["top"], o["negative"], o["orphan_ratings"], o["receipts"]) == (2, 3, 2, 1, 1, 2)
    assert o["csi"] == 1.0 and o["cdi"] == 0.5 and o["cci"] == 0.5 and o["eli"] == 0.5 and o["conversion"] == 1.0
    assert m["points"]["till1"]["receipts"] == 2 and m["points"]["till2"]["conversion"] == 0.0
    assert list(m["owners"]) == ["anna"] and m["owners"]["anna"]["contacts"] == 1


def test_replay_reports_bad_lines_with_numbers(tmp_path, config_path):
    src = tmp_path / "e.jsonl"
    lines = [json.dumps(e) for e in DAY[:5]] + [
        "{not json", json.dumps({"ts": "2026-11-20T09:09:00Z", "type": "rating", "point": "till1", "value": 9}),
        json.dumps({"ts": "2026-11-20T09:09:00Z", "type": "rating", "point": "nowhere", "value": 1}),
        json.dumps({"ts": "2026-11-20T09:09:00Z", "type": "button", "remote": "ffffff", "button": 1}),
        json.dumps({"ts": "2026-11-20T09:09:00", "type": "presence", "point": "till1", "state": "arrived"}),
        json.dumps({"ts": "2026-11-20T09:09:00Z", "type": "sale", "point": "till1", "receipt": "R1"}),
        json.dumps({"ts": "2026-11-20T09:09:00Z", "type": "teleport", "point": "till1"}),
    ]
    src.write_text("\n".join(lines) + "\n")
    r = run_cli("replay", "--config", str(config_path), "--events", str(src), "--out", str(tmp_path / "out"))
    assert r.returncode == 1
    err = r.stderr
    for n, text in [(6, "not valid JSON"), (7, "rating value 9 is not on the rating scale"),
                    (8, "unknown point 'nowhere'"), (9, "remote 'ffffff' is not in the config"),
                    (10, "has no zone"), (11, "receipt R1 at till1 repeats line 3"), (12, '"type" must be one of')]:
        assert f"e.jsonl:{n}: " in err and text in err.split(f"e.jsonl:{n}: ")[1].splitlines()[0], (n, err)
    assert "7 line(s) rejected" in err
    assert len((tmp_path / "out" / "contacts.jsonl").read_text().splitlines()) == 1


def test_import_validates_all_or_nothing_and_is_idempotent(tmp_path, config_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(DAY[0]) + "\n" + '{"type": "rating"}\n')
    r = run_cli("--config", str(config_path), "journal", "import", str(bad))
    assert r.returncode == 2 and "bad.jsonl:2:" in r.stderr and "nothing imported" in r.stderr
    assert not (tmp_path / "state" / "journal.db").exists()
    good = write_events(tmp_path / "day.jsonl", DAY)
    r = run_cli("--config", str(config_path), "journal", "import", str(good))
    assert r.returncode == 0 and "imported 10 event(s)" in r.stdout, r.stderr
    r = run_cli("--config", str(config_path), "journal", "import", str(good))
    assert r.returncode == 0 and "imported 0 event(s)" in r.stdout and "10 already there" in r.stdout

    tail = run_cli("--config", str(config_path), "tail", "--no-follow", "-n", "3", "--json")
    assert [json.loads(x)["seq"] for x in tail.stdout.splitlines()] == [8, 9, 10]
    st = run_cli("--config", str(config_path), "status", "--json")
    assert json.loads(st.stdout)["events"] == 10

    # a report shows what the core derived: nothing yet (the core has not run), and says so
    before = run_cli("--config", str(config_path), "report", "--format", "json")
    assert json.loads(before.stdout)["total"]["contacts"] == 0 and "10 input event(s) are not derived" in before.stderr
    rb = run_cli("--config", str(config_path), "rebuild")
    assert rb.returncode == 0 and "0 removed" in rb.stdout, rb.stderr
    rep = run_cli("--config", str(config_path), "report", "--by", "point", "--format", "json")
    assert rep.returncode == 0 and not rep.stderr, rep.stderr
    groups = json.loads(rep.stdout)
    assert groups["total"]["contacts"] == 2 and groups["till1"]["receipts"] == 2
    oracle = run_cli("--config", str(config_path), "replay", "--events", str(good), "--out", str(tmp_path / "o"))
    assert oracle.returncode == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert {k: groups["total"][k] for k in metrics["overall"]} == metrics["overall"]     # report == replay
    table = run_cli("--config", str(config_path), "report", "--by", "owner")
    assert "anna" in table.stdout and "total" in table.stdout
    day = run_cli("--config", str(config_path), "report", "--by", "day", "--format", "csv",
                  "--from", "2026-11-20", "--to", "2026-11-21")
    rows = list(csv.DictReader(io.StringIO(day.stdout)))
    assert rows[0]["day"] == "2026-11-20" and rows[0]["contacts"] == "2"
    empty = run_cli("--config", str(config_path), "report", "--format", "json", "--from", "2026-11-21")
    assert json.loads(empty.stdout)["total"]["csi"] is None
    bad_from = run_cli("--config", str(config_path), "report", "--from", "yesterday")
    assert bad_from.returncode == 2 and "not a date" in bad_from.stderr

    exp = run_cli("--config", str(config_path), "export", "ratings", "--csv")
    rows = list(csv.reader(io.StringIO(exp.stdout)))
    assert rows[0][:5] == ["datetime", "remote", "button", "point", "owner"]
    assert rows[1][:5] == ["2026-11-20T09:01:05.000Z", "", "", "till1", "anna"]
    assert rows[2][:5] == ["2026-11-20T09:02:10.000Z", "a1b2c3", "1", "till2", ""]
    assert [r[-1] for r in rows[1:]] == ["counted", "counted", "orphan"]


def test_report_without_journal_says_what_to_do(tmp_path, config_path):
    r = run_cli("--config", str(config_path), "report")
    assert r.returncode == 3 and "no journal" in r.stderr


def test_config_option_is_taken_before_or_after_the_command(tmp_path, config_path):
    events = write_events(tmp_path / "e.jsonl", DAY)
    a = run_cli("--config", str(config_path), "replay", "--events", str(events), "--out", str(tmp_path / "a"))
    b = run_cli("journal", "import", "--config", str(config_path), str(events))
    r = run_cli("rebuild", "--config", str(config_path))
    c = run_cli("report", "--config", str(config_path), "--format", "json",
                env={"APPLIANCE_CONFIG": str(tmp_path / "missing.toml")})
    assert (a.returncode, b.returncode, r.returncode, c.returncode) == (0, 0, 0, 0), (a.stderr, b.stderr, c.stderr)
    assert json.loads(c.stdout)["total"]["contacts"] == 2


def test_status_shows_microphone_rf_and_clip_health(tmp_path, config_path):
    from appliance.journal import Journal, NewEvent
    with Journal(tmp_path / "state" / "journal.db") as j:
        j.append(NewEvent("mic_state", 1_795_165_200_000, {"state": "lost", "error": "no device"}, None, "audio"))
        j.append(NewEvent("unknown_remote", 1_795_165_201_000, {"remote": "beef1", "button": 1}, None, "rf"))
        j.append(clip_event("c1", b"opus", 1_795_165_202_000))
        j.append(NewEvent("clip_deleted", 1_795_165_203_000, {"clip": "c1", "reason": "quota", "acked": False,
                                                              "size": 4}, None, "audio"))
    st = json.loads(run_cli("--config", str(config_path), "status", "--json").stdout)
    assert st["microphone"] == {"state": "lost", "since": "2026-11-20T09:00:00.000Z", "error": "no device"}
    assert st["unknown_remote_presses"] == 1 and st["clips"] == {"made": 1, "deleted": 1, "deleted_before_ack": 1}
    text = run_cli("--config", str(config_path), "status").stdout
    assert "microphone: lost" in text and "1 before the cloud acknowledged them" in text


def test_status_shows_the_last_pruning_and_rebuild(tmp_path, config_path):
    from appliance import vocabulary as v
    from appliance.journal import Journal
    with Journal(tmp_path / "state" / "journal.db") as j:
        j.append(v.Pruned(kind="raw", count=812, first_seq=1, last_seq=900, before="2026-08-01T00:00:00.000Z")
                 .as_event(1_795_165_200_000, None, "core"))
        j.append(v.Rebuild(since="2026-11-01T00:00:00.000Z", deleted=40, derived=41)
                 .as_event(1_795_165_201_000, None, "cli"))
    st = json.loads(run_cli("--config", str(config_path), "status", "--json").stdout)
    assert st["last_pruning"]["count"] == 812 and st["last_rebuild"]["derived"] == 41
    text = run_cli("--config", str(config_path), "status").stdout
    assert "last pruning: 2026-11-20T09:00:00.000Z, 812 raw events older than 2026-08-01" in text
    assert "last rebuild: 2026-11-20T09:00:01.000Z, records from 2026-11-01T00:00:00.000Z derived again" in text
