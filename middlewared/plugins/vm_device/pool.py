"""libvirt storage pools and volumes for DISK devices (blocking functions: run them via Hypervisor.run)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import libvirt
from lxml import etree

from middlewared.plugins.vm.template import BASE_MODE
from middlewared.plugins.vm.xml_helpers import sub
from middlewared.plugins.vm_device import qemu_img

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Volume:
    """A storage volume: `zvol_name` is how DISK devices name it."""

    pool: str
    name: str
    path: str
    capacity: int
    # The image format (qcow2, raw, ...): what the domain's disk driver must be told.
    format: str = "raw"

    @property
    def zvol_name(self) -> str:
        return f"{self.pool}/{self.name}"


def find_pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool | None:
    """The pool with this name, or None."""
    # Listed rather than looked up: a failed lookup makes libvirt print an error on stderr.
    return next((p for p in conn.listAllStoragePools(0) if p.name() == name), None)


def _dir_pool_xml(name: str, directory: str) -> str:
    pool = etree.Element("pool", type="dir")
    sub(pool, "name", name)
    target = sub(pool, "target")
    sub(target, "path", directory)
    # Searchable by the QEMU user, who must reach the volumes inside (libvirt chowns the volumes themselves).
    sub(sub(target, "permissions"), "mode", "0711")
    return etree.tostring(pool, encoding="unicode")


def ensure_pool(conn: libvirt.virConnect, name: str, directory: str) -> None:
    """Make the pool exist (a dir pool at directory when missing), be active and start with libvirtd."""
    pool = find_pool(conn, name)
    if pool is None:
        logger.info("creating libvirt storage pool %s (dir) at %s", name, directory)
        try:
            pool = conn.storagePoolDefineXML(_dir_pool_xml(name, directory), 0)
        except libvirt.libvirtError:
            # Two first calls at once (libvirt calls run in parallel threads): the other one defined it.
            pool = find_pool(conn, name)
            if pool is None:
                raise
    if not pool.isActive():
        # build() creates a dir pool's directory (again, if someone removed it); other types keep theirs.
        if _pool_type(pool) == "dir" and not os.path.isdir(_pool_path(pool)):
            pool.build(0)
        try:
            pool.create(0)
        except libvirt.libvirtError:
            if not pool.isActive():
                raise
    if not pool.autostart():
        pool.setAutostart(1)


def _pool_type(pool: libvirt.virStoragePool) -> str:
    return str(etree.fromstring(pool.XMLDesc(0)).get("type"))


def _pool_path(pool: libvirt.virStoragePool) -> str:
    return str(etree.fromstring(pool.XMLDesc(0)).findtext("target/path") or "")


def _volume(pool: libvirt.virStoragePool, vol: libvirt.virStorageVol) -> Volume:
    fmt = etree.fromstring(vol.XMLDesc(0)).find("target/format")
    return Volume(pool.name(), vol.name(), vol.path(), int(vol.info()[1]),
                  str(fmt.get("type")) if fmt is not None else "raw")


def active_pools(conn: libvirt.virConnect) -> list[libvirt.virStoragePool]:
    """Active pools, refreshed so volumes made or removed outside libvirt are seen."""
    pools = conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
    for pool in pools:
        try:
            pool.refresh(0)
        except libvirt.libvirtError as e:
            logger.debug("cannot refresh pool %s: %s", pool.name(), e)
    return sorted(pools, key=lambda p: str(p.name()))


def lookup_volume(conn: libvirt.virConnect, pool_name: str, name: str) -> Volume | None:
    """The volume `name` of an active pool, or None."""
    pool = find_pool(conn, pool_name)
    if pool is None or not pool.isActive():
        return None
    pool.refresh(0)
    vol = next((v for v in pool.listAllVolumes(0) if v.name() == name), None)
    return _volume(pool, vol) if vol is not None else None


def all_volumes(conn: libvirt.virConnect) -> list[Volume]:
    """Every volume of every active pool."""
    out: list[Volume] = []
    for pool in active_pools(conn):
        try:
            out.extend(_volume(pool, vol) for vol in pool.listAllVolumes(0))
        except libvirt.libvirtError as e:
            # Stopped since it was listed (or libvirtd is restarting): it has no volumes to offer now.
            logger.debug("cannot list the volumes of pool %s: %s", pool.name(), e)
    return out


def volume_at(conn: libvirt.virConnect, path: str) -> Volume | None:
    """The volume (of any active pool) at a path, or None."""
    return next((v for v in all_volumes(conn) if v.path == path), None)


def _volume_xml(name: str, capacity: int, fmt: str, backing: Volume | None = None) -> str:
    vol = etree.Element("volume")
    sub(vol, "name", name)
    sub(vol, "capacity", str(capacity), unit="bytes")
    # Sparse: space is taken as the guest writes.
    sub(vol, "allocation", "0", unit="bytes")
    target = sub(vol, "target")
    sub(target, "format", type=fmt)
    if fmt == "qcow2":
        # libvirt makes qcow2 v2 (compat 0.10) unless told; QEMU cannot grow a v2 image that has snapshots.
        sub(target, "compat", "1.1")
    if backing is not None:
        # libvirt makes it with `qemu-img create -b <path> -F <format>`: the backing format is recorded in the
        # overlay, so nobody has to probe it (QEMU refuses to guess a backing file's format).
        store = sub(vol, "backingStore")
        sub(store, "path", backing.path)
        sub(store, "format", type=backing.format)
    return etree.tostring(vol, encoding="unicode")


def create_volume(conn: libvirt.virConnect, pool_name: str, name: str, capacity: int, fmt: str = "qcow2") -> Volume:
    """Create a volume in a pool (qcow2 by default: it can hold snapshots)."""
    pool = conn.storagePoolLookupByName(pool_name)
    return _volume(pool, pool.createXML(_volume_xml(name, capacity, fmt), 0))


def clone_volume(conn: libvirt.virConnect, source: Volume, name: str) -> Volume:
    """Copy a volume into a new one of the same pool and format (the current data: a qcow2 copy holds none of
    the original's snapshots)."""
    pool = conn.storagePoolLookupByName(source.pool)
    if source.format != "qcow2":
        original = pool.storageVolLookupByName(source.name)
        return _volume(pool, pool.createXMLFrom(_volume_xml(name, source.capacity, source.format), original, 0))
    # libvirt copies qcow2 with qemu-img, which the image lock of a running guest refuses: the copy reads it
    # shared, as libvirt's own copy of a raw volume does, into a volume libvirt made.
    copy = _volume(pool, pool.createXML(_volume_xml(name, source.capacity, "qcow2"), 0))
    try:
        qemu_img.copy_shared(source.path, copy.path)
    except BaseException:
        delete_volume(conn, source.pool, name)
        raise
    return copy


def overlay_volume(conn: libvirt.virConnect, source: Volume, name: str) -> Volume:
    """A new qcow2 volume in the source's pool whose backing file is the source (a linked clone's disk): it holds
    only what the clone writes. The source becomes a read-only base first, as it must stay from now on."""
    os.chmod(source.path, BASE_MODE)
    pool = conn.storagePoolLookupByName(source.pool)
    return _volume(pool, pool.createXML(_volume_xml(name, source.capacity, "qcow2", source), 0))


def delete_volume(conn: libvirt.virConnect, pool_name: str, name: str) -> bool:
    """Delete a volume; False when it does not exist."""
    pool = find_pool(conn, pool_name)
    if pool is None:
        return False
    pool.refresh(0)
    vol = next((v for v in pool.listAllVolumes(0) if v.name() == name), None)
    if vol is None:
        return False
    vol.delete(0)
    return True
