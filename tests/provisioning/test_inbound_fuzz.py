"""Every payload that crosses the cloud boundary, fuzzed (ARCHITECTURE §11), on both sides:
config documents, commands, certificate answers (box); CSRs, health, info, config reports and
command results (cloud). Nothing crashes a handler, a bad payload changes nothing, nothing is
written outside its place, and no box speaks for another."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from appliance import vocabulary as v
from appliance.cloud.mqtt import BrokerSettings
from appliance.cloud.sync import SyncStage
from appliance.config import load_config
from appliance.config.remote import REMOTE_FILE
from appliance.journal import Journal
from fleet.ingest import Ingest, IngestStore
from fleet.pki import FleetCA
from fleet.provision import ProvisionServer
from provisioning.agent import Agent
from provisioning.identity import Identity
from tests.mqtt_broker import free_port

SHA = "ab" * 32
json_values = st.recursive(st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40)
                           | st.floats(allow_nan=True) | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                        max_size=5), max_leaves=40)
raw = (st.binary(max_size=400) | json_values.map(lambda x: json.dumps(x).encode())
       | st.builds(lambda d: b"[" * d + b"]" * d, st.integers(0, 4000))
       | st.builds(lambda d: b'{"a":' * d + b"1" + b"}" * d, st.integers(0, 3000)))
toml_texts = (st.text(max_size=300) | st.sampled_from([
    '[points.x]\nmin_contact_s = 1e999\n', '[points.x]\nmin_contact_s = 99999999999999999999999\n',
    "[a]\n" + "[a.b]\n" * 3 + "c = [[[[[[[[1]]]]]]]]\n", '[sync]\nbroker = "mqtt://evil:1"\n[device]\nid = "other"\n',
    '[provisioning]\nremote_config = false\npinned = []\n', '[notifications.x]\nkind = "csv"\ndirectory = "/etc"\n',
    '[points."../../x"]\n', "x = '\x00'\n", "[points.p]\nrating_scale = {1 = \"top\"}\n" * 2]))


def shaped(keys: list[str], extra=None):
    opt = {k: json_values for k in keys}
    opt.update(extra or {})
    return st.fixed_dictionaries({}, optional=opt).map(lambda d: json.dumps(d).encode())


desired_docs = shaped(["version"], {"toml": toml_texts, "version": st.integers(-5, 2**60) | json_values})
commands = shaped(["id", "args", "expires"], {
    "action": st.sampled_from(["restart", "reboot", "resync", "set_owner", "test_notification", "update", "x"])
    | json_values,
    "id": st.sampled_from(["c1", "c2", "..", "a/b", ""]) | st.text(max_size=70),
    "args": st.dictionaries(st.sampled_from(["daemon", "from_seq", "point", "staff", "destination", "X", "sha256",
                                             "size", "chunks", "chunk_size", "url", "version"]),
                            json_values | st.sampled_from(["core", "till1", "../x", 1, 2**70, -1, SHA, 1024, 3,
                                                           "file:///etc/shadow", "http://127.0.0.1:9/x"]),
                            max_size=6)})
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


class Box:
    """A box's agent, unconnected (handlers called as paho would call them)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="fuzzbox-"))
        self.path = self.dir / "appliance.toml"
        self.path.write_text(f'[device]\nid = "box-1"\nstate_dir = "{self.dir / "state"}"\n[points.till1]\n'
                             f'[sync]\nbroker = "mqtt://127.0.0.1:{free_port()}"\n[provisioning]\nremote_config = true\n'
                             f'reboot_command = ["touch", "{self.dir / "rebooted"}"]\n')
        self.cfg = load_config(self.path)
        self.journal = Journal.in_dir(self.cfg.device.state_dir)
        self.agent = Agent(self.cfg, self.journal, "box-1", self.path, Identity(self.dir / "identity"))
        self.stage = SyncStage(self.cfg, self.journal, "box-1", extensions=[self.agent])
        self.published: list = []
        self.stage.publish = lambda suffix, payload, retain=False, qos=1: self.published.append((suffix, payload))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["config/desired", "cmd/c1", "cmd/..", "cmd/c2", "cert", "ack", "x/y", "",
                                           f"update/{SHA}/0", f"update/{SHA}/2", "update/../0", f"update/{SHA}/99999",
                                           f"update/{SHA}/-1", "update/x/y/z"]),
                          raw | desired_docs | commands), min_size=1, max_size=6))
