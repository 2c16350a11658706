#!/bin/bash -e
# The appliance's Debian package (arm64, from image_build/build-deb.sh run on an arm64 machine or
# taken from build-image.sh's dist/ folder) and the fleet's release keys, put in files/ first.
shopt -s nullglob
debs=(files/contact-analyzer_*_arm64.deb)
if [ ${#debs[@]} -ne 1 ]; then
    echo "stage-appliance: put exactly one contact-analyzer_<version>_arm64.deb in $(pwd)/files" >&2
    exit 1
fi
install -m 0644 "${debs[0]}" "${ROOTFS_DIR}/tmp/"
on_chroot << CHROOT
apt-get install -y /tmp/$(basename "${debs[0]}")
rm -f /tmp/$(basename "${debs[0]}")
CHROOT
keys=(files/*.pub)
if [ ${#keys[@]} -gt 0 ]; then
    install -d -m 0755 "${ROOTFS_DIR}/etc/appliance/release-keys"
    install -m 0644 "${keys[@]}" "${ROOTFS_DIR}/etc/appliance/release-keys/"
fi
