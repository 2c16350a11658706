"""fleetctl as an operator uses it, against a live fleet: ca token/allow, devices (table and
JSON, with config and health), health, tag, config push (one device, --tag) and get, cmd,
report by period and employee, revoke; exit codes scripts rely on."""
from __future__ import annotations

import json

from fleet.cli import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, main
from tests.provisioning.boxes import Box


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def in_background(box, fn, restart_on_pending=False):
    return box.while_running(fn, restart_on_pending=restart_on_pending)


def test_fleetctl_end_to_end(fleet, capsys, tmp_path):
    ca = str(fleet.ca.dir)
    rc, out, _ = run(capsys, "ca", "token", ca, "-n", "2")
    assert rc == EXIT_OK and len(out.split()) == 2
    assert len(json.loads(run(capsys, "ca", "token", ca, "--json")[1])) == 1
    token = out.split()[0]
    assert run(capsys, "ca", "allow", ca, "box-2")[0] == EXIT_OK
    assert run(capsys, "ca", "allow", ca, "../x", "ingest")[0] == EXIT_USAGE
    box1, box2 = Box(fleet.box_config("box-1", token=token)), Box(fleet.box_config("box-2"))
    db = str(fleet.tmp / "ingest.db")
    op = ["--broker", fleet.url, "--ca-dir", ca]
    try:
        box1.add(30)
        box2.add(10)
        assert box1.run_until(lambda: box1.synced() and box2.synced(), others=[box2])
        box1.stage.publish_health()
        box1.run_until(lambda: bool(fleet.store.devices()[0]["health"]), limit=10)

        rc, out, _ = run(capsys, "devices", "--db", db)
        assert rc == EXIT_OK and "box-1" in out and "online" in out and "2 device(s), 2 online" in out
        rc, out, _ = run(capsys, "devices", "--db", db, "--json")
        devs = {d["id"]: d for d in json.loads(out)}
        assert devs["box-1"]["journal_records"] == 30 and devs["box-1"]["health"]["device"] == "box-1"
        rc, out, _ = run(capsys, "health", "box-1", "--db", db, "--json")
        assert rc == EXIT_OK and json.loads(out)["health"]["device"] == "box-1"
        assert run(capsys, "health", "box-9", "--db", db)[0] == EXIT_NOT_FOUND
        rc, out, _ = run(capsys, "tag", "box-2", "north", "--db", db, "--json")
        assert rc == EXIT_OK and json.loads(out) == {"device": "box-2", "tags": ["north"]}

        good = tmp_path / "good.toml"
        good.write_text('[points.till1]\nname = "Front"\n[points.till2]\n')
        bad = tmp_path / "bad.toml"
        bad.write_text('[points.till1]\nmin_contact_s = -1\n')
        rc, _, err = run(capsys, "config", "push", "box-1", str(bad), *op)
        assert rc == EXIT_USAGE and "points.till1.min_contact_s" in err            # checked before it is sent
        rc, out, _ = in_background(box1, lambda: run(capsys, "config", "push", "box-1", str(good), *op))
        assert rc == EXIT_OK and "version 1 sent" in out
        assert box1.run_until(lambda: box1.agent.remote.state.get("status") == "pending")
        box1.restart()
        assert box1.run_until(lambda: box1.agent.remote.state.get("status") == "applied")
        rc, out, _ = in_background(box1, lambda: run(capsys, "config", "get", "box-1", *op, "--json"))
        got = json.loads(out)
        assert rc == EXIT_OK and got["status"] == "applied" and got["applied_version"] == 1
        assert got["desired_version"] == 1
        from appliance.cli.main import main as appliancectl      # what the technician sees on the box
        assert appliancectl(["--config", str(box1.path), "sync", "status", "--json"]) == 0
        st = json.loads(capsys.readouterr().out)
        assert st["certificate"]["days_left"] > 300 and st["remote_config"]["status"] == "applied"
        assert st["remote_config"]["version"] == 1
        # --tag reaches box-2 only, and waits for its report
        rc, out, _ = in_background(box2, lambda: run(capsys, "config", "push", "--tag", "north", str(good), "--db",
                                                     db, "--wait", "20", *op), restart_on_pending=True)
        assert rc == EXIT_OK and out.startswith("box-2: version 1 applied") and "box-1" not in out

        rc, out, _ = in_background(box1, lambda: run(capsys, "cmd", "box-1", "set_owner", "point=till1",
                                                     "staff=anna", *op))
        assert rc == EXIT_OK and "set_owner ok" in out
        rc, out, _ = in_background(box1, lambda: run(capsys, "cmd", "box-1", "restart", "daemon=nope", *op))
        assert rc == EXIT_FAILED and "args.daemon" in out
        rc, _, err = run(capsys, "cmd", "box-1", "diagnostics", "--wait", "0.5", *op)     # nobody steps the box
        assert rc == EXIT_TIMEOUT and "no result" in err

        rc, out, _ = run(capsys, "report", "--db", db, "--by", "day", "--json")
        assert rc == EXIT_OK and "overall" in json.loads(out)
        rc, out, _ = run(capsys, "report", "--db", db, "--by", "owner")
        assert rc == EXIT_OK and "overall" in out
        rc, out, _ = run(capsys, "report", "--db", db, "--from", "2030-01-01", "--json")
        assert json.loads(out) == {"overall": json.loads(out)["overall"]} and json.loads(out)["overall"]["contacts"] == 0

        rc, out, _ = run(capsys, "revoke", "box-2", "--ca", ca)
        assert rc == EXIT_OK and "box-2 revoked (1 certificate" in out
        rc, out, _ = run(capsys, "revoke", "box-2", "--ca", ca, "--json")
        assert rc == EXIT_OK and json.loads(out)["device"] == "box-2"
    finally:
        box1.stop()
        box2.stop()


def test_ca_init_writes_the_ca_the_broker_config_and_refuses_to_overwrite(tmp_path, capsys):
    import stat
    d = tmp_path / "fleet-ca"
    rc, out, _ = run(capsys, "ca", "init", str(d), "--host", "broker.example.com", "--host", "10.0.0.5",
                     "--port", "8884")
    assert rc == EXIT_OK and "fleet CA created" in out
    for name in ("ca", "broker", "ingest", "operator", "provision", "claim"):
        assert stat.S_IMODE((d / f"{name}.key").stat().st_mode) == 0o600
        assert (d / f"{name}.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    conf = (d / "mosquitto.conf").read_text()
    assert "listener 8884" in conf and "require_certificate true" in conf and f"crlfile {d / 'crl.pem'}" in conf
    acl = (d / "acl").read_text()
    assert "user claim\ntopic write ca/v1/provision/+/csr\ntopic read ca/v1/provision/+/cert" in acl
    assert "pattern readwrite ca/v1/%u/#" in acl
    from cryptography import x509
    broker = x509.load_pem_x509_certificate((d / "broker.pem").read_bytes())
    sans = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "broker.example.com" in sans.get_values_for_type(x509.DNSName)
    key_before = (d / "ca.key").read_bytes()
    rc, _, err = run(capsys, "ca", "init", str(d), "--host", "x")
    assert rc == EXIT_USAGE and "exists already" in err and (d / "ca.key").read_bytes() == key_before
    assert run(capsys, "ca", "token", str(tmp_path / "nowhere"))[0] == EXIT_NOT_FOUND
