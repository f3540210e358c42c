"""The daemon's TOML configuration, read once at start into typed, frozen dataclasses."""
from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

DEFAULT_PATH = "/etc/middlewared/middlewared.toml"


class ConfigError(Exception):
    """The configuration file is unreadable or holds a bad value."""


@dataclass(frozen=True)
class ServerConfig:
    """Where the API listens."""

    unix_socket: str = "/run/middleware/middlewared.sock"
    host: str = "127.0.0.1"
    # Not 6000 (TrueNAS' own): browsers refuse it (X11, on the Fetch standard's bad-port list), and the
    # web console link carries this port.
    port: int = 8016
    # PEM files; when both are set the TCP listener speaks TLS only (wss://, https://).
    tls_certificate: str = ""
    tls_private_key: str = ""
    # Browser origins (scheme://host[:port]) allowed to open the WebSocket besides the daemon's own;
    # requests without an Origin header (non-browser clients) always pass.
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatabaseConfig:
    """The SQLite file."""

    path: str = "/var/db/middlewared/middlewared.db"


@dataclass(frozen=True)
class LibvirtConfig:
    """The hypervisor connection."""

    uri: str = "qemu:///system"
    domain_type: str = "auto"
    # Leave running VMs running when the daemon stops (they are adopted on the next start).
    stop_vms_on_shutdown: bool = False


@dataclass(frozen=True)
class StorageConfig:
    """Trees where disk images and media may live, and the pool for DISK volumes."""

    roots: tuple[str, ...] = ("/mnt",)
    pool: str = "middlewared"


@dataclass(frozen=True)
class AuthConfig:
    """Login limits, API key hashing and audit retention."""

    # Unauthenticated calls allowed per address (all methods together) within rate_limit_period seconds;
    # past that, none for a whole period.
    rate_limit_calls: int = 20
    rate_limit_period: int = 60
    # Seconds added before answering a failed login; it grows with recent failures from the same address.
    failed_login_delay: float = 1.0
    # Failed logins within ten minutes after which logins are refused (EBUSY) from that address only: as one user
    # name, and as any name at all.
    failed_logins_per_user: int = 10
    failed_logins_per_address: int = 30
    # PBKDF2-SHA512 iterations of new API keys (SCRAM clients accept 50000..5000000; TrueNAS uses 500000).
    api_key_iterations: int = 500000
    # Audit records kept; older ones are deleted.
    audit_max_entries: int = 20000


@dataclass(frozen=True)
class JobsConfig:
    """Job log files."""

    logs_dir: str = "/var/log/middlewared/jobs"


@dataclass(frozen=True)
class LogConfig:
    """Daemon logging."""

    level: str = "INFO"


@dataclass(frozen=True)
class VelocityPool:
    """A media pool of the Velocity REST API: a stable id and a directory under [storage] roots."""

    mpid: int
    name: str
    path: str


@dataclass(frozen=True)
class VelocityNic:
    """A host bridge offered to Velocity BRIDGE NICs under a stable id."""

    nicid: int
    bridge: str
    description: str = ""


@dataclass(frozen=True)
class VelocityConfig:
    """The Velocity REST API (/u, /m, /v): authkey lifetime, media pools and host NICs."""

    # Seconds an authkey lives after its last use (Velocity's fixed 60 s, sliding here).
    authkey_lifetime: int = 60
    # The libvirt NAT network of NAT NICs, defined (with this gateway address and prefix) and started when
    # missing.
    nat_network: str = "middlewared-nat"
    nat_address: str = "10.213.0.1/24"
    # None: one pool, mpid 1 "local", in <first storage root>/velocity (as Proxmox has its "local" storage).
    pools: tuple[VelocityPool, ...] | None = None
    nics: tuple[VelocityNic, ...] = ()


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    libvirt: LibvirtConfig = field(default_factory=LibvirtConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    log: LogConfig = field(default_factory=LogConfig)
    velocity: VelocityConfig = field(default_factory=VelocityConfig)

    def velocity_pools(self) -> tuple[VelocityPool, ...]:
        """The Velocity media pools: the configured ones, or the default local pool."""
        if self.velocity.pools is not None:
            return self.velocity.pools
        return (VelocityPool(1, "local", os.path.join(self.storage.roots[0], "velocity")),)


# Keys holding arrays of tables ([[section.key]]), and the dataclass of one table.
_TABLE_ARRAYS: dict[tuple[str, str], type[Any]] = {("velocity", "pools"): VelocityPool,
                                                   ("velocity", "nics"): VelocityNic}

_CHOICES = {("libvirt", "domain_type"): {"auto", "kvm", "qemu"},
            ("log", "level"): {"DEBUG", "INFO", "WARNING", "ERROR"}}


def _section(name: str, cls: type[Any], raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key}")
        default = getattr(cls(), key)
        table = _TABLE_ARRAYS.get((name, key))
        if table is not None:
            value = tuple(_table(f"{name}.{key}", table, item) for item in _array(f"{name}.{key}", value))
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name}.{key} must be a list of strings")
            value = tuple(value)
        elif type(value) is not type(default):
            raise ConfigError(f"{name}.{key} must be of type {type(default).__name__}")
        allowed = _CHOICES.get((name, key))
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{name}.{key} must be one of {', '.join(sorted(allowed))}")
        values[key] = value
    return replace(cls(), **values)


