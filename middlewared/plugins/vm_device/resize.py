"""Growing a DISK volume or RAW file, also under a running guest (QEMU grows the image and tells the guest)."""
from __future__ import annotations

import asyncio
import errno
import os
from dataclasses import dataclass

import libvirt
from lxml import etree

from middlewared.errors import CallError
from middlewared.plugins.vm.hypervisor import Hypervisor
from middlewared.plugins.vm_device import pool
from middlewared.plugins.vm_device.host import Host
from middlewared.plugins.vm_device.paths import PathError, confine


@dataclass(frozen=True)
class Storage:
    """A disk's image as resizing sees it."""

    path: str
    size: int
    free: int
    volume: pool.Volume | None


async def volume_storage(zvol_name: str, host: Host) -> Storage:
    """A volume "<pool>/<name>" as an image: its size and the free bytes of its pool."""
    volume = await host.volume(zvol_name)
    if volume is None:
        raise CallError(f"Volume {zvol_name} does not exist", errno.ENOENT)
    free = await host.hv.run(_pool_free, volume.pool)
    return Storage(volume.path, volume.capacity, free, volume)


async def file_storage(given: str, host: Host) -> Storage:
    """An image file inside the storage roots: its size and the free bytes of its file system."""
    try:
        path = confine(given, host.roots)
    except PathError as e:
        raise CallError(f"{given}: {e}", errno.EINVAL) from e
    if not os.path.isfile(path):
        raise CallError(f"{path} does not exist", errno.ENOENT)
    st, vfs = await asyncio.to_thread(lambda: (os.stat(path), os.statvfs(path)))
    return Storage(path, st.st_size, vfs.f_bavail * vfs.f_frsize, None)


def _pool_free(conn: libvirt.virConnect, pool_name: str) -> int:
    return int(conn.storagePoolLookupByName(pool_name).info()[3])


def check_growth(storage: Storage, size: int) -> None:
    """Refuse shrinking, a size that does not change, and growth beyond the free space."""
    if size < storage.size:
        raise CallError(f"The disk has {storage.size} bytes; shrinking it to {size} is not supported (data at its "
                        "end would be lost)", errno.EINVAL)
    if size == storage.size:
        raise CallError(f"The disk has {size} bytes already", errno.EINVAL)
    if size - storage.size > storage.free:
        raise CallError(f"Growing by {size - storage.size} bytes needs more than the {storage.free} bytes free "
                        "where the disk lives", errno.ENOSPC)


def _target_dev(dom: libvirt.virDomain, path: str, volume: pool.Volume | None) -> str:
    """The guest target (vda, sdb) of the running domain's disk with this image."""
    for disk in etree.fromstring(dom.XMLDesc(0)).iterfind("devices/disk"):
        source = disk.find("source")
        if source is None:
            continue
        same_volume = volume is not None and (source.get("pool"), source.get("volume")) == (volume.pool, volume.name)
        if source.get("file") == path or same_volume:
            return str(disk.find("target").get("dev"))  # type: ignore[union-attr]
    raise CallError(f"The running guest does not use {path} (start it again after disk changes)", errno.EINVAL)


def grow_live(conn: libvirt.virConnect, domain: str, storage: Storage, size: int) -> None:
    """QEMU grows the image of a running guest and tells the guest (virtio-blk and SATA see the new size)."""
    dom = conn.lookupByName(domain)
    dom.blockResize(_target_dev(dom, storage.path, storage.volume), size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)


def grow_offline(conn: libvirt.virConnect, storage: Storage, size: int) -> None:
    """Grow the image of a stopped VM: a pool volume through libvirt, a RAW file sparse."""
    if storage.volume is None:
        os.truncate(storage.path, size)
        return
    vol = conn.storagePoolLookupByName(storage.volume.pool).storageVolLookupByName(storage.volume.name)
    vol.resize(size, 0)


async def grow(hv: Hypervisor, domain: str, running: bool, storage: Storage, size: int) -> None:
    """Grow a disk to size bytes (checked with check_growth before)."""
    if running:
        await hv.run(grow_live, domain, storage, size)
    else:
        await hv.run(grow_offline, storage, size)
