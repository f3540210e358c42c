"""The TOML configuration: defaults, typed values, clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from middlewared import config


def test_defaults_match_the_running_contract() -> None:
    c = config.Config()
    assert c.server.unix_socket == "/run/middleware/middlewared.sock"
    assert (c.server.host, c.server.port) == ("127.0.0.1", 6000)
    assert c.database.path == "/var/db/middlewared/middlewared.db"
    assert (c.libvirt.uri, c.libvirt.domain_type) == ("qemu:///system", "auto")
    assert c.storage.roots == ("/mnt",)


def test_shipped_example_parses_to_defaults() -> None:
    path = Path(__file__).resolve().parents[2] / "etc" / "middlewared.toml"
    assert config.load(str(path)) == config.Config()


@pytest.mark.parametrize("text, message", [
    ("[server]\nport = 'x'", "server.port must be of type int"),
    ("[server]\nport = 0", "server.port must be between"),
    ("[nope]\n", "unknown section [nope]"),
    ("[server]\nbogus = 1", "unknown key server.bogus"),
    ("[libvirt]\ndomain_type = 'xen'", "libvirt.domain_type must be one of"),
    ("[storage]\nroots = []", "storage.roots must name at least one directory"),
    ("[storage]\nroots = [1]", "storage.roots must be a list of strings"),
    ("not toml ===", "Expected"),
])
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as e:
        config.load(str(path))
    assert message in str(e.value)


def test_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 7001\n")
    monkeypatch.setenv("MIDDLEWARED_CONFIG", str(path))
    assert config.load(None).server.port == 7001
