"""Packaging metadata: every third-party module the daemon and midclt import is a declared, pinned dependency."""
from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("middlewared", "midclt")


def install_requires() -> set[str]:
    """Distribution names in setup.cfg's install_requires, normalised."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].split("\n")
    return {normalise(re.split(r"[<>=!~;\[ ]", line.strip())[0]) for line in lines if line.strip()}


def normalise(name: str) -> str:
    """PEP 503 name normalisation (PyYAML == pyyaml, libvirt_python == libvirt-python)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported anywhere in the shipped packages (outside the standard library) -> files."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_runtime_import_is_in_install_requires() -> None:
    providers = importlib.metadata.packages_distributions()
    declared = install_requires()
    imports = third_party_imports()
    assert "yaml" in imports  # the walk sees midclt's YAML output
    missing = {module: files for module, files in imports.items()
               if not {normalise(d) for d in providers.get(module, [])} & declared}
    assert not missing, f"imported but not in setup.cfg install_requires: {missing}"


def test_install_requires_are_pinned_in_requirements() -> None:
    pinned = {normalise(line.split("==")[0]) for line in (ROOT / "requirements.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert install_requires() <= pinned
