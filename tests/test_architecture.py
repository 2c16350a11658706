"""The dependency rule (ARCHITECTURE §9) as import-linter contracts: kept by the tree, and
broken — the check fails — by a deliberately wrong import in a copy of it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.conftest import ROOT

PACKAGES = ("appliance", "rf_receiver", "audio_capture", "provisioning", "fleet")
LINT_IMPORTS = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; "
                "sys.exit(c())", "--no-cache"]


def lint_imports(tree) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run(LINT_IMPORTS, cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def with_import(dst, module: str, line: str) -> subprocess.CompletedProcess:
    """Copy the tree, add one import line to a module, run the contracts on the copy."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    path = dst / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    return lint_imports(dst)


def test_the_tree_keeps_every_contract():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 3 kept, 0 broken." in r.stdout


def test_a_core_module_importing_the_radio_breaks_the_rule(tmp_path):
    r = with_import(tmp_path, "appliance/journal.py", "from rf_receiver.press import PressDetector")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "appliance is not allowed to import rf_receiver" in r.stdout
    assert "appliance.journal -> rf_receiver.press" in r.stdout


def test_the_radio_importing_the_microphone_breaks_independence(tmp_path):
    r = with_import(tmp_path, "rf_receiver/mapping.py", "import audio_capture.level")
    assert r.returncode == 1 and "rf_receiver and audio_capture never import each other BROKEN" in r.stdout


def test_the_fleet_importing_a_hardware_library_breaks_the_rule(tmp_path):
    r = with_import(tmp_path, "fleet/report.py", "import gpiozero")
    assert r.returncode == 1 and "fleet is not allowed to import gpiozero" in r.stdout
