#!/usr/bin/env bash
# Assemble a bootable SD-card image from a root file system folder, without loop devices:
#   bash image_build/assemble-image.sh ROOTDIR OUT.img
# ROOTDIR/boot/firmware becomes the FAT32 boot partition (label bootfs, BOOT_MB, default 512);
# the rest becomes the ext4 root partition (label rootfs, sized to its content + 30 % + 256 MB);
# OUT.img gets an MBR partition table, both partitions, and OUT.img.sha256.
set -euo pipefail
R=$(realpath "$1")
IMG=$(realpath -m "$2")
BOOT_MB="${BOOT_MB:-512}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/assemble.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
BOOT="$R/boot/firmware"
[ -d "$BOOT" ] || { echo "assemble-image.sh: $BOOT is missing (the boot partition's files)" >&2; exit 2; }

mkfs.vfat -C -F 32 -n bootfs "$WORK/boot.vfat" $((BOOT_MB * 1024)) >/dev/null
if [ -n "$(ls -A "$BOOT")" ]; then mcopy -s -i "$WORK/boot.vfat" "$BOOT"/* ::/; fi
ROOT_MB=$(( $(du -sm --exclude=./boot/firmware "$R" | cut -f1) * 13 / 10 + 256 ))
# the root's /boot/firmware is only a mount point in the ext4 file system
mkdir "$WORK/empty"
mv "$BOOT" "$WORK/bootfs.keep"
mkdir "$BOOT"
rc=0
mkfs.ext4 -q -L rootfs -E root_owner=0:0 -d "$R" "$WORK/root.ext4" "${ROOT_MB}M" || rc=$?
rmdir "$BOOT"
mv "$WORK/bootfs.keep" "$BOOT"
[ "$rc" -eq 0 ] || exit "$rc"
rm -f "$IMG"
truncate -s $(( (4 + BOOT_MB + ROOT_MB) * 1024 * 1024 )) "$IMG"
sfdisk --quiet "$IMG" <<EOF
label: dos
start=4MiB, size=${BOOT_MB}MiB, type=c, bootable
start=$((4 + BOOT_MB))MiB, size=${ROOT_MB}MiB, type=83
EOF
dd if="$WORK/boot.vfat" of="$IMG" bs=1M seek=4 conv=notrunc,sparse status=none
dd if="$WORK/root.ext4" of="$IMG" bs=1M seek=$((4 + BOOT_MB)) conv=notrunc,sparse status=none
(cd "$(dirname "$IMG")" && sha256sum "$(basename "$IMG")" > "$(basename "$IMG").sha256")
echo "assembled $IMG: boot ${BOOT_MB} MB, root ${ROOT_MB} MB"
