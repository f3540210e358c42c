"""Paths of CDROM and RAW devices: confined to the storage roots, reachable by the QEMU user."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class QemuUser:
    """The user and groups QEMU runs as (libvirt's DAC label)."""

    uid: int
    gid: int
    groups: frozenset[int]


class PathError(ValueError):
    """A path that may not be used; the message says why."""


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def confine(path: str, roots: Sequence[str]) -> str:
    """The real path (symlinks resolved) of path, which must lie inside one of the (real) roots."""
    if not os.path.isabs(path):
        raise PathError("The path must be absolute")
    if ".." in path.split("/"):
        raise PathError("The path must not contain '..' components")
    real = os.path.realpath(path)
    if not any(_within(real, root) for root in roots):
        where = f" (it resolves to {real})" if real != os.path.normpath(path) else ""
        raise PathError(f"The path must reside within the storage roots: {', '.join(roots)}{where}")
    return real


def real_roots(roots: Sequence[str]) -> tuple[str, ...]:
    """The configured roots with their own symlinks resolved."""
    return tuple(os.path.realpath(r) for r in roots)


def _searchable(st: os.stat_result, user: QemuUser) -> bool:
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in user.groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def unreachable_dir(path: str, user: QemuUser | None) -> str | None:
    """The first directory above path that the QEMU user cannot enter (None: all can be entered).

    libvirt gives QEMU the image file itself at start (dynamic ownership) but not the directories above it.
    """
    if user is None or user.uid == 0:
        return None
    directory = os.path.dirname(path)
    parents = []
    while True:
        parents.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for directory in reversed(parents):
        try:
            if not _searchable(os.stat(directory), user):
                return directory
        except OSError:
            return directory
    return None


def reachability_error(path: str, user: QemuUser | None) -> str | None:
    """A message when QEMU could not reach path, else None."""
    blocked = unreachable_dir(path, user)
    if blocked is None or user is None:
        return None
    return (f"QEMU (uid {user.uid}) cannot reach {path}: directory {blocked} is not searchable by it "
            "(give it the execute bit for others, e.g. chmod o+x)")


def create_sparse(path: str, size: int) -> None:
    """Create a new file of size bytes without allocating them; fails if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