@example([("config/desired", b'{"version":1,"toml":""}'), ("config/desired", b"")])     # a good one, then junk
def test_the_box_survives_anything_the_cloud_sends(msgs):
    box = Box()
    try:
        files_before = {p for p in box.dir.rglob("*")}
        for suffix, payload in msgs:
            box.agent.on_message(box.stage, suffix, payload)       # paho's thread: must not raise
            box.stage.step()                                        # the daemon's thread: must not raise
        cfg_now = load_config(box.path)
        layer = box.dir / "state" / REMOTE_FILE
        if layer.exists():          # only a document that validated got written (a later bad one changes nothing)
            sent = []
            for suffix, payload in msgs:
                try:
                    sent.append(json.loads(payload)["toml"]) if suffix == "config/desired" else None
                except (ValueError, TypeError, KeyError, RecursionError):
                    pass
            assert layer.read_text() in sent
            assert cfg_now.device.id == "box-1" and cfg_now.sync.broker == box.cfg.sync.broker   # pinned
        assert not (box.dir / "rebooted").exists() or any(b'"reboot"' in p for _, p in msgs)
        new = {p for p in box.dir.rglob("*")} - files_before
        assert all(p.is_relative_to(box.dir) for p in new)
        assert not (box.dir.parent / "x").exists()
        for e in box.journal.iter_all([v.COMMAND]):                 # only well-formed commands were journalled
            assert e.data["action"] in ("restart", "reboot", "resync", "set_owner", "test_notification",
                                        "diagnostics", "update")
        assert not (box.dir / "state" / "updates" / "request.json").exists()     # nothing unsigned handed over
    finally:
        box.journal.close()


@FUZZ
@given(desired_docs)
def test_a_config_document_is_applied_whole_or_not_at_all(payload):
    box = Box()
    try:
        box.agent.on_message(box.stage, "config/desired", payload)
        box.stage.step()
        layer = box.dir / "state" / REMOTE_FILE
        if box.agent.remote.state.get("status") == "rejected":
            assert not layer.exists() and box.agent.remote.state["errors"]
            r = box.agent.remote.reported()                  # what goes out on the next connection
            assert r.status == "rejected" and r.errors and box.agent.remote.dirty
        elif layer.exists():
            assert json.loads(payload)["toml"] == layer.read_text()
    finally:
        box.journal.close()


CA_DIR = {}


def fleet_ca() -> FleetCA:
    if "ca" not in CA_DIR:
        CA_DIR["ca"] = FleetCA.init(Path(tempfile.mkdtemp(prefix="fuzzca-")) / "ca", ["127.0.0.1"])
    return CA_DIR["ca"]


class Recorder:
    def __init__(self):
        self.published = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.published.append((topic, payload))


csrs = shaped(["device", "csr", "token"], {"device": st.sampled_from(["box-1", "box-2", "provision", "../x", ""]),
                                           "csr": st.text(max_size=200) | st.just("-----BEGIN CERTIFICATE REQUEST-----")})


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["ca/v1/provision/abcdefgh12/csr", "ca/v1/box-1/csr", "ca/v1/provision/x/csr",
                                           "ca/v1/claim/csr", "ca/v1/box-1/cert"]), raw | csrs), max_size=6))
