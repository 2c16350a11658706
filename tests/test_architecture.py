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


def copy_tree(dst):
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_the_tree_keeps_every_contract():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 3 kept, 0 broken." in r.stdout


def test_a_core_module_importing_the_radio_breaks_the_rule(tmp_path):
    tree = copy_tree(tmp_path)
    journal = tree / "appliance" / "journal.py"
    journal.write_text(journal.read_text() + "\nfrom rf_receiver.press import PressDetector  # noqa\n")
    r = lint_imports(tree)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "appliance is not allowed to import rf_receiver" in r.stdout
    assert "appliance.journal -> rf_receiver.press" in r.stdout


def test_the_radio_importing_the_microphone_breaks_independence(tmp_path):
    tree = copy_tree(tmp_path)
    mapping = tree / "rf_receiver" / "mapping.py"
    mapping.write_text(mapping.read_text() + "\nimport audio_capture.level  # noqa\n")
    r = lint_imports(tree)
    assert r.returncode == 1 and "rf_receiver and audio_capture never import each other BROKEN" in r.stdout


def test_the_fleet_importing_a_hardware_library_breaks_the_rule(tmp_path):
    tree = copy_tree(tmp_path)
    report = tree / "fleet" / "report.py"
    report.write_text(report.read_text() + "\nimport gpiozero  # noqa\n")
    r = lint_imports(tree)
    assert r.returncode == 1 and "fleet is not allowed to import gpiozero" in r.stdout
