#!/usr/bin/env bash
# Install everything Contact Analyzer needs on Debian 12 / Raspberry Pi OS bookworm (as root):
# system packages with apt, a virtual environment in .venv, the project and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if command -v apt-get >/dev/null 2>&1; then
    echo "==> apt: python3, venv, ALSA and systemd headers, rtl-433, ffmpeg, Mosquitto, PostgreSQL, GStreamer RTSP server, Chromium, mmdebstrap, lintian and QEMU (tests, images)"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-venv python3-dev tzdata ca-certificates \
        gcc pkg-config libasound2-dev libsystemd-dev alsa-utils rtl-433 ffmpeg mosquitto mosquitto-clients postgresql systemd \
        python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
        chromium chromium-driver mmdebstrap lintian dpkg-dev qemu-user-static binfmt-support arch-test \
        dosfstools mtools e2fsprogs fdisk qemu-system-arm qemu-utils >/dev/null
fi
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
fi
if [ ! -x .venv/bin/python ]; then
    echo "==> venv: .venv ($("$PY" --version))"
    "$PY" -m venv .venv
fi
echo "==> pip: the project and its test tools"
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,nrf24,office]'
echo "==> byte-compiling the packages (as an installed package is: every command starts without compiling)"
.venv/bin/python -m compileall -q -j 0 appliance audio_capture rf_receiver provisioning fleet >/dev/null
echo "==> installed: $(.venv/bin/appliancectl --version)"