def test_the_provisioning_service_issues_nothing_for_garbage(msgs):
    ca = fleet_ca()
    server = ProvisionServer(BrokerSettings("mqtt://127.0.0.1:1"), ca)
    rec = Recorder()
    before = len(ca.issued())
    for topic, payload in msgs:
        server._on_message(rec, None, SimpleNamespace(topic=topic, payload=payload))
    assert len(ca.issued()) == before and server.issued == 0
    for topic, payload in rec.published:                     # answers only to where the request came from
        assert topic in ("ca/v1/provision/abcdefgh12/cert", "ca/v1/box-1/cert")
        assert b'"cert":"' not in payload or b'"cert":""' in payload


def test_a_box_cannot_renew_as_another_or_enrol_a_service_identity(tmp_path):
    from appliance.cloud.wire import CsrRequest, encode
    ca = fleet_ca()
    ident = Identity(tmp_path / "id")
    server = ProvisionServer(BrokerSettings("mqtt://127.0.0.1:1"), ca)
    rec = Recorder()
    server._on_message(rec, None, SimpleNamespace(topic="ca/v1/box-1/csr",
                                                  payload=encode(CsrRequest(device="box-2", csr=ident.csr("box-2")))))
    server._on_message(rec, None, SimpleNamespace(topic="ca/v1/box-1/csr",
                                                  payload=encode(CsrRequest(device="box-1", csr=ident.csr("box-2")))))
    server._on_message(rec, None, SimpleNamespace(topic="ca/v1/provision/abcdefgh12/csr",
                                                  payload=encode(CsrRequest(device="ingest", csr=ident.csr("ingest"),
                                                                            token="x"))))
    answers = [json.loads(p) for _, p in rec.published]
    assert [a["error"] != "" for a in answers] == [True, True, True] and server.issued == 0
    assert "names 'box-2'" in answers[0]["error"] and "common name" in answers[1]["error"]
    server._on_message(rec, None, SimpleNamespace(topic="ca/v1/box-1/csr",
                                                  payload=encode(CsrRequest(device="box-1", csr=ident.csr("box-1")))))
    assert server.issued == 1 and json.loads(rec.published[-1][1])["cert"].startswith("-----BEGIN CERTIFICATE")


device_topics = st.sampled_from(["ca/v1/A/health", "ca/v1/A/info", "ca/v1/A/config/reported", "ca/v1/A/cmd/c1/result",
                                 "ca/v1/A/cmd/../result", "ca/v1/A/clip/../0", "ca/v1/A/clip/..%2f/manifest",
                                 "ca/v1/A/clip/c1/0", "ca/v1/A/clip/c1/manifest", "ca/v1/ingest/health",
                                 "ca/v1/A/csr", "ca/v1/A/cmd/c1"])
results = shaped(["id", "status", "result", "error", "time"], {"id": st.sampled_from(["c1", "c2", "../x"])})
reports = shaped(["version", "status", "hash", "applied_version", "errors", "time"])


@FUZZ
@given(st.lists(st.tuples(device_topics, raw | results | reports | shaped(["clip", "file", "size"])), max_size=8))
def test_the_ingest_survives_anything_a_box_sends(msgs):
    d = Path(tempfile.mkdtemp(prefix="fuzzingest-"))
    store = IngestStore(d / "ingest.db")
    ing = Ingest(BrokerSettings("mqtt://127.0.0.1:1"), store, clips_dir=d / "cloud")
    rec = Recorder()
    try:
        for topic, payload in msgs:
            ing._on_message(rec, None, SimpleNamespace(topic=topic, payload=payload))   # never raises
        outside = [p for p in d.rglob("*") if not (p.is_relative_to(d / "cloud") or p.name.startswith("ingest.db"))]
        assert outside == []
        for dev, cmd_id in store.db.execute("SELECT device, id FROM command_results"):
            assert dev == "A" and cmd_id == "c1"             # a result is filed under its sender and its topic's id
        assert {x["id"] for x in store.devices()} <= {"A"}
        for t, _ in rec.published:
            assert t == "ca/v1/A/ack"
    finally:
        store.close()
        os.system(f"rm -rf {d}")
