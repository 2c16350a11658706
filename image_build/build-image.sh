#!/usr/bin/env bash
# Build a Raspberry Pi image (Debian 12 "bookworm", arm64) with the appliance installed:
#   dist/contact-analyzer-<version>-arm64.img and its .sha256
#
#   bash image_build/build-image.sh              # about 35 minutes under qemu on two cores
#
# Runs here, without a Pi and without loop devices: the arm64 package is built in an arm64
# chroot under qemu-user-static (image_build/build-deb.sh, natively for arm64 there), the root
# file system is made by mmdebstrap with the package installed (its postinst makes the Python
# environment under qemu), then the image is assembled from files: a FAT boot partition
# (mkfs.vfat + mcopy) and an ext4 root (mkfs.ext4 -d), written into a partitioned file.
# The boot partition holds Debian's Raspberry Pi firmware and kernel (raspi-firmware,
# linux-image-arm64), config.txt with the appliance's overlays and cmdline.txt.
#
# What the image sets up: SSH with keys only (put authorized_keys on the boot partition, or a
# key in the image with AUTHORIZED_KEYS=file), NetworkManager (Wi-Fi from a keyfile on the boot
# partition, see the first boot), systemd-timesyncd, the hardware watchdog (RuntimeWatchdogSec),
# logs kept in RAM (journald Storage=volatile) to spare the SD card, noatime, unattended
# security upgrades, the first boot (appliance-firstboot.service), the fleet's release keys
# (RELEASE_KEYS=folder of *.pub), and a data partition for everything the box writes, so that
# the root can be made read-only (overlayroot) from cmdline.txt.
#
# Needs (tools/install.sh installs them): mmdebstrap qemu-user-static binfmt-support arch-test
# dosfstools mtools e2fsprogs fdisk; binfmt_misc with qemu-aarch64 enabled (done below if not).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ARCH=arm64
SUITE=bookworm
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
WORK="$ROOT/build/image"
VERSION=$(python3 -c 'import re; print(re.search(r"__version__ = \"([^\"]+)\"", open("appliance/__init__.py").read()).group(1))')
IMG="$ROOT/dist/contact-analyzer-$VERSION-$ARCH.img"
BOOT_MB="${BOOT_MB:-512}"
T0=$(date +%s)
mkdir -p "$WORK" "$ROOT/dist"
step() { echo "==> [$(( $(date +%s) - T0 )) s] $*"; }

step "arm64 emulation"
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
arch-test "$ARCH" >/dev/null || { echo "build-image.sh: cannot run $ARCH programs here (qemu-user-static, binfmt)" >&2; exit 1; }

clean_env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
           PIP_CERT=/etc/ssl/certs/build-host-ca.crt)

in_chroot() {       # in_chroot DIR COMMAND...: with /proc, /dev and DNS, without the host's PIP_* settings
    local dir=$1; shift
    [ -s "$dir/etc/resolv.conf" ] || cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
    # the build machine's CA bundle for pip (a TLS-inspecting proxy's CA lives there); not in the image
    mkdir -p "$dir/etc/ssl/certs" && cp -L /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/build-host-ca.crt"
    mount -t proc proc "$dir/proc"
    mount --bind /dev "$dir/dev"
    local rc=0
    "${clean_env[@]}" chroot "$dir" "$@" || rc=$?
    umount -l "$dir/dev" "$dir/proc"
    return $rc
}

step "the arm64 package, built in an arm64 chroot"
BUILDER="$WORK/builder"
if [ ! -e "$WORK/builder.tar" ]; then
    mmdebstrap --quiet --arch="$ARCH" --variant=apt \
        --include=python3,python3-venv,python3-dev,gcc,pkg-config,libasound2-dev,libsystemd-dev,dpkg-dev,ca-certificates \
        "$SUITE" "$WORK/builder.tar" "$MIRROR"
