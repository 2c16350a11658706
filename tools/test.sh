#!/usr/bin/env bash
# Run the static checks (tools/lint.sh) and the whole test suite (installs first if .venv is
# missing). Extra arguments go to pytest. APPLIANCE_SOAK=1 runs the long versions of the
# property and soak tests.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pytest ] && [ -x .venv/bin/lint-imports ] || bash tools/install.sh || exit 1
bash tools/lint.sh || { echo "static checks failed (see above)" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "no tests were collected: that is a failure here" >&2
    exit 1
fi
exit "$rc"
