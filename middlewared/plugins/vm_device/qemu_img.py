"""qemu-img: image facts, internal snapshots of stopped images, conversion with its own progress figures."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import subprocess
from typing import Any, Callable

from middlewared.errors import CallError

QEMU_IMG = "qemu-img"
# `qemu-img convert -p` redraws "    (12.34/100%)" with carriage returns.
_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


def _run(*args: str) -> str:
    done = subprocess.run([QEMU_IMG, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise CallError(f"qemu-img {args[0]} failed: {done.stderr.strip() or done.returncode}", errno.EIO)
    return done.stdout


def info(path: str, fmt: str | None = None) -> dict[str, Any]:
    """`qemu-img info` of an image (format probed unless given); -U reads images a running guest holds."""
    args = ["info", "--output", "json", "-U"]
    if fmt:
        args += ["-f", fmt]
    result: dict[str, Any] = json.loads(_run(*args, path))
    return result


def snapshot_tags(path: str) -> set[str]:
    """The internal snapshot tags of a qcow2 image."""
    return {s["name"] for s in info(path, "qcow2").get("snapshots", [])}


def snapshot(path: str, action: str, tag: str) -> None:
    """Create (-c), apply (-a) or delete (-d) an internal snapshot of a qcow2 image no process holds open."""
    if action not in ("-c", "-a", "-d"):
        raise ValueError(action)
    # `snapshot` has no -f: the format is pinned through --image-opts (commas in options are doubled).
    _run("snapshot", "--image-opts", action, tag, f"driver=qcow2,file.filename={path.replace(',', ',,')}")


def copy_shared(source: str, target: str) -> None:
    """Copy a qcow2 image into an existing qcow2 image of its size, reading it even while a guest holds it."""
    _run("convert", "-U", "-n", "-f", "qcow2", "-O", "qcow2", source, target)


async def convert(source: str, source_fmt: str, target: str, target_fmt: str,
                  progress: Callable[[float], None], create: bool = True) -> None:
    """Convert an image, reporting qemu-img's own percentages. With create, qemu-img makes target (removed
    again on failure or cancellation); without, it writes into an existing image of target's size."""
    args = ["convert", "-p", "-f", source_fmt, "-O", target_fmt, *([] if create else ["-n"]), source, target]
    proc = await asyncio.create_subprocess_exec(QEMU_IMG, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        buffer = b""
        while chunk := await proc.stdout.read(256):
            buffer = (buffer + chunk)[-512:]
            found = _PROGRESS.findall(buffer)
            if found:
                progress(float(found[-1]))
        error = (await proc.stderr.read()).decode(errors="replace").strip()
        if await proc.wait() != 0:
            raise CallError(f"qemu-img convert failed: {error or proc.returncode}", errno.EIO)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if create:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.unlink, target)
        raise