fi
rm -rf "$BUILDER" && mkdir -p "$BUILDER" && tar -C "$BUILDER" -xf "$WORK/builder.tar"
mkdir -p "$BUILDER/src"
git ls-files -z | tar --null -T - -cf - | tar -C "$BUILDER/src" -xf -
# the wheels built before (same lock: same files, pip checks the hashes again)
[ -d "$WORK/wheelhouse-$ARCH" ] && mkdir -p "$BUILDER/src/build/deb" && cp -a "$WORK/wheelhouse-$ARCH" "$BUILDER/src/build/deb/wheelhouse"
in_chroot "$BUILDER" /bin/sh -ec "cd /src && NO_LINTIAN=1 bash image_build/build-deb.sh"
rm -rf "$WORK/wheelhouse-$ARCH" && cp -a "$BUILDER/src/build/deb/wheelhouse" "$WORK/wheelhouse-$ARCH"
DEB=$(ls "$BUILDER"/src/dist/contact-analyzer_*_"$ARCH".deb)
cp "$DEB" "$ROOT/dist/"
DEB="$ROOT/dist/$(basename "$DEB")"
rm -rf "$BUILDER"

step "the root file system (mmdebstrap, $ARCH, with the package)"
TARGET="$WORK/rootfs"
rm -rf "$TARGET" && mkdir -p "$TARGET"
mmdebstrap --quiet --arch="$ARCH" --variant=minbase \
    --include=systemd-sysv,udev,kmod,iproute2,iputils-ping,netbase,network-manager,wpasupplicant,openssh-server,systemd-timesyncd,sudo,ca-certificates,python3,python3-venv,adduser,libasound2,libsystemd0,alsa-utils,rtl-433,unattended-upgrades,apt-listchanges,raspi-firmware,linux-image-arm64,firmware-brcm80211,dosfstools,e2fsprogs,fdisk,overlayroot,busybox,less,nano \
    --components=main,contrib,non-free,non-free-firmware \
    --customize-hook="copy-in $DEB /tmp" \
    --customize-hook='chroot "$1" dpkg -i /tmp/'"$(basename "$DEB")" \
    --customize-hook='rm -f "$1"/tmp/*.deb' \
    "$SUITE" "$TARGET" "$MIRROR"

