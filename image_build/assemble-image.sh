#!/usr/bin/env bash
# Assemble a bootable SD-card image from a root file system folder, without loop devices:
#   bash image_build/assemble-image.sh ROOTDIR OUT.img
# ROOTDIR/boot/firmware becomes the FAT32 boot partition (label bootfs, BOOT_MB, default 512);
# ROOTDIR/data, when there is one, an ext4 data partition (label data, its content + DATA_MB,
# default 1024, of room: the journal, clips and releases live there, so the root can be
# read-only); the rest becomes the ext4 root partition (label rootfs, sized to its content
# + 30 % + 256 MB). /boot/firmware and /data stay as empty mount points in the root.
# OUT.img gets an MBR partition table, the partitions, and OUT.img.sha256.
set -euo pipefail
R=$(realpath "$1")
IMG=$(realpath -m "$2")
BOOT_MB="${BOOT_MB:-512}"
DATA_MB="${DATA_MB:-1024}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/assemble.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
BOOT="$R/boot/firmware"
[ -d "$BOOT" ] || { echo "assemble-image.sh: $BOOT is missing (the boot partition's files)" >&2; exit 2; }

mkfs.vfat -C -F 32 -n bootfs "$WORK/boot.vfat" $((BOOT_MB * 1024)) >/dev/null
if [ -n "$(ls -A "$BOOT")" ]; then mcopy -s -i "$WORK/boot.vfat" "$BOOT"/* ::/; fi
DATA="$R/data"
DATA_SIZE=0
if [ -d "$DATA" ]; then
    DATA_SIZE=$(( $(du -sm "$DATA" | cut -f1) * 13 / 10 + DATA_MB ))
    mkfs.ext4 -q -L data -E root_owner=0:0 -d "$DATA" "$WORK/data.ext4" "${DATA_SIZE}M"
fi
ROOT_MB=$(( $(du -sm --exclude=./boot/firmware --exclude=./data "$R" | cut -f1) * 13 / 10 + 256 ))
# the root's /boot/firmware and /data are only mount points in the ext4 file system
mv "$BOOT" "$WORK/bootfs.keep"
mkdir "$BOOT"
if [ -d "$DATA" ]; then mv "$DATA" "$WORK/data.keep" && mkdir "$DATA"; fi
rc=0
mkfs.ext4 -q -L rootfs -E root_owner=0:0 -d "$R" "$WORK/root.ext4" "${ROOT_MB}M" || rc=$?
rmdir "$BOOT"
mv "$WORK/bootfs.keep" "$BOOT"
if [ -d "$WORK/data.keep" ]; then rmdir "$DATA" && mv "$WORK/data.keep" "$DATA"; fi
[ "$rc" -eq 0 ] || exit "$rc"
rm -f "$IMG"
truncate -s $(( (4 + BOOT_MB + ROOT_MB + DATA_SIZE) * 1024 * 1024 )) "$IMG"
{
    echo "label: dos"
    echo "start=4MiB, size=${BOOT_MB}MiB, type=c, bootable"
    echo "start=$((4 + BOOT_MB))MiB, size=${ROOT_MB}MiB, type=83"
    if [ "$DATA_SIZE" -gt 0 ]; then echo "start=$((4 + BOOT_MB + ROOT_MB))MiB, size=${DATA_SIZE}MiB, type=83"; fi
} | sfdisk --quiet "$IMG"
dd if="$WORK/boot.vfat" of="$IMG" bs=1M seek=4 conv=notrunc,sparse status=none
dd if="$WORK/root.ext4" of="$IMG" bs=1M seek=$((4 + BOOT_MB)) conv=notrunc,sparse status=none
if [ "$DATA_SIZE" -gt 0 ]; then
    dd if="$WORK/data.ext4" of="$IMG" bs=1M seek=$((4 + BOOT_MB + ROOT_MB)) conv=notrunc,sparse status=none
fi
(cd "$(dirname "$IMG")" && sha256sum "$(basename "$IMG")" > "$(basename "$IMG").sha256")
echo "assembled $IMG: boot ${BOOT_MB} MB, root ${ROOT_MB} MB$([ "$DATA_SIZE" -gt 0 ] && echo ", data ${DATA_SIZE} MB")"
