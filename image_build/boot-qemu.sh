#!/usr/bin/env bash
# Boot a built image in qemu-system-aarch64 (the "virt" machine, Debian's arm64 kernel from the
# image's boot partition) and watch the serial console until the four daemons are READY:
#
#   bash image_build/boot-qemu.sh dist/contact-analyzer-<version>-arm64.img [APPLIANCE_TOML]
#
# No Raspberry Pi hardware is emulated: no GPIO chip, no I2S microphone, no watchdog device.
# The image is not changed: a copy-on-write overlay takes the guest's writes. An appliance.toml
# given is put on the (overlay's copy of the) boot partition, where the first boot takes it —
# the same path a technician uses. The guest reaches the host as 10.0.2.2 (QEMU user
# networking), so a broker on the host's loopback is the box's cloud.
#
# QEMU_APPEND adds kernel arguments (e.g. "overlayroot=tmpfs:recurse=0", the read-only root).
# The journal is forwarded to the console (the daemons' own log lines are in it).
# Prints each daemon as systemd reports it started (for Type=notify units: READY=1 received)
# and when the sync daemon has connected to its broker; exits 0 when all four are READY and
# the sync daemon connected (NEED_BROKER=0: READY is enough), 1 when the time
# (BOOT_TIMEOUT_S, default 1200) runs out.
# The console log is kept in build/qemu/console.log. Needs qemu-system-arm, qemu-utils, mtools.
set -euo pipefail
IMG=$(realpath "$1")
TOML="${2:-}"
cd "$(dirname "$0")/.."
WORK="$PWD/build/qemu"
TIMEOUT="${BOOT_TIMEOUT_S:-1200}"
rm -rf "$WORK"
mkdir -p "$WORK"

# the boot partition's offset, then the kernel and initramfs out of it
START=$(sfdisk -J "$IMG" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][0]["start"])')
OFF=$((START * 512))
mcopy -n -i "$IMG@@$OFF" ::vmlinuz "$WORK/vmlinuz"
mcopy -n -i "$IMG@@$OFF" ::initrd.img "$WORK/initrd.img"

# writes go to a copy (sparse) so the boot partition can take the settings file
cp --sparse=always "$IMG" "$WORK/disk.img"
if [ -n "$TOML" ]; then
    mcopy -o -i "$WORK/disk.img@@$OFF" "$TOML" ::appliance.toml
fi

echo "==> booting $(basename "$IMG") in qemu-system-aarch64 (virt, cortex-a53, 2 CPUs, 1 GB, TCG: no KVM for arm64 here)"
T0=$(date +%s)
qemu-system-aarch64 -M virt -cpu cortex-a53 -smp 2 -m 1024 -nographic -no-reboot \
    -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
    -append "root=LABEL=rootfs rootfstype=ext4 rootwait console=ttyAMA0 systemd.show_status=1 systemd.journald.forward_to_console=1 panic=-1 ${QEMU_APPEND:-}" \
    -drive "if=none,file=$WORK/disk.img,format=raw,id=hd0" -device virtio-blk-device,drive=hd0 \
    -netdev user,id=net0 -device virtio-net-device,netdev=net0 \
    > "$WORK/console.log" 2>&1 &
QEMU=$!
trap 'kill $QEMU 2>/dev/null || true' EXIT

declare -A seen=()
rc=1
while kill -0 $QEMU 2>/dev/null; do
    for d in core rf audio sync; do
        if [ -z "${seen[$d]:-}" ] && grep -a -q "Started appliance-$d.service" "$WORK/console.log"; then
            seen[$d]=$(( $(date +%s) - T0 ))
            echo "    appliance-$d READY after ${seen[$d]} s"
        fi
    done
    if [ ${#seen[@]} -eq 4 ] && [ -z "${connected:-}" ] && grep -a -q "sync: connected to" "$WORK/console.log"; then
        connected=$(( $(date +%s) - T0 ))
        echo "    appliance-sync connected to the broker after $connected s"
    fi
    if [ ${#seen[@]} -eq 4 ] && { [ -n "${connected:-}" ] || [ "${NEED_BROKER:-1}" = 0 ]; }; then rc=0; break; fi
    if [ $(( $(date +%s) - T0 )) -gt "$TIMEOUT" ]; then echo "==> not all four READY within $TIMEOUT s"; break; fi
    sleep 5
done
sed 's/\x1b\[[0-9;]*m//g' "$WORK/console.log" | grep -a -E "appliance|Failed|overlayroot" | tail -40 || true
echo "==> $(( $(date +%s) - T0 )) s; console log: $WORK/console.log"
exit $rc
