"""The TOML configuration: defaults, typed values, clear errors."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from middlewared import config


def test_defaults_match_the_running_contract() -> None:
    c = config.Config()
    assert c.server.unix_socket == "/run/middleware/middlewared.sock"
    assert (c.server.host, c.server.port) == ("127.0.0.1", 8016)
    assert c.database.path == "/var/db/middlewared/middlewared.db"
    assert (c.libvirt.uri, c.libvirt.domain_type) == ("qemu:///system", "auto")
    assert c.storage.roots == ("/mnt",)


EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "middlewared.toml"
# Ports browsers refuse to connect to (https://fetch.spec.whatwg.org/#port-blocking): ERR_UNSAFE_PORT.
BAD_PORTS = {0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103,
             104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513,
             514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720,
             1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080}


def test_default_port_is_one_browsers_allow() -> None:
    assert config.Config().server.port not in BAD_PORTS


def test_shipped_example_parses_to_defaults() -> None:
    assert config.load(str(EXAMPLE)) == config.Config()


def test_shipped_example_shows_the_defaults(tmp_path: Path) -> None:
    # Every "# key = value" line uncommented still gives the built-in defaults.
    text = re.sub(r"(?m)^# (\w+ = )", r"\1", EXAMPLE.read_text())
    assert text.count("\nport = 8016\n") == 1
    path = tmp_path / "uncommented.toml"
    path.write_text(text)
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


def test_velocity_pools_and_nics_are_arrays_of_tables() -> None:
    from middlewared.config import ConfigError, VelocityNic, VelocityPool, parse
    config = parse({"velocity": {"authkey_lifetime": 30, "pools": [{"mpid": 1, "name": "iso", "path": "/mnt/iso"}],
                                 "nics": [{"nicid": 2, "bridge": "br0"}]}})
    assert config.velocity.authkey_lifetime == 30
    assert config.velocity.pools == (VelocityPool(1, "iso", "/mnt/iso"),)
    assert config.velocity.nics == (VelocityNic(2, "br0", ""),)
    for bad, message in [({"pools": [{"mpid": 1}]}, "missing name, path"),
                         ({"pools": {"mpid": 1}}, "array of tables"),
                         ({"pools": [{"mpid": "1", "name": "a", "path": "/b"}]}, "must be of type int"),
                         ({"nics": [{"nicid": 1, "bridge": "a"}, {"nicid": 1, "bridge": "b"}]}, "unique"),
                         ({"nics": [{"nicid": 1, "bridge": "a", "speed": 1}]}, "unknown key"),
                         ({"authkey_lifetime": 0}, "positive")]:
        try:
            parse({"velocity": bad})
        except ConfigError as e:
            assert message in str(e)
        else:
            raise AssertionError(bad)


def test_velocity_pools_lie_under_the_storage_roots() -> None:
    from middlewared.config import ConfigError, parse
    for path in ("/srv/iso", "/mnt", "relative/iso", "/mnt/../etc"):
        with pytest.raises(ConfigError, match="not a directory under storage.roots"):
            parse({"velocity": {"pools": [{"mpid": 1, "name": "p", "path": path}]}})
    assert parse({"storage": {"roots": ["/srv"]}, "velocity": {"pools": [{"mpid": 1, "name": "p",
                                                                          "path": "/srv/iso"}]}}).velocity.pools


def test_velocity_default_pool_is_local_under_the_first_root() -> None:
    from middlewared.config import Config, VelocityPool, parse
    assert Config().velocity_pools() == (VelocityPool(1, "local", "/mnt/velocity"),)
    assert Config().velocity.authkey_lifetime == 60  # Velocity's own lifetime, unless configured
    assert parse({"storage": {"roots": ["/srv", "/mnt"]}}).velocity_pools() == (VelocityPool(1, "local",
                                                                                             "/srv/velocity"),)
    assert parse({"velocity": {"pools": []}}).velocity_pools() == ()