step "the box's settings"
R="$TARGET"
rm -f "$R/etc/resolv.conf"          # the build host's; NetworkManager writes the box's own
echo "contact-analyzer" > "$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tcontact-analyzer\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"
# What the box writes lives on a data partition (label data): the state (journal, clips),
# the releases (application updates) and the settings. So the root can be made read-only
# (overlayroot, see cmdline.txt) and an update or a settings change still lasts.
if [ -n "${RELEASE_KEYS:-}" ]; then       # the fleet's release keys: the updates this box takes
    install -d -m 0755 "$R/etc/appliance/release-keys"
    install -m 0644 "$RELEASE_KEYS"/*.pub "$R/etc/appliance/release-keys/"
fi
mkdir -p "$R/data"
for pair in state:var/lib/appliance opt:opt/appliance etc:etc/appliance; do
    name=${pair%%:*}; path=${pair#*:}
    mv "$R/$path" "$R/data/$name"
    mkdir "$R/$path"
    chown --reference="$R/data/$name" "$R/$path" && chmod --reference="$R/data/$name" "$R/$path"
done
cat > "$R/etc/fstab" <<'EOF'
LABEL=rootfs  /                  ext4  defaults,noatime,commit=60  0 1
LABEL=bootfs  /boot/firmware     vfat  defaults,noatime,umask=0077 0 2
LABEL=data    /data              ext4  defaults,noatime,commit=60  0 2
/data/state   /var/lib/appliance none  bind 0 0
/data/opt     /opt/appliance     none  bind 0 0
/data/etc     /etc/appliance     none  bind 0 0
tmpfs         /tmp               tmpfs defaults,nosuid,nodev,size=64M 0 0
EOF
mkdir -p "$R/etc/ssh/sshd_config.d" "$R/etc/systemd/journald.conf.d" "$R/etc/systemd/system.conf.d" "$R/root/.ssh"
cat > "$R/etc/ssh/sshd_config.d/appliance.conf" <<'EOF'
# keys only: a technician's key comes from the image (AUTHORIZED_KEYS) or the boot partition
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
EOF
chmod 700 "$R/root/.ssh"
if [ -n "${AUTHORIZED_KEYS:-}" ]; then install -m 0600 "$AUTHORIZED_KEYS" "$R/root/.ssh/authorized_keys"; fi
cat > "$R/etc/systemd/journald.conf.d/appliance.conf" <<'EOF'
# logs in RAM (they reach the fleet through the diagnostics command): the SD card is spared
[Journal]
Storage=volatile
RuntimeMaxUse=32M
EOF
cat > "$R/etc/systemd/system.conf.d/appliance.conf" <<'EOF'
# the SoC's hardware watchdog: a hung kernel or systemd reboots the box
[Manager]
RuntimeWatchdogSec=15
RebootWatchdogSec=2min
EOF
cat > "$R/etc/apt/apt.conf.d/52appliance-unattended" <<'EOF'
// security updates of the OS, daily, without a reboot in shop hours (see docs/design.md)
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
Unattended-Upgrade::Origins-Pattern { "origin=Debian,codename=${distro_codename}-security,label=Debian-Security"; };
Unattended-Upgrade::Automatic-Reboot "false";
EOF
# first boot: authorized_keys from the boot partition too
mkdir -p "$R/etc/systemd/system/appliance-firstboot.service.d"
cat > "$R/etc/systemd/system/appliance-firstboot.service.d/ssh-keys.conf" <<'EOF'
[Unit]
ConditionPathExists=|/boot/firmware/authorized_keys
[Service]
ExecStartPre=/bin/sh -c 'if [ -f /boot/firmware/authorized_keys ]; then install -m 0600 /boot/firmware/authorized_keys /root/.ssh/authorized_keys && rm -f /boot/firmware/authorized_keys; fi'
EOF
in_chroot "$R" /bin/sh -ec "systemctl enable systemd-timesyncd.service NetworkManager.service ssh.service appliance-firstboot.service >/dev/null 2>&1 || true"

step "the boot partition: firmware, kernel, config.txt, cmdline.txt"
BOOT="$R/boot/firmware"
mkdir -p "$BOOT"
cat > "$BOOT/config.txt" <<'EOF'
# Contact Analyzer on a Raspberry Pi (Zero 2 W, 3, 4 with Debian's kernel; a Pi 5 needs Raspberry Pi OS's), 64-bit.
# (The firmware reads a comment only on a line of its own.)
arm_64bit=1
# Debian's kernel and initramfs (raspi-firmware copies them here)
kernel=vmlinuz
initramfs initrd.img followkernel
# the mmWave presence radar's UART (/dev/serial0)
enable_uart=1
# an I2S microphone as an ALSA card (a USB microphone needs nothing here)
dtparam=i2s=on
dtoverlay=googlevoicehat-soundcard
dtparam=audio=off
# the SoC watchdog systemd pets (RuntimeWatchdogSec)
dtparam=watchdog=on
# the 433 MHz receiver's data pin is a plain GPIO input: no overlay
gpu_mem=16
disable_splash=1
EOF
# a read-only root: append " overlayroot=tmpfs:recurse=0" to this line (the root's changes then
# live in RAM and vanish at the next boot; /data, with the state, releases and settings, stays)
echo "console=serial0,115200 console=tty1 root=LABEL=rootfs rootfstype=ext4 fsck.repair=yes rootwait quiet" \
    > "$BOOT/cmdline.txt"
for k in "$R"/boot/vmlinuz-*; do [ -e "$k" ] && cp "$k" "$BOOT/vmlinuz" && break; done
for i in "$R"/boot/initrd.img-*; do [ -e "$i" ] && cp "$i" "$BOOT/initrd.img" && break; done

step "assembling the image"
BOOT_MB="$BOOT_MB" bash image_build/assemble-image.sh "$R" "$IMG"
step "built $IMG ($(du -h --apparent-size "$IMG" | cut -f1), $(du -h "$IMG" | cut -f1) on disk); package $(du -h "$DEB" | cut -f1)"
echo "check it: mount --bind $TARGET/data/opt $TARGET/opt/appliance; chroot $TARGET /usr/bin/appliancectl --version (under qemu)"
