"""Where the compatibility tests find the official client, and what they do without it."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import official_client


def _vendor(base: Path) -> Path:
    source = base / "shared" / "vendor" / "truenas_api_client"
    source.mkdir(parents=True)
    (source / "pyproject.toml").write_text("[project]\nname = 'truenas_api_client'\n")
    return source


def test_found_beside_the_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(official_client, "ROOT", tmp_path / "repo")
    (tmp_path / "repo").mkdir()
    assert official_client.vendor_source() is None
    assert _vendor(tmp_path) == official_client.vendor_source()


def test_found_beside_the_main_checkout_of_a_worktree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    main, tree = tmp_path / "main", tmp_path / "trees" / "mine"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", str(main)], check=True)
    subprocess.run([*git, "-C", str(main), "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    subprocess.run([*git, "-C", str(main), "worktree", "add", "-q", str(tree)], check=True)
    monkeypatch.setattr(official_client, "ROOT", tree)
    assert official_client.vendor_source() is None
    assert _vendor(tmp_path) == official_client.vendor_source()  # ../shared beside main, not beside trees/


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_client_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           ci: str, outcome: type[BaseException]) -> None:
    monkeypatch.setattr(official_client, "ROOT", tmp_path / "repo")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome):
        official_client.official_client()