def _array(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{name} must be an array of tables ([[{name}]])")
    return value


def _table(name: str, cls: type[Any], raw: Any) -> Any:
    """One table of an array of tables: every key without a default is required."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{name} must be an array of tables ([[{name}]])")
    known = {f.name: f for f in fields(cls)}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key}")
        expected = int if known[key].type in ("int", int) else str
        if type(value) is not expected:
            raise ConfigError(f"{name}.{key} must be of type {expected.__name__}")
    missing = [k for k, f in known.items() if k not in raw and f.default is MISSING]
    if missing:
        raise ConfigError(f"{name}: missing {', '.join(missing)}")
    return cls(**raw)


def _check_velocity(velocity: VelocityConfig, roots: tuple[str, ...]) -> None:
    for pool in velocity.pools or ():
        path = os.path.normpath(pool.path)
        if not os.path.isabs(path) or not any(os.path.commonpath([path, os.path.normpath(r)]) ==
                                              os.path.normpath(r) and path != os.path.normpath(r) for r in roots):
            raise ConfigError(f"velocity.pools: {pool.path} (mpid {pool.mpid}) is not a directory under storage.roots")
    for what, ids in (("pools", [p.mpid for p in velocity.pools or ()]), ("nics", [n.nicid for n in velocity.nics])):
        if len(set(ids)) != len(ids):
            raise ConfigError(f"velocity.{what}: ids must be unique")
    if velocity.authkey_lifetime < 1:
        raise ConfigError("velocity.authkey_lifetime must be positive")
    try:
        if ipaddress.ip_interface(velocity.nat_address).network.num_addresses < 8:
            raise ValueError("too small")
    except ValueError as e:
        raise ConfigError(f"velocity.nat_address must be an address with a prefix, e.g. 10.213.0.1/24: {e}") from None
    if not velocity.nat_network or not velocity.nat_network.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("velocity.nat_network must be letters, digits, '-' or '_'")


def parse(raw: dict[str, Any]) -> Config:
    """Build a Config from a parsed TOML document; unknown sections and keys are errors."""
    sections = {f.name: f for f in fields(Config)}
    values: dict[str, Any] = {}
    for name, body in raw.items():
        if name not in sections:
            raise ConfigError(f"unknown section [{name}]")
        values[name] = _section(name, type(getattr(Config(), name)), body)
    config = Config(**values)
    if not 0 < config.server.port < 65536:
        raise ConfigError("server.port must be between 1 and 65535")
    if not config.storage.roots:
        raise ConfigError("storage.roots must name at least one directory")
    if bool(config.server.tls_certificate) != bool(config.server.tls_private_key):
        raise ConfigError("server.tls_certificate and server.tls_private_key go together")
    if not 50000 <= config.auth.api_key_iterations <= 5000000:
        raise ConfigError("auth.api_key_iterations must be between 50000 and 5000000")
    if config.auth.rate_limit_calls < 1 or config.auth.rate_limit_period < 1:
        raise ConfigError("auth.rate_limit_calls and auth.rate_limit_period must be positive")
    _check_velocity(config.velocity, config.storage.roots)
    return config


def load(path: str | None) -> Config:
    """Read the file at path (or MIDDLEWARED_CONFIG, or the default path when present)."""
    path = path or os.environ.get("MIDDLEWARED_CONFIG")
    if path is None:
        if not os.path.exists(DEFAULT_PATH):
            return Config()
        path = DEFAULT_PATH
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e
    try:
        return parse(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
