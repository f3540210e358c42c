"""CLOUD_INIT: a NoCloud seed (user-data, meta-data, network-config) on a read-only CD-ROM the daemon builds."""
from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import yaml
from lxml import etree

from middlewared.middleware import SECRET
from middlewared.plugins.vm_device.base import Device
from middlewared.plugins.vm_device.model import Proposal, Slot
from middlewared.plugins.vm_device.storage import disk_xml

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.host import Host
    from middlewared.plugins.vm_device.planning import Check

# Under the first storage root (QEMU must reach the seeds), one ISO per device.
SEED_DIR = ".vm-seeds"
# cloud-init finds a NoCloud seed by this volume label (cloudinit/sources/DataSourceNoCloud.py).
LABEL = "cidata"
_TEXT = {"type": ["string", "null"], "default": None, "maxLength": 65536}


@dataclass(frozen=True, kw_only=True)
class CloudInit(Device):
    """cloud-init's NoCloud data source for the guest's first boot (and every boot: cloud-init decides)."""

    user_data: str | None
    meta_data: str | None
    network_config: str | None
    hostname: str | None
    ssh_authorized_keys: list[str]
    password: str | None
    seed: str | None

    dtype = "CLOUD_INIT"
    description = "A NoCloud seed for cloud-init: user data, meta data, network config, or the shortcuts."
    properties = {
        "user_data": {**_TEXT, "description": "User data as cloud-init reads it (#cloud-config YAML, a script, "
                                             "...); null: made from the shortcuts. Hidden from readers."},
        "meta_data": {**_TEXT, "description": "Meta data YAML; null: instance-id and local-hostname."},
        "network_config": {**_TEXT, "description": "Network config (version 1 or 2 YAML); null: none."},
        "hostname": {"type": ["string", "null"], "default": None, "pattern": r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$",
                     "description": "Shortcut: the guest's hostname (meta data local-hostname)."},
        "ssh_authorized_keys": {"type": "array", "default": [], "items": {
            "type": "string", "minLength": 1, "pattern": r"^[^\n]+$", "description": "An OpenSSH public key."},
            "description": "Shortcut: keys for the default user (with user_data null)."},
        "password": {"type": ["string", "null"], "default": None, "minLength": 1,
                     "description": "Shortcut: the default user's password (with user_data null). Hidden from "
                                    "readers."},
        "seed": {"type": ["string", "null"], "default": None,
                 "description": "Path of the seed ISO the daemon builds (chosen by the daemon; read only)."},
    }
    default_order: ClassVar[int] = 1003
    regenerated = ("seed",)

    @classmethod
    async def normalize(cls, p: Proposal, check: "Check") -> dict[str, Any]:
        a = dict(p.attributes)
        old_seed = p.old.get("seed") if p.old else None
        if a["seed"] is not None and a["seed"] != old_seed:
            check.error(p, "seed", "The seed path is chosen by the daemon")
        if a["user_data"] is not None and (a["password"] or a["ssh_authorized_keys"]):
            check.error(p, "user_data", "Give either user_data or the password and ssh_authorized_keys shortcuts")
        for key in ("meta_data", "network_config"):
            if a[key] is not None and not _is_yaml_mapping(a[key]):
                check.error(p, key, "Must be a YAML mapping")
        if any(d.get("dtype") == cls.dtype for d in check.siblings(cls.dtype)):
            check.error(p, "dtype", f"{check.vm_name} has a CLOUD_INIT device already", errno.EEXIST)
        a["seed"] = old_seed or os.path.join(check.host.roots[0], SEED_DIR, f"{secrets.token_hex(8)}.iso")
        return a

    @classmethod
    def public(cls, attributes: Mapping[str, Any]) -> dict[str, Any]:
        return {k: (SECRET if k in ("user_data", "password") and v else v) for k, v in attributes.items()}

    def to_xml(self, slot: Slot) -> list[etree._Element]:
        assert self.seed is not None
        return [disk_xml("file", "cdrom", {"file": self.seed}, slot, "sata", readonly=True)]

    def target_prefix(self) -> str | None:
        return "sd"

    async def unavailable(self, host: "Host") -> list[str]:
        # The one step before a start: the seed is (re)built here when its content changed.
        try:
            await asyncio.to_thread(build_seed, self)
        except (OSError, subprocess.CalledProcessError) as e:
            return [f"cannot build the cloud-init seed {self.seed}: {e}"]
        return []

    def identity(self) -> str:
        return self.seed or ""

    def owned_files(self) -> tuple[str, ...]:
        return (self.seed, f"{self.seed}.sum") if self.seed else ()

    def files(self) -> dict[str, str]:
        """The seed's files: user-data, meta-data and (when given) network-config."""
        meta = self.meta_data or yaml.safe_dump({"instance-id": f"iid-{os.path.basename(self.seed or '')[:16]}",
                                                 **({"local-hostname": self.hostname} if self.hostname else {})})
        out = {"user-data": self.user_data if self.user_data is not None else self._shortcut_user_data(),
               "meta-data": meta}
        if self.network_config is not None:
            out["network-config"] = self.network_config
        return out

    def _shortcut_user_data(self) -> str:
        config: dict[str, Any] = {}
        if self.hostname:
            config["hostname"] = self.hostname
        if self.ssh_authorized_keys:
            config["ssh_authorized_keys"] = list(self.ssh_authorized_keys)
        if self.password:
            config.update(password=self.password, chpasswd={"expire": False}, ssh_pwauth=True)
        return "#cloud-config\n" + (yaml.safe_dump(config) if config else "")


def _is_yaml_mapping(text: str) -> bool:
    try:
        return isinstance(yaml.safe_load(text), dict)
    except yaml.YAMLError:
        return False


def build_seed(device: CloudInit) -> bool:
    """Write the seed ISO when its content changed (a digest beside it says what it holds); True when built."""
    assert device.seed is not None
    files = device.files()
    digest = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()
    sum_path = f"{device.seed}.sum"
    if os.path.exists(device.seed) and os.path.exists(sum_path):
        with open(sum_path, encoding="ascii") as f:
            if f.read().strip() == digest:
                return False
    directory = os.path.dirname(device.seed)
    os.makedirs(directory, mode=0o711, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as work:
        for name, text in files.items():
            with open(os.path.join(work, name), "w", encoding="utf-8") as f:
                f.write(text)
        iso = os.path.join(work, "seed.iso")
        subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-V", LABEL, "-J", "-r", *sorted(files)],
                       cwd=work, check=True, capture_output=True)
        # Only root and QEMU's user (through libvirt's ownership change) read it: it may hold secrets.
        os.chmod(iso, 0o600)
        os.replace(iso, device.seed)
    with open(sum_path, "w", encoding="ascii") as f:
        f.write(digest)
    return True
