"""Config: one typed schema, every error at once with its key path, defaults documented."""
from __future__ import annotations

import os

import re

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.config import config_from_dict, load_config, parse_config
from appliance.config.schema import Config
from appliance.errors import ConfigError
from tests.conftest import ROOT, run_cli


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    return exc.value.errors


def test_points_only_is_a_valid_config():
    cfg = parse_config("[points.till1]\n")
    p = cfg.points["till1"]
    assert (p.min_presence_s, p.leave_after_s, p.min_contact_s, p.max_contact_s, p.dwell_s) == (2, 5, 3, 1800, 300)
    assert (p.rating_grace_s, p.sale_grace_s, p.misuse_presses, p.misuse_window_s) == (20, 30, 5, 10)
    assert p.rating_scale == {1: "negative", 2: "top"} and p.pos is False
    assert cfg.device.state_dir == "/var/lib/appliance"


def test_wrong_type_names_key_path_and_value():
    assert errors_of('[points.till1]\nmin_contact_s = "abc"') == [
        'points.till1.min_contact_s: expected a number ≥ 0, got "abc"']


def test_every_error_at_once_with_suggestions():
    errs = errors_of("""
[points.till1]
min_contct_s = 3
max_contact_s = 0
misuse_presses = 2.5
pos = "yes"
rating_scale = { 1 = "bad", x = "top" }
[audio]
rate = 44100
[devcie]
id = "x"
""")
    assert "points.till1.min_contct_s: unknown key (did you mean 'min_contact_s'?)" in errs
    assert "points.till1.max_contact_s: expected a number > 0, got 0" in errs
    assert "points.till1.misuse_presses: expected an integer ≥ 1, got 2.5" in errs
    assert 'points.till1.pos: expected true or false, got "yes"' in errs
    assert 'points.till1.rating_scale.1: expected one of "negative", "neutral", "top", got "bad"' in errs
    assert any(e.startswith("points.till1.rating_scale.x: the key must be an integer") for e in errs)
    assert "audio.rate: expected one of 8000, 16000, got 44100" in errs
    assert "devcie: unknown key (did you mean 'device'?)" in errs
    assert len(errs) == 8


def test_cross_references_are_checked():
    errs = errors_of("""
[points.till1]
presence = "sensor"
[remotes.abc]
point = "till9"
[remotes.def]
point = "till1"
buttons = { 1 = { meaning = "rating", value = 7 }, 2 = { meaning = "beep" } }
""")
    assert any("remotes.def.buttons.2.meaning: expected one of" in e for e in errs)
    errs = errors_of("""
[points.till1]
presence = "sensor"
[remotes.abc]
point = "till9"
[remotes.def]
point = "till1"
buttons = { 1 = { meaning = "rating", value = 7 } }
[pos]
listen = "127.0.0.1:8088"
""")
    assert any(e.startswith('remotes.abc.point: no point "till9"') for e in errs)
    assert any(e.startswith("remotes.def.buttons.1.value: 7 is not on the rating scale") for e in errs)
    assert any(e.startswith("pos.token: the POS API needs a token") for e in errs)


def test_malformed_toml_reports_line():
    errs = errors_of("[points.till1]\nmin_contact_s = = 3\n")
    assert errs[0].startswith("not valid TOML") and "line 2" in errs[0]


def test_secrets_file_is_merged(tmp_path):
    (tmp_path / "secrets.toml").write_text('[pos]\ntoken = "0123456789abcdef0123"\n')
    os.chmod(tmp_path / "secrets.toml", 0o640)
    path = tmp_path / "a.toml"
    path.write_text('[device]\nsecrets_file = "secrets.toml"\n[points.p]\n[pos]\nlisten = "127.0.0.1:9"\n')
    assert load_config(path).pos.token == "0123456789abcdef0123"


