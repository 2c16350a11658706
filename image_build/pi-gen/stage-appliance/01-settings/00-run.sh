#!/bin/bash -e
# The box's settings on Raspberry Pi OS: as image_build/build-image.sh sets them on Debian.
BOOT="${ROOTFS_DIR}/boot/firmware"
cat >> "${BOOT}/config.txt" <<'CFG'

# Contact Analyzer
# the mmWave presence radar's UART (/dev/serial0)
enable_uart=1
# an I2S microphone as an ALSA card (a USB microphone needs nothing here)
dtparam=i2s=on
dtoverlay=googlevoicehat-soundcard
dtparam=audio=off
# the SoC watchdog systemd pets (RuntimeWatchdogSec)
dtparam=watchdog=on
gpu_mem=16
CFG
install -d "${ROOTFS_DIR}/etc/systemd/journald.conf.d" "${ROOTFS_DIR}/etc/systemd/system.conf.d"
cat > "${ROOTFS_DIR}/etc/systemd/journald.conf.d/appliance.conf" <<'CFG'
# logs in RAM (they reach the fleet through the diagnostics command): the SD card is spared
[Journal]
Storage=volatile
RuntimeMaxUse=32M
CFG
cat > "${ROOTFS_DIR}/etc/systemd/system.conf.d/appliance.conf" <<'CFG'
# the SoC's hardware watchdog: a hung kernel or systemd reboots the box
[Manager]
RuntimeWatchdogSec=15
RebootWatchdogSec=2min
CFG
cat > "${ROOTFS_DIR}/etc/apt/apt.conf.d/52appliance-unattended" <<'CFG'
// security updates of the OS, daily, without a reboot in shop hours
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
Unattended-Upgrade::Origins-Pattern { "origin=Debian,codename=${distro_codename}-security,label=Debian-Security"; "origin=Raspberry Pi Foundation,codename=${distro_codename}"; };
Unattended-Upgrade::Automatic-Reboot "false";
CFG
sed -i 's/\bdefaults\b/defaults,noatime/' "${ROOTFS_DIR}/etc/fstab"
on_chroot << CHROOT
systemctl enable appliance.target appliance-update.path appliance-firstboot.service
CHROOT
