#!/usr/bin/env bash
# Build the Debian package: dist/contact-analyzer_<version>_<arch>.deb
#
#   bash image_build/build-deb.sh                 # for this machine's architecture
#   VERSION_SUFFIX=+1 bash image_build/build-deb.sh   # the same code as a newer package (upgrade tests)
#
# The package carries the project's wheel and every dependency's wheel, downloaded or built
# from image_build/requirements.lock with pip's hash checking (a file whose sha256 is not in
# the lock is refused), plus a SHA256SUMS of what it carries; its postinst makes the Python
# environment in /opt/appliance/releases/<version> from them, offline, and switches
# /opt/appliance/current to it. Needs: python3-venv, gcc, python3-dev, libasound2-dev and
# libsystemd-dev (to build the two dependencies published as source only), dpkg-deb; lintian
# to check it (tools/install.sh installs them all).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ARCH="${ARCH:-$(dpkg --print-architecture)}"
if [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
    echo "build-deb.sh: builds for this machine's architecture ($(dpkg --print-architecture)); build an $ARCH" \
         "package on an $ARCH machine or in an $ARCH chroot (image_build/build-image.sh does)" >&2
    exit 2
fi
PY="${PYTHON:-/usr/bin/python3}"
BASE_VERSION=$("$PY" -c 'import re,sys; print(re.search(r"__version__ = \"([^\"]+)\"", open("appliance/__init__.py").read()).group(1))')
VERSION="${BASE_VERSION}${VERSION_SUFFIX:-}"
WORK="$ROOT/build/deb"
STAGE="$WORK/root"
OUT="$ROOT/dist/contact-analyzer_${VERSION}_${ARCH}.deb"
T0=$(date +%s)

rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$WORK" "$ROOT/dist"

echo "==> wheels: the lock's pins, hash-checked (build env in $WORK/venv)"
[ -x "$WORK/venv/bin/pip" ] || "$PY" -m venv "$WORK/venv"
PIP=("$WORK/venv/bin/pip" --disable-pip-version-check -q)
# the build tools (the builder's, not shipped): the two source-only dependencies are built with them
env -u PIP_REQUIRE_VIRTUALENV "${PIP[@]}" install "setuptools>=68" "wheel>=0.41" 2> >(grep -v "^WARNING: Location" >&2)
WHEELS="$STAGE/usr/lib/contact-analyzer/wheels"
mkdir -p "$WHEELS"
# $WORK/wheelhouse keeps what was downloaded and built before (same lock: same files; pip checks the hashes)
env -u PIP_REQUIRE_VIRTUALENV "${PIP[@]}" wheel --require-hashes --no-build-isolation \
    -r image_build/requirements.lock -w "$WORK/wheelhouse" 2> >(grep -v "^WARNING: Location" >&2)
# only the wheels of the lock's pins (a wheelhouse may hold older ones)
"$WORK/venv/bin/python" - "$WORK/wheelhouse" "$WHEELS" image_build/requirements.lock <<'PYEOF'
import re, shutil, sys
from pathlib import Path
house, dest, lock = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]).read_text()
pins = {re.sub(r"[-_.]+", "_", n).lower(): v for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", lock, re.M)}
found = set()
for w in house.glob("*.whl"):
    name, version = w.name.split("-")[:2]
    key = re.sub(r"[-_.]+", "_", name).lower()
    if pins.get(key) == version:
        shutil.copy2(w, dest / w.name)
        found.add(key)
missing = set(pins) - found
if missing:
    sys.exit(f"build-deb.sh: no wheel for {', '.join(sorted(missing))}")
PYEOF
echo "==> the project's wheel ($VERSION)"
rm -rf "$WORK/project"
mkdir -p "$WORK/project"
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$ROOT" ls-files -z | tar -C "$ROOT" --null -T - -cf - | tar -C "$WORK/project" -xf -
else                                # a source tree without git (the image build's copy)
    tar -C "$ROOT" --exclude=./build --exclude=./dist --exclude=./.venv --exclude='*.egg-info' -cf - . \
        | tar -C "$WORK/project" -xf -
fi
if [ -n "${VERSION_SUFFIX:-}" ]; then
    sed -i "s/^__version__ = \".*\"/__version__ = \"$VERSION\"/" "$WORK/project/appliance/__init__.py"
    sed -i "s/^version = \".*\"/version = \"$VERSION\"/" "$WORK/project/pyproject.toml" || true
fi
env -u PIP_REQUIRE_VIRTUALENV "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$WHEELS" "$WORK/project" \
    2> >(grep -v "^WARNING: Location" >&2)
(cd "$WHEELS" && sha256sum -- *.whl > SHA256SUMS)

echo "==> files: units, users, state directory, configuration, documentation"
install -d "$STAGE/usr/lib/systemd/system" "$STAGE/usr/lib/sysusers.d" "$STAGE/usr/lib/tmpfiles.d" \
    "$STAGE/etc/appliance" "$STAGE/usr/bin" "$STAGE/usr/share/doc/contact-analyzer" \
    "$STAGE/usr/share/polkit-1/rules.d" "$STAGE/usr/share/lintian/overrides" "$STAGE/usr/lib/udev/rules.d"
install -m 0644 image_build/systemd/*.service image_build/systemd/appliance-update.path image_build/systemd/appliance.target "$STAGE/usr/lib/systemd/system/"
install -m 0644 image_build/sysusers.d/appliance.conf "$STAGE/usr/lib/sysusers.d/contact-analyzer.conf"
install -m 0644 image_build/tmpfiles.d/appliance.conf "$STAGE/usr/lib/tmpfiles.d/contact-analyzer.conf"
install -m 0644 image_build/polkit-1/rules.d/*.rules "$STAGE/usr/share/polkit-1/rules.d/"
install -m 0644 image_build/udev/60-contact-analyzer.rules "$STAGE/usr/lib/udev/rules.d/"
install -m 0644 config.example.toml "$STAGE/etc/appliance/appliance.toml"
install -m 0644 image_build/debian/lintian-overrides "$STAGE/usr/share/lintian/overrides/contact-analyzer"
cat > "$STAGE/usr/bin/appliancectl" <<'EOF'
#!/bin/sh
# the running release's appliancectl (/opt/appliance/current: switched atomically by updates)
exec /opt/appliance/current/bin/appliancectl "$@"
EOF
chmod 0755 "$STAGE/usr/bin/appliancectl"
install -m 0644 image_build/debian/copyright "$STAGE/usr/share/doc/contact-analyzer/copyright"
{
    echo "contact-analyzer ($VERSION) stable; urgency=medium"
    echo
    echo "  * Built from $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'a source tree')."
    echo
    echo " -- Contact Analyzer <packaging@contact-analyzer.invalid>  $(date -R -d @"${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n > "$STAGE/usr/share/doc/contact-analyzer/changelog.gz"
install -d "$STAGE/usr/share/man/man1"
sed "s/@VERSION@/$VERSION/" image_build/debian/appliancectl.1 | gzip -9n > "$STAGE/usr/share/man/man1/appliancectl.1.gz"

echo "==> control"
for f in postinst prerm postrm; do
    sed "s/@VERSION@/$VERSION/g" "image_build/debian/$f" > "$STAGE/DEBIAN/$f"
    chmod 0755 "$STAGE/DEBIAN/$f"
done
install -m 0644 image_build/debian/conffiles "$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" image_build/debian/control.in \
    > "$STAGE/DEBIAN/control"
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    > "$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/md5sums"
find "$STAGE" -type d -exec chmod 0755 {} +

echo "==> dpkg-deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$OUT" >/dev/null
echo "built $OUT ($(du -h "$OUT" | cut -f1), $(( $(date +%s) - T0 )) s)"
if command -v lintian >/dev/null 2>&1 && [ -z "${NO_LINTIAN:-}" ]; then
    echo "==> lintian"
    lintian --fail-on error,warning "$OUT"
    echo "lintian: clean (overrides: usr/share/lintian/overrides/contact-analyzer)"
fi