def test_systemd_credentials_are_merged(tmp_path, monkeypatch):
    (tmp_path / "appliance-secrets.toml").write_text('[sync]\npassword = "s3cret"\n')
    os.chmod(tmp_path / "appliance-secrets.toml", 0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert parse_config("[points.p]\n").sync.password == "s3cret"


def test_example_config_loads_and_documents_every_key():
    text = (ROOT / "config.example.toml").read_text()
    load_config(ROOT / "config.example.toml")
    info = msgspec.inspect.type_info(Config)
    missing = []

    def walk(t, path):
        if isinstance(t, msgspec.inspect.StructType):
            for f in t.fields:
                if not re.search(rf"^\s*{f.encode_name}\s*=|\b{f.encode_name} =", text, re.M) and \
                        f"[{f.encode_name}" not in text and f".{f.encode_name}" not in text:
                    missing.append(f"{path}{f.encode_name}")
                walk(f.type, f"{path}{f.encode_name}.")
        elif isinstance(t, msgspec.inspect.DictType):
            walk(t.value_type, path + "<id>.")
        elif isinstance(t, msgspec.inspect.ListType):
            walk(t.item_type, path)
        elif isinstance(t, msgspec.inspect.UnionType):
            for x in t.types:
                if isinstance(x, msgspec.inspect.StructType) and x.tag == "email" or (
                        isinstance(x, msgspec.inspect.StructType) and not x.tag_field):
                    walk(x, path)
    walk(info, "")
    assert not missing, f"config.example.toml does not document: {missing}"


def test_config_check_cli(tmp_path):
    ok = run_cli("config", "check", str(ROOT / "config.example.toml"))
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[points.till1]\nmin_contact_s = "abc"\nbogus = 1\n')
    r = run_cli("config", "check", str(bad))
    assert r.returncode == 2
    assert 'points.till1.min_contact_s: expected a number ≥ 0, got "abc"' in r.stderr
    assert "points.till1.bogus: unknown key" in r.stderr
    missing = run_cli("config", "check", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_bad_config_refuses_to_start(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[device]\nstate_dir = "{tmp_path / "s"}"\n[points.till1]\nmax_contact_s = -1\n')
    r = run_cli("--config", str(bad), "run", "core", timeout=30)
    assert r.returncode == 2 and "points.till1.max_contact_s" in r.stderr
    assert not (tmp_path / "s").exists()   # nothing written


toml_values = st.recursive(
    st.one_of(st.integers(-10, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
              st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=12)
keys = st.sampled_from(["device", "points", "remotes", "sensors", "audio", "sync", "pos", "time",
                        "notifications", "rf", "retention", "x"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, st.one_of(toml_values, st.dictionaries(st.text(max_size=8), toml_values, max_size=3)),
                       max_size=4))
def test_fuzz_any_document_gives_config_or_config_error(doc):
    try:
        cfg = config_from_dict(doc)
    except ConfigError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)
    else:
        assert isinstance(cfg, Config)


# --- the technician's edges (ARCHITECTURE §11): key-path errors, never a traceback ------------

def file_errors(text: str | bytes, tmp_path, name: str = "a.toml") -> list[str]:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.errors


def test_a_secrets_file_readable_by_everyone_is_refused_with_the_fix(tmp_path):
    (tmp_path / "secrets.toml").write_text('[pos]\ntoken = "0123456789abcdef0123"\n')
    os.chmod(tmp_path / "secrets.toml", 0o644)
    [err] = file_errors('[device]\nsecrets_file = "secrets.toml"\n[points.p]\n', tmp_path)
    assert "readable by every user" in err and f"chmod o-rwx {tmp_path / 'secrets.toml'}" in err


def test_odd_files_are_key_path_errors(tmp_path):
    assert "not UTF-8 text (byte 11 is 0xff)" in file_errors(b"[points.p]\n\xff\xfe = 1\n", tmp_path)[0]
    (tmp_path / "dir").mkdir()
    assert "is not a regular file" in file_errors('[device]\nsecrets_file = "dir"\n', tmp_path)[0]
    err = file_errors(f'[device]\nsecrets_file = "{"x" * 5000}"\n', tmp_path)[0]
    assert err.startswith("device.secrets_file: ") and len(err) < 400
    (tmp_path / "bin.toml").write_bytes(b"\xff")
    os.chmod(tmp_path / "bin.toml", 0o600)
    assert "not UTF-8" in file_errors('[device]\nsecrets_file = "bin.toml"\n', tmp_path)[0]


def test_a_list_as_notification_kind_is_a_key_path_error(tmp_path):
    [err] = file_errors("[notifications.x]\nkind = []\n", tmp_path)
    assert err.startswith("notifications.x.kind: expected one of") and "got an array" in err


def test_a_wrongly_typed_secret_is_not_echoed(tmp_path):
    errs = file_errors('[points.p]\n[pos]\ntoken = 1234567890123456789\n[sync]\npassword = ["hunter2-secret"]\n',
                     tmp_path)
    assert any(e.startswith("pos.token: expected a string, got a value that is not shown") for e in errs), errs
    assert not any("1234567890123456789" in e or "hunter2" in e for e in errs)


SECTIONS = ["device", "time", "points", "remotes", "sensors", "rf", "audio", "retention", "sync", "pos",
            "notifications"]
KEYS = ["id", "state_dir", "secrets_file", "kind", "point", "buttons", "rating_scale", "token", "listen",
        "broker", "min_contact_s", "shifts", "timezone", "source", "pin", "on", "value", "meaning", "x"]
leaves = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
          | st.text(max_size=10) | st.binary(max_size=4))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4), max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(SECTIONS), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6),
                                                                   values, max_size=4), max_size=5))
def test_any_config_document_is_a_config_or_key_path_errors(doc):
    try:
        config_from_dict(doc)
    except ConfigError as exc:
        assert exc.errors and all(isinstance(e, str) and ": " in e for e in exc.errors)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_config_or_errors(text):
    try:
        parse_config(text)
    except ConfigError as exc:
        assert exc.errors


def test_the_sync_pacing_keys_are_bounded():
    """A slip of the finger must not silence a box for years after its next reconnect."""
    errs = errors_of("""
[sync]
reconnect_jitter_s = 1e308
ack_timeout_max_s = -1
""")
    assert any(e.startswith("sync.reconnect_jitter_s: ") and "3600" in e for e in errs), errs
    assert any(e.startswith("sync.ack_timeout_max_s: ") for e in errs), errs
    cfg = parse_config("[points.till1]\n[sync]\nreconnect_jitter_s = 0\nack_timeout_max_s = 86400\n")
    assert cfg.sync.reconnect_jitter_s == 0 and cfg.sync.ack_timeout_max_s == 86_400
