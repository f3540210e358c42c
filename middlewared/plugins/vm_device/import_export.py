"""Foreign disk images into pool volumes and volumes out to files, with qemu-img's own progress; an abort or
a failure leaves no volume or file behind."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from middlewared.errors import CallError
from middlewared.plugins.vm.hypervisor import Hypervisor
from middlewared.plugins.vm_device import pool, qemu_img
from middlewared.plugins.vm_device.paths import PathError, confine

# Formats qemu-img reads that users bring (its names).
IMPORT_FORMATS = ("qcow2", "vmdk", "vhdx", "vdi", "raw")
EXPORT_FORMATS = ("qcow2", "raw")
VOLUME_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$"


@dataclass(frozen=True)
class Image:
    """A disk image file: its format and sizes."""

    path: str
    format: str
    virtual_size: int
    actual_size: int


def confined(path: str, roots: tuple[str, ...], attribute: str) -> str:
    """The real path inside the storage roots, or CallError naming the attribute."""
    try:
        return confine(path, roots)
    except PathError as e:
        raise CallError(f"{attribute}: {e}", errno.EINVAL) from e


def inspect(path: str, fmt: str | None) -> Image:
    """What an image is (probed when fmt is None). Images that name a backing file are refused: reading one
    would make qemu-img open a host file the image chooses."""
    if not os.path.isfile(path):
        raise CallError(f"{path} does not exist or is not a file", errno.ENOENT)
    info = qemu_img.info(path, fmt)
    if info.get("backing-filename"):
        raise CallError(f"{path} is an overlay of {info['backing-filename']}: import its base image, or a "
                        "flattened copy (qemu-img convert)", errno.EINVAL)
    found = str(info.get("format"))
    if found not in IMPORT_FORMATS:
        raise CallError(f"{path} is a {found} image; importable formats are {', '.join(IMPORT_FORMATS)}",
                        errno.EINVAL)
    return Image(path, found, int(info["virtual-size"]), int(info.get("actual-size") or 0))


async def import_image(hv: Hypervisor, image: Image, pool_name: str, name: str, fmt: str,
                       progress: Callable[[float], None], log: Callable[[str], None] = lambda _: None) -> pool.Volume:
    """Copy an image into a new volume of the pool (fmt: qcow2 or raw); removed again on failure or abort. log
    gets what each step took."""
    began = time.monotonic()
    if await hv.run(pool.lookup_volume, pool_name, name) is not None:
        raise CallError(f"Volume {pool_name}/{name} already exists", errno.EEXIST)
    free = await hv.run(lambda conn: int(conn.storagePoolLookupByName(pool_name).info()[3]))
    if image.actual_size > free:
        raise CallError(f"{image.path} holds {image.actual_size} bytes; pool {pool_name} has {free} free",
                        errno.ENOSPC)
    volume = await hv.run(pool.create_volume, pool_name, name, image.virtual_size, fmt)
    log(f"checked the pool and created the volume: {(time.monotonic() - began) * 1000:.0f} ms ({volume.path})")
    began = time.monotonic()
    try:
        # -n: write into the volume libvirt made (any file-backed pool), not a file qemu-img creates.
        await qemu_img.convert(image.path, image.format, volume.path, fmt, progress, create=False)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(hv.run(pool.delete_volume, pool_name, name))
        raise
    log(f"copied with qemu-img: {(time.monotonic() - began) * 1000:.0f} ms")
    return volume


async def export_image(source: str, source_fmt: str, target: str, fmt: str,
                       progress: Callable[[float], None]) -> None:
    """Copy a volume or file to a new file (qcow2 or raw); the partial file is removed on failure or abort."""
    if os.path.lexists(target):
        raise CallError(f"{target} exists already", errno.EEXIST)
    if not os.path.isdir(os.path.dirname(target)):
        raise CallError(f"Directory {os.path.dirname(target)} does not exist", errno.ENOENT)
    await qemu_img.convert(source, source_fmt, target, fmt, progress)


def describe(image: Image) -> dict[str, Any]:
    """An image as the API shows it."""
    return {"path": image.path, "format": image.format, "virtual_size": image.virtual_size,
            "actual_size": image.actual_size}
