"""DISK: a volume of a libvirt storage pool ("zvol_name" "<pool>/<volume>"), created on request."""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Hashable, Mapping

from lxml import etree

from middlewared.errors import CallError
from middlewared.plugins.vm_device import pool
from middlewared.plugins.vm_device.intents import VOLUME, Leftover
from middlewared.plugins.vm_device.model import Proposal, Slot
from middlewared.plugins.vm_device.paths import reachability_error
from middlewared.plugins.vm_device.resize import Storage, volume_storage
from middlewared.plugins.vm_device.resources import CreateVolume
from middlewared.plugins.vm_device.storage import PATH, STORAGE_PROPERTIES, StorageDevice

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.host import Host
    from middlewared.plugins.vm_device.planning import Check

# "<pool>/<volume>": libvirt pool and volume names.
ZVOL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*/[A-Za-z0-9][A-Za-z0-9_.:+-]*$"
VOLUME_FORMATS = ("qcow2", "raw")


def volume_claim(zvol_name: str) -> tuple[str, str]:
    """What a DISK on the volume "<pool>/<volume>" holds (Device.claims): one VM's disk at a time."""
    return ("volume", zvol_name)


@dataclass(frozen=True, kw_only=True)
class Disk(StorageDevice):
    """A block-style disk backed by a storage volume (a zvol on TrueNAS; any libvirt pool here)."""

    path: str | None
    create_zvol: bool
    zvol_name: str | None
    zvol_volsize: int | None
    format: str | None

    dtype = "DISK"
    delete_option = "zvol"
    has_image = True
    description = "A disk backed by a volume of a libvirt storage pool."
    properties = {
        "path": {**PATH, "type": ["string", "null"], "default": None,
                 "description": "Path of an existing volume (see vm.device.disk_choices); filled in from "
                                "zvol_name otherwise."},
        **STORAGE_PROPERTIES,
        "create_zvol": {"type": "boolean", "default": False,
                        "description": "Create the volume zvol_name of zvol_volsize bytes (stored as false "
                                       "once created)."},
        "zvol_name": {"type": ["string", "null"], "default": None, "pattern": ZVOL_NAME,
                      "description": "The volume as \"<pool>/<volume>\": to create, or an existing one."},
        "zvol_volsize": {"type": ["integer", "null"], "default": None, "minimum": 1,
                         "description": "Size in bytes of the volume to create (with create_zvol)."},
        "format": {"type": ["string", "null"], "enum": [None, *VOLUME_FORMATS], "default": None,
                   "description": "Image format of the volume: for a new one qcow2 (null; snapshots need it) or "
                                  "raw; for an existing one read from the pool (null) and checked."},
    }

    @classmethod
    def claims(cls, attributes: Mapping[str, Any]) -> frozenset[Hashable]:
        name = attributes.get("zvol_name")
        return frozenset({volume_claim(name)}) if name else frozenset()

    @classmethod
    def merge(cls, old: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
        # Asking for a new volume replaces the old one's references.
        if given.get("create_zvol"):
            old = {k: v for k, v in old.items() if k not in ("path", "zvol_name")}
        return super().merge(old, given)

    @classmethod
    async def normalize(cls, p: Proposal, check: "Check") -> dict[str, Any]:
        a = dict(p.attributes)
        if a["create_zvol"]:
            await cls._new_volume(p, check, a)
        else:
            await cls._existing_volume(p, check, a)
        a.update(create_zvol=False, zvol_volsize=None)
        cls.check_storage(p, check, a)
        return a

    @classmethod
    async def _new_volume(cls, p: Proposal, check: "Check", a: dict[str, Any]) -> None:
        for key in ("zvol_name", "zvol_volsize"):
            if a[key] is None:
                check.error(p, key, "This field is required.")
        if a["path"] is not None:
            check.error(p, "path", "Must not be specified when creating zvol")
        if a["zvol_name"] is None or a["zvol_volsize"] is None:
            return
        pool_name, _, name = a["zvol_name"].partition("/")
        if not await check.host.pool_active(pool_name):
            check.error(p, "zvol_name", f"Storage pool {pool_name} does not exist or is not active", errno.ENOENT)
        elif await check.host.volume(a["zvol_name"]) is not None:
            check.error(p, "zvol_name", f"'{a['zvol_name']}' already exists.", errno.EEXIST)
        elif cls._created_twice(check, a["zvol_name"]):
            check.error(p, "zvol_name", f"'{a['zvol_name']}' is created twice", errno.EEXIST)
        else:
            a["format"] = a["format"] or "qcow2"
            check.add_action(CreateVolume(pool_name, name, a["zvol_volsize"], a, a["format"]))

    @staticmethod
    def _created_twice(check: "Check", zvol_name: str) -> bool:
        return any(isinstance(x, CreateVolume) and f"{x.pool}/{x.name}" == zvol_name for x in check.actions)

    @classmethod
    async def _existing_volume(cls, p: Proposal, check: "Check", a: dict[str, Any]) -> None:
        if a["zvol_volsize"] is not None:
            check.error(p, "zvol_volsize", 'This field should not be specified when "create_zvol" is unset.')
        if not a["path"] and not a["zvol_name"]:
            check.error(p, "path", "Disk path is required.")
            return
        by_name = await check.host.volume(a["zvol_name"]) if a["zvol_name"] else None
        by_path = await check.host.volume_at(a["path"]) if a["path"] else None
        if a["zvol_name"] and by_name is None:
            check.error(p, "zvol_name", "Volume referenced by zvol_name does not exist", errno.ENOENT)
        if a["path"] and by_path is None:
            check.error(p, "path", "Path does not reference a volume of an active storage pool", errno.ENOENT)
        if by_name and by_path and by_name != by_path:
            check.error(p, "path", f"Path is volume {by_path.zvol_name}, not {by_name.zvol_name}")
        volume = by_name or by_path
        if volume is None:
            return
        if a["format"] is not None and a["format"] != volume.format:
            check.error(p, "format", f"Volume {volume.zvol_name} is {volume.format}, not {a['format']}")
        a.update(path=volume.path, zvol_name=volume.zvol_name, format=volume.format)
        if check.held_elsewhere(volume_claim(volume.zvol_name)):
            check.error(p, "zvol_name", f"Volume {volume.zvol_name} is already a disk of another VM", errno.EBUSY)
        problem = reachability_error(volume.path, await check.host.qemu_user())
        if problem:
            check.error(p, "path", problem, errno.EACCES)

    def to_xml(self, slot: Slot) -> list[etree._Element]:
        # type='volume' lets libvirt resolve the pool's storage (file, block device, zvol) at start.
        pool_name, _, volume = str(self.zvol_name).partition("/")
        # Rows stored before formats were recorded name raw volumes.
        return [self.storage_xml("volume", {"pool": pool_name, "volume": volume}, slot, self.format or "raw")]

    async def unavailable(self, host: "Host") -> list[str]:
        volume = await host.volume(str(self.zvol_name))
        if volume is None:
            return [f"volume {self.zvol_name} does not exist"]
        problem = reachability_error(volume.path, await host.qemu_user())
        return [problem] if problem else []

    def identity(self) -> str:
        return self.zvol_name or self.path or ""

    def volume(self) -> str | None:
        return self.zvol_name

    async def clone_attributes(self, attributes: Mapping[str, Any], new_name: str, host: "Host",
                               linked: bool) -> dict[str, Any] | None:
        """A copy of the volume, named after the clone, in the same pool; linked, a qcow2 overlay on it."""
        copied = await super().clone_attributes(attributes, new_name, host, linked)
        source = await host.volume(str(self.zvol_name))
        if source is None or copied is None:
            raise CallError(f"Volume {self.zvol_name} does not exist.", errno.ENOENT)
        name, n = f"{source.name}_{new_name}", 0
        while await host.volume(f"{source.pool}/{name}") is not None:
            n += 1
            name = f"{source.name}_{new_name}_{n}"
        # Owned by no row until the clone's create commits: recorded so that a kill meanwhile leaks nothing.
        async with host.making(Leftover(VOLUME, f"{source.pool}/{name}")):
            copy = await host.hv.run(pool.overlay_volume if linked else pool.clone_volume, source, name)
        return {**copied, "path": copy.path, "zvol_name": copy.zvol_name, "format": copy.format}

    async def image(self, host: "Host") -> "Storage":
        return await volume_storage(str(self.zvol_name), host)

    async def storage_missing(self, host: "Host") -> str | None:
        if await host.volume(str(self.zvol_name)) is None:
            return f"Volume {self.zvol_name} does not exist"
        return None

    def storage_leftover(self) -> Leftover | None:
        return Leftover(VOLUME, str(self.zvol_name))

    async def remove_storage(self, host: "Host") -> None:
        await host.delete_volume(str(self.zvol_name))
