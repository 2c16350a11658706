#!/usr/bin/env bash
# The project's static checks: ruff (pyflakes, pycodestyle, bugbear) and the dependency rule
# of the architecture as import-linter contracts (pyproject.toml). Exit non-zero on a finding.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/ruff ] || bash tools/install.sh
echo "==> ruff"
.venv/bin/ruff check .
echo "==> import contracts"
.venv/bin/lint-imports --no-cache
