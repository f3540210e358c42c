"""The project as pip installs it: a wheel, into a fresh venv, with nothing but its declared dependencies."""
from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# What a source distribution needs to build the wheel; the tests, the venv and caches stay out.
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "middlewared", "midclt")
# Imports every module of both packages: a dependency imported lazily, deep in a plugin, is caught too.
IMPORT_ALL = """
import importlib, pkgutil, middlewared, midclt
for package in (middlewared, midclt):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
print("imported")
"""


def run(*args: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, cwd=cwd)
    assert proc.returncode == 0, f"{args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", source)
    [wheel] = (tmp_path / "dist").glob("middlewared-*.whl")
    # Plain pip as configured on the machine: no requirements file, no constraints of ours.
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    run(bin_dir / "pip", "install", "-q", wheel)
    assert "usage: midclt" in run(bin_dir / "midclt", "--help")
    assert "usage: middlewared" in run(bin_dir / "middlewared", "--help")
    assert run(bin_dir / "python", "-c", IMPORT_ALL, cwd=tmp_path).strip() == "imported"
