"""`make` on a machine whose Python cannot create a virtual environment (Debian or Ubuntu
without python3-venv: `ensurepip` ships in python3.X-venv, e.g. /usr/lib/python3.11/ensurepip/
in Debian 12's python3.11-venv) stops with our message naming the package, before any venv."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A `python3` as Debian's is without python3-venv: `import ensurepip` fails; `-m venv` would
# fail half-way (after creating the folder) with Python's own message.
FAKE_PYTHON = """#!/bin/sh
case "$*" in
  *"import ensurepip"*) echo "ModuleNotFoundError: No module named 'ensurepip'" >&2; exit 1 ;;
  *"version_info"*) echo 3.11 ;;
  *"-m venv"*) mkdir -p "$3/bin"; echo "The virtual environment was not created successfully \
because ensurepip is not available." ; exit 1 ;;
  *) exit 1 ;;
esac
"""


def _make_install(python, venv):
    return subprocess.run(
        ["make", "-C", str(ROOT), "install", f"PYTHON={python}", f"VENV={venv}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_without_python3_venv_names_the_package(tmp_path):
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    venv = tmp_path / "venv"
    result = _make_install(python, venv)
    assert result.returncode != 0
    assert f"error: {python} cannot create a virtual environment" in result.stdout
    assert "sudo apt-get install python3-venv (or python3.11-venv)" in result.stdout
    assert "ensurepip is not available" not in result.stdout + result.stderr  # not Python's
    assert not venv.exists()  # no half-made environment left behind

    missing = tmp_path / "no-python"
    result = _make_install(missing, venv)
    assert result.returncode != 0
    assert f"error: {missing} not found: install Python 3.10 or newer" in result.stdout
