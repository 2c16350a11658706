"""The Raspberry Pi image. Every run: ``assemble-image.sh`` turns a root folder into a
partitioned image without loop devices — an MBR with a bootable FAT32 partition holding
exactly the boot files and an ext4 root holding the rest, owners and modes kept, and a correct
sha256 — read back with sfdisk, mtools and debugfs. The whole arm64 build under qemu
(``build-image.sh``, about 35 minutes here) runs with ``APPLIANCE_IMAGE_BUILD=1``: the package
built for arm64, the root made with it installed, ``appliancectl --version`` run in it."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("mkfs.vfat", "mcopy", "mkfs.ext4", "sfdisk", "debugfs")

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS) or os.geteuid() != 0,
                                reason="needs root and dosfstools, mtools, e2fsprogs, fdisk (tools/install.sh)")


def run(*cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=kw.pop("text", True), timeout=kw.pop("timeout", 600), **kw)
    assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r


def partition(img: Path, n: int, out: Path) -> Path:
    table = json.loads(run("sfdisk", "--json", str(img)).stdout)["partitiontable"]
    p = table["partitions"][n]
    run("dd", f"if={img}", f"of={out}", f"bs={table.get('sectorsize', 512)}", f"skip={p['start']}",
        f"count={p['size']}", "status=none")
    return out


def test_a_root_folder_becomes_a_partitioned_image(tmp_path):
    r = tmp_path / "root"
    (r / "boot/firmware/overlays").mkdir(parents=True)
    (r / "boot/firmware/config.txt").write_text("enable_uart=1\n")
    (r / "boot/firmware/overlays/x.dtbo").write_bytes(os.urandom(3000))
    (r / "etc").mkdir()
    (r / "etc/hostname").write_text("contact-analyzer\n")
    secret = r / "etc/appliance/secrets.toml"
    secret.parent.mkdir()
    secret.write_text("x = 1\n")
    secret.chmod(0o600)
    (r / "usr/bin").mkdir(parents=True)
    os.symlink("python3.11", r / "usr/bin/python3")
    img = tmp_path / "out.img"
    out = run("bash", str(ROOT / "image_build/assemble-image.sh"), str(r), str(img), env={**os.environ,
                                                                                          "BOOT_MB": "64"})
    assert "assembled" in out.stdout
    # the checksum
    digest = hashlib.sha256(img.read_bytes()).hexdigest()
    assert (tmp_path / "out.img.sha256").read_text().split() == [digest, "out.img"]
    # the partition table
    table = json.loads(run("sfdisk", "--json", str(img)).stdout)["partitiontable"]
    assert table["label"] == "dos" and [p["type"] for p in table["partitions"]] == ["c", "83"]
    assert table["partitions"][0].get("bootable") is True
    # the boot partition: exactly the boot files
    boot = partition(img, 0, tmp_path / "boot.vfat")
    listing = run("mdir", "-/", "-b", "-i", str(boot), "::/").stdout.split()
    assert sorted(x.rstrip("/") for x in listing) == ["::/config.txt", "::/overlays", "::/overlays/x.dtbo"]
    assert run("mtype", "-i", str(boot), "::/config.txt").stdout == "enable_uart=1\n"
    label = run("fatlabel", str(boot)).stdout.strip() if shutil.which("fatlabel") else "bootfs"
    assert label == "bootfs"
    # the root: the rest, owners and modes kept, /boot/firmware an empty mount point
    root = partition(img, 1, tmp_path / "root.ext4")
    assert run("debugfs", "-R", "cat /etc/hostname", str(root)).stdout == "contact-analyzer\n"
    stat = run("debugfs", "-R", "stat /etc/appliance/secrets.toml", str(root)).stdout
    assert "Mode:  0600" in stat and "User:     0" in stat
    assert "python3.11" in run("debugfs", "-R", "stat /usr/bin/python3", str(root)).stdout
    ls = run("debugfs", "-R", "ls -l /boot/firmware", str(root)).stdout
    assert "config.txt" not in ls
    assert (r / "boot/firmware/config.txt").exists()          # the folder is left as it was


def test_a_data_folder_becomes_a_third_partition_and_an_empty_mount_point(tmp_path):
    """``ROOTDIR/data`` (the journal, clips, releases and settings: what a read-only root
    keeps writable) becomes an ext4 partition labelled data, with room to grow."""
    r = tmp_path / "root"
    (r / "boot/firmware").mkdir(parents=True)
    (r / "boot/firmware/cmdline.txt").write_text("root=LABEL=rootfs\n")
    (r / "data/state").mkdir(parents=True)
    (r / "data/state").chmod(0o2770)
    (r / "data/opt/releases/1.0").mkdir(parents=True)
    os.symlink("releases/1.0", r / "data/opt/current")
    (r / "etc").mkdir()
    (r / "etc/fstab").write_text("LABEL=data /data ext4 defaults 0 2\n")
    img = tmp_path / "out.img"
    out = run("bash", str(ROOT / "image_build/assemble-image.sh"), str(r), str(img),
              env={**os.environ, "BOOT_MB": "64", "DATA_MB": "32"})
    assert ", data " in out.stdout
    table = json.loads(run("sfdisk", "--json", str(img)).stdout)["partitiontable"]
    assert [p["type"] for p in table["partitions"]] == ["c", "83", "83"]
    data = partition(img, 2, tmp_path / "data.ext4")
    assert table["partitions"][2]["size"] * 512 >= 32 << 20
    assert "Filesystem volume name:   data" in run("dumpe2fs", "-h", str(data)).stdout
    assert "Mode:  02770" in run("debugfs", "-R", "stat /state", str(data)).stdout
    assert "releases/1.0" in run("debugfs", "-R", "stat /opt/current", str(data)).stdout
    root = partition(img, 1, tmp_path / "root.ext4")
    assert sorted(run("debugfs", "-R", "ls /data", str(root)).stdout.split()[2::3]) == [".", ".."]   # empty
    assert run("debugfs", "-R", "cat /etc/fstab", str(root)).stdout.startswith("LABEL=data")
    assert (r / "data/state").is_dir()                         # the folder is left as it was


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("APPLIANCE_IMAGE_BUILD") != "1", reason="the whole arm64 image build under qemu "
                    "takes about 35 minutes here: APPLIANCE_IMAGE_BUILD=1 runs it")
def test_the_whole_arm64_image_builds_boots_and_the_four_daemons_are_ready(tmp_path):
    """The build; ``appliancectl --version`` in the arm64 root (under qemu-user); then the
    image booted in qemu-system-aarch64 — writable root, then read-only (overlayroot) — until
    the four daemons are READY, with a broker on the host as the box's cloud."""
    from tests.mqtt_broker import Mosquitto
    out = run("bash", str(ROOT / "image_build/build-image.sh"), timeout=7200)
    assert "built " in out.stdout
    rootfs = ROOT / "build/image/rootfs"
    run("mount", "--bind", str(rootfs / "data/opt"), str(rootfs / "opt/appliance"))   # as the image's fstab does
    try:
        version = run("chroot", str(rootfs), "/usr/bin/appliancectl", "--version").stdout
    finally:
        run("umount", str(rootfs / "opt/appliance"))
    assert version.startswith("appliancectl ")
    assert (rootfs / "data/opt/current").is_symlink() and not any((rootfs / "opt/appliance").iterdir())
    imgs = sorted((ROOT / "dist").glob("contact-analyzer-*-arm64.img"))
    assert imgs and Path(str(imgs[-1]) + ".sha256").exists()
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        toml = tmp_path / "appliance.toml"
        toml.write_text(f'[device]\nid = "qemu-box"\n[points.till1]\n[rf]\nsource = "none"\n'
                        f'[sync]\nbroker = "mqtt://10.0.2.2:{broker.port}"\n')
        for append in ("", "overlayroot=tmpfs:recurse=0"):
            boot = run("bash", str(ROOT / "image_build/boot-qemu.sh"), str(imgs[-1]), str(toml),
                       env={**os.environ, "QEMU_APPEND": append}, timeout=2400)
            for d in ("core", "rf", "audio", "sync"):
                assert f"appliance-{d} READY after" in boot.stdout, boot.stdout[-3000:]
            assert "appliance-sync connected to the broker" in boot.stdout
            # what the guest wrote: the first boot's host name lands on the root only when it is
            # writable; the settings and the journal always land on the data partition
            disk = ROOT / "build/qemu/disk.img"
            root = partition(disk, 1, tmp_path / "root.ext4")
            data = partition(disk, 2, tmp_path / "data.ext4")
            # (-c: the guest was stopped without unmounting; its bitmaps may be stale)
            hostname = run("debugfs", "-c", "-R", "cat /etc/hostname", str(root)).stdout.strip()
            assert (hostname == "contact-analyzer") == bool(append), hostname
            assert 'id = "qemu-box"' in run("debugfs", "-c", "-R", "cat /etc/appliance.toml", str(data)).stdout
            assert "journal.db" in run("debugfs", "-c", "-R", "ls /state", str(data)).stdout
    finally:
        broker.stop()
