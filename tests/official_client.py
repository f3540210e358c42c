"""The official TrueNAS API client (``truenas_api_client``), unmodified, in a virtual environment of its own.

It ships a ``midclt`` of its own, like this project: a separate venv keeps the two apart. The client's
source lives beside the repository, in ``../shared/vendor``. Without it the tests that need it are skipped, except under CI (``CI=true``), where a
missing client is a failure.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT

PACKAGE = "truenas_api_client"
VENV = ROOT / ".venv" / "official-client"

# Run before every script: the names a test script may use, and its arguments (JSON in argv[1]).
PRELUDE = """
import json, sys
from truenas_api_client import Client, ClientException, ValidationErrors
from truenas_api_client.auth_api_key import APIKeyAuthMech
ARGS = json.loads(sys.argv[1])
"""


def _checkouts() -> list[Path]:
    """This checkout, and the repository's main checkout when this one is a git worktree."""
    roots = [ROOT]
    try:
        common = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return roots
    main = Path(common).parent
    return roots if main == ROOT else [*roots, main]


def vendor_source() -> Path | None:
    """The client's source tree: ``../shared/vendor/truenas_api_client`` beside the checkout (or beside the
    main checkout, for a git worktree)."""
    for root in _checkouts():
        candidate = root.parent / "shared" / "vendor" / PACKAGE
        if (candidate / "pyproject.toml").is_file():
            return candidate
    return None


def _fingerprint(source: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def install(source: Path) -> Path:
    """Create the venv and install the client into it, unless the same source is installed already."""
    stamp = VENV / f".installed-{_fingerprint(source)}"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        str(source)], check=True, capture_output=True, timeout=600)
        stamp.touch()
    return VENV


@dataclass(frozen=True)
class OfficialClient:
    """Runs scripts with the official client's Python API, and its midclt."""

    venv: Path

    def run(self, script: str, args: dict[str, Any], timeout: float = 120) -> Any:
        """Run script (after PRELUDE; ``ARGS`` holds args) and return what it printed last, as JSON."""
        proc = subprocess.run([str(self.venv / "bin" / "python"), "-c", PRELUDE + script, json.dumps(args)],
                              capture_output=True, text=True, timeout=timeout, cwd="/")
        if proc.returncode != 0:
            raise AssertionError(f"client script failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def midclt(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The client's own midclt console script."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        return subprocess.run([str(self.venv / "bin" / "midclt"), *argv], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd="/")


def official_client() -> OfficialClient:
    """The installed client, or skip (fail under CI) when its source is not there."""
    source = vendor_source()
    if source is None:
        message = f"the official TrueNAS client is not in ../shared/vendor/{PACKAGE} beside the checkout"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return OfficialClient(install(source))
