"""An application update's cost on the box, with the real bundle: the Debian package's wheels
(build it first: ``bash image_build/build-deb.sh``), signed.

1. Delivery over MQTT: ``fleetctl``'s operator session sends the bundle in 256 KiB chunks through
   a Mosquitto on loopback to the box's ``Delivery`` (each chunk written whole and fsynced, then
   the bundle assembled, hashed and its signature checked) — beside a bare paho subscriber that
   receives the same chunks and only counts them (the floor), in the same run.
2. Installation: ``Updater.apply`` (signature, every wheel's hash, a new Python environment from
   the wheels, the switch) — beside ``python -m venv`` + ``pip install --no-index`` of the same
   wheels, bare (the floor).

    .venv/bin/python bench/update.py [--deb dist/contact-analyzer_<version>_amd64.deb]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine  # noqa: E402


def bare_transfer(broker, bundle, chunk: int) -> float:
    import paho.mqtt.client as mqtt
    n = -(-bundle.size // chunk)
    got = threading.Event()
    count = [0]
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bare-sub")

    def on_message(c, u, msg):
        count[0] += 1
        if count[0] == n:
            got.set()
    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("bare/#", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bare-pub")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    pending = []
    with open(bundle.path, "rb") as f:
        for i in range(n):
            pending.append(pub.publish(f"bare/{i}", f.read(chunk), qos=1))
            while len(pending) > 8:
                pending.pop(0).wait_for_publish(60)
    got.wait(300)
    dt = time.perf_counter() - t0
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    return dt


def our_transfer(broker, bundle, cfg, chunk: int) -> float:
    from appliance.cloud.mqtt import BrokerSettings
    from appliance.journal import Journal
    from fleet.operator import Operator
    from provisioning.agent import Agent
    from appliance.cloud.sync import SyncStage
    journal = Journal.in_dir(cfg.device.state_dir)
    agent = Agent(cfg, journal, "bench-box", None)
    stage = SyncStage(cfg, journal, "bench-box", extensions=[agent])
    stage.start()
    stage.connected.wait(10)
    time.sleep(0.5)
    done = threading.Event()
    t0 = time.perf_counter()

    def drive():
        while not done.is_set():
            stage.step()
            job = agent.commands.updates.job
            if job is not None and job.get("phase") == "requested":
                done.set()
            time.sleep(0.005)
    t = threading.Thread(target=drive)
    t.start()
    with Operator(BrokerSettings(broker.url), "ca/v1") as op:
        op.send_update("bench-box", bundle, expires_in_s=600)
    done.wait(600)
    dt = time.perf_counter() - t0
    t.join()
    stage.stop()
    journal.close()
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deb", help="the package to make the bundle of (default: the newest amd64 one in dist/)")
    args = ap.parse_args()
    deb = Path(args.deb) if args.deb else max((ROOT / "dist").glob("contact-analyzer_*_amd64.deb"),
                                              key=lambda p: p.stat().st_mtime, default=None)
    if deb is None:
        print("no package: run bash image_build/build-deb.sh first (or give --deb)", file=sys.stderr)
        return 2
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from appliance.config import load_config
    from fleet.operator import UpdateBundle
    from fleet.release import wheels_from_deb
    from provisioning.update import Releases, Updater, make_bundle
    from tests.mqtt_broker import Mosquitto
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-update-") as tmp:
        tmp = Path(tmp)
        key = Ed25519PrivateKey.generate()
        keys = tmp / "keys"
        keys.mkdir()
        (keys / "k.pub").write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        (tmp / "w").mkdir()
        wheels, version = wheels_from_deb(deb, tmp / "w")
        t0 = time.perf_counter()
        path = make_bundle(wheels, version, key, tmp / "release.bundle")
        sign_s = time.perf_counter() - t0
        chunk = 256 * 1024
        bundle = UpdateBundle(path, chunk_size=chunk)
        print(f"bundle: {deb.name}: {len(wheels)} wheels, {bundle.size / 1e6:.1f} MB, {bundle.chunks} chunks of "
              f"256 KiB; signed in {sign_s:.2f} s")
        broker = Mosquitto(tmp / "broker").start()
        try:
            cfg_path = tmp / "appliance.toml"
            cfg_path.write_text(f'[device]\nid = "bench-box"\nstate_dir = "{tmp / "state"}"\n[sync]\n'
                                f'broker = "{broker.url}"\n[update]\nkeys_dir = "{keys}"\n'
                                f'releases_dir = "{tmp / "opt"}"\n')
            cfg = load_config(cfg_path)
            bare = bare_transfer(broker, bundle, chunk)
            ours = our_transfer(broker, bundle, cfg, chunk)
        finally:
            broker.stop()
        mb = bundle.size / 1e6
        print("\n| delivery over MQTT (loopback) | seconds | MB/s | ratio |\n|---|---|---|---|")
        print(f"| bare paho: publish → subscribe, counted | {bare:.2f} | {mb / bare:.1f} | 1.00× |")
        print(f"| ours: chunks written whole + fsync, assembled, SHA-256, signature | {ours:.2f} | {mb / ours:.1f} | "
              f"{ours / bare:.2f}× |")

        wdir = tmp / "w"
        t0 = time.perf_counter()
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(tmp / "bare-venv")], check=True)
        subprocess.run([str(tmp / "bare-venv/bin/python"), "-m", "pip", "install", "--quiet", "--no-index",
                        "--no-deps", "--disable-pip-version-check", "--no-cache-dir",
                        *map(str, sorted(wdir.glob("*.whl")))], check=True)
        bare_install = time.perf_counter() - t0
        releases = Releases(tmp / "opt")
        up = Updater(releases, tmp / "update.json", [key.public_key()], restart=lambda: None, healthy=lambda: True,
                     sleep=lambda s: None)
        t0 = time.perf_counter()
        out = up.apply(path, "bench")
        ours_install = time.perf_counter() - t0
        assert out.status == "committed", out
        r = subprocess.run([str(releases.base / "current/bin/appliancectl"), "--version"], capture_output=True,
                           text=True)
        size = sum(f.stat().st_size for f in releases.path(version).rglob("*") if f.is_file()) / 1e6
        print("\n| installation | seconds | ratio |\n|---|---|---|")
        print(f"| bare: python -m venv + pip install --no-index of the wheels | {bare_install:.1f} | 1.00× |")
        print(f"| ours: Updater.apply (signature, hashes, environment, switch) | {ours_install:.1f} | "
              f"{ours_install / bare_install:.2f}× |")
        print(f"\nthe release: {size:.0f} MB on disk; it runs: {r.stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
