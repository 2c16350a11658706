#!/bin/bash -e
# the root file system of the stage before (Raspberry Pi OS Lite, stage2)
if [ ! -d "${ROOTFS_DIR}" ]; then
    copy_previous
fi
